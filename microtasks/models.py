"""The stored entities: owners, projects, batches, units, volunteers, assignments, answers, results.

The database enforces what must never happen twice: one answer per volunteer per
unit, one answer per client answer id, one consensus result per unit, one
assignment (serving) of a unit to a volunteer.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, WriteOnlyMapped, mapped_column, relationship

JSONType = JSON().with_variant(JSONB(), "postgresql")
#: For nullable JSON columns: Python None is SQL NULL, not the JSON value null.
NullableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


class TaskType(str, enum.Enum):
    """What a volunteer does with a unit."""

    tagging = "tagging"
    marking = "marking"


class MarkingTool(str, enum.Enum):
    circle = "circle"
    point = "point"


class UnitState(str, enum.Enum):
    open = "open"
    retired = "retired"


class Strategy(str, enum.Enum):
    """The order in which a project's units are served."""

    #: Finish started units first, so results arrive early.
    depth_first = "depth_first"
    #: Spread answers evenly over all units.
    breadth_first = "breadth_first"
    #: Any open unit, in a fixed random order.
    random = "random"
    #: The owner's priority first (higher first), then depth-first.
    priority = "priority"


class BatchKind(str, enum.Enum):
    #: A ZIP archive (or folder) of images with an optional manifest.
    archive = "archive"
    #: One large image cut into overlapping tiles.
    tiles = "tiles"


class BatchState(str, enum.Enum):
    pending = "pending"
    processing = "processing"
    done = "done"
    failed = "failed"


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, validate_strings=True, values_callable=lambda e: [m.value for m in e])


class Owner(Base):
    """A project owner: signs in to the pages with a password, calls the API with keys (only hashes stored)."""

    __tablename__ = "owner"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    #: Sign-in name for the owner pages (None for an owner who only uses API keys).
    username: Mapped[Optional[str]] = mapped_column(String(80), unique=True)
    #: scrypt hash of the password, in werkzeug's ``method$salt$hash`` form.
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    #: Administrators may see every project (for support and moderation).
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    projects: Mapped[list[Project]] = relationship(back_populates="owner")
    api_keys: WriteOnlyMapped[ApiKey] = relationship(back_populates="owner", passive_deletes=True)


class ApiKey(Base):
    """An owner's API key: shown once when made, stored as a hash, revocable."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    #: The key's first characters, shown so the owner can tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    owner: Mapped[Owner] = relationship(back_populates="api_keys")


class Project(Base):
    """A set of units of one task type, with its settings."""

    __tablename__ = "project"
    __table_args__ = (
        CheckConstraint("redundancy >= 1", name="redundancy_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owner.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    task_type: Mapped[TaskType] = mapped_column(_enum(TaskType))
    #: Tagging: the labels a volunteer may choose from, in display order.
    labels: Mapped[list[Any]] = mapped_column(default=list)
    #: Tagging: several labels per answer.
    multi_select: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Marking: circles (x, y, r) or points (x, y).
    marking_tool: Mapped[Optional[MarkingTool]] = mapped_column(_enum(MarkingTool))
    #: Answers wanted per unit (a unit may override it).
    redundancy: Mapped[int] = mapped_column(Integer, default=3)
    #: The most answers consensus may ask for on a unit whose volunteers disagree.
    max_redundancy: Mapped[int] = mapped_column(Integer, default=10)
    strategy: Mapped[Strategy] = mapped_column(_enum(Strategy), default=Strategy.depth_first)
    #: Answers after which consensus may retire a unit early (None: the redundancy itself).
    min_redundancy: Mapped[Optional[int]] = mapped_column(Integer)
    #: Consensus confidence that retires a unit early, and below which a full unit asks for more
    #: answers (up to ``max_redundancy``); None turns adaptive redundancy off.
    confidence_threshold: Mapped[Optional[float]] = mapped_column(Float)
    #: Share of gold units among a new volunteer's first ``gold_warmup`` units, then ``gold_rate``.
    gold_warmup_rate: Mapped[float] = mapped_column(Float, default=0.4)
    gold_warmup: Mapped[int] = mapped_column(Integer, default=20)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.1)
    #: Seconds a served unit stays reserved for its volunteer.
    lease_seconds: Mapped[int] = mapped_column(Integer, default=600)
    #: Gold units a volunteer must pass (score >= 0.5) before their answers count; 0: no qualification.
    qualification: Mapped[int] = mapped_column(Integer, default=0)
    #: Volunteers are served only once the owner has previewed the first units and published.
    published: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The field guide: ``[{"label", "text", "image"}]``, help and an example image (media name) per label.
    field_guide: Mapped[list[Any]] = mapped_column(default=list)
    #: Tutorial steps shown on a volunteer's first visit: ``[{"title", "text", "image"}]``.
    tutorial: Mapped[list[Any]] = mapped_column(default=list)
    #: Languages the project's texts are given in (BCP 47 codes such as ``en``, ``ar``); the first is the default.
    languages: Mapped[list[Any]] = mapped_column(default=lambda: ["en"])
    #: Texts in other languages: ``{lang: {"name", "description", "instructions", "labels": {label: text},
    #: "field_guide": [...], "tutorial": [...]}}``.
    translations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Topics a volunteer may pick projects by (``["space", "wildlife"]``).
    topics: Mapped[list[Any]] = mapped_column(default=list)
    #: Where unit-retired and project-completed events are posted, signed with ``webhook_secret``.
    webhook_url: Mapped[Optional[str]] = mapped_column(String(2000))
    webhook_secret: Mapped[Optional[str]] = mapped_column(String(100))
    #: When the last open unit retired (the project-completed event is sent once).
    completed_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    owner: Mapped[Owner] = relationship(back_populates="projects")
    batches: WriteOnlyMapped[Batch] = relationship(back_populates="project", passive_deletes=True)
    units: WriteOnlyMapped[Unit] = relationship(back_populates="project", passive_deletes=True)


class Batch(Base):
    """One upload of units; its report lists what was imported and what was rejected, with reasons."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[BatchKind] = mapped_column(_enum(BatchKind), default=BatchKind.archive)
    #: Import options, e.g. ``{"tile_size": 512, "overlap": 64}`` for tiles.
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[BatchState] = mapped_column(_enum(BatchState), default=BatchState.pending)
    #: Entries to process and processed so far (the progress the owner sees).
    total: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    #: Path of the uploaded archive while it waits to be processed.
    source_path: Mapped[Optional[str]] = mapped_column(Text)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[Optional[str]] = mapped_column(Text)
    job_id: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    project: Mapped[Project] = relationship(back_populates="batches")


class Unit(Base):
    """One thing to look at (an image), answered by several volunteers."""

    __tablename__ = "unit"
    __table_args__ = (
        Index("ix_unit_project_state", "project_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    batch_id: Mapped[Optional[int]] = mapped_column(ForeignKey("batch.id", ondelete="SET NULL"), index=True)
    #: The owner's name for the unit (the file name or the manifest's ``name``).
    external_id: Mapped[str] = mapped_column(String(255))
    #: The owner's metadata from the manifest.
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Stored media file name (the phone-size copy volunteers see) under the media folder.
    media: Mapped[Optional[str]] = mapped_column(String(80))
    #: A small copy for owners' previews and lists.
    thumbnail: Mapped[Optional[str]] = mapped_column(String(80))
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    state: Mapped[UnitState] = mapped_column(_enum(UnitState), default=UnitState.open)
    #: Counted answers so far (kept in step with ``answer`` rows in the same transaction).
    answer_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Answers wanted for this unit, when it differs from the project's redundancy.
    redundancy: Mapped[Optional[int]] = mapped_column(Integer)
    #: Served first under the priority strategy (higher first).
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: The known answer of a gold unit (None for ordinary units), in answer-payload form.
    gold: Mapped[Optional[dict[str, Any]]] = mapped_column(NullableJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    project: Mapped[Project] = relationship(back_populates="units")
    answers: WriteOnlyMapped[Answer] = relationship(back_populates="unit", passive_deletes=True)


class Volunteer(Base):
    """A volunteer, known by the signed token their device keeps; an optional account (no email) lets them
    sign in on another device and keep their history."""

    __tablename__ = "volunteer"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    #: Set when the volunteer makes an account.
    username: Mapped[Optional[str]] = mapped_column(String(80), unique=True)
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """A unit served to a volunteer: the lease that reserves one of the unit's answer slots."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("unit_id", "volunteer_id", name="uq_assignment_unit_volunteer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id", ondelete="CASCADE"), index=True)
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Answer(Base):
    """One volunteer's answer to one unit."""

    __tablename__ = "answer"
    __table_args__ = (
        UniqueConstraint("unit_id", "volunteer_id", name="uq_answer_unit_volunteer"),
        UniqueConstraint("answer_uuid", name="uq_answer_answer_uuid"),
        #: The dashboard's recent-activity queries read only the last hours.
        Index("ix_answer_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Generated by the client, so that a resubmission after a lost response is harmless.
    answer_uuid: Mapped[str] = mapped_column(String(36))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column()
    #: Time the volunteer spent on the unit, as the client measured it.
    duration_ms: Mapped[Optional[int]] = mapped_column(Integer)
    #: False for answers the unit no longer needed (a late answer after its lease expired) and for gold.
    counted: Mapped[bool] = mapped_column(Boolean, default=True)
    #: For an answer to a gold unit: its agreement with the known answer, from 0 to 1.
    gold_score: Mapped[Optional[float]] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    unit: Mapped[Unit] = relationship(back_populates="answers")


class ConsensusResult(Base):
    """The decided result of a unit, written as an upsert keyed by unit."""

    __tablename__ = "consensus_result"

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id", ondelete="CASCADE"), unique=True)
    result: Mapped[dict[str, Any]] = mapped_column()
    confidence: Mapped[float] = mapped_column(Float)
    #: Share of the unit's answers that agree with the result (marks: mean share of volunteers per mark).
    agreement: Mapped[Optional[float]] = mapped_column(Float)
    n_answers: Mapped[int] = mapped_column(Integer)
    algorithm: Mapped[str] = mapped_column(String(60))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[str] = mapped_column(String(20))
    job_id: Mapped[Optional[str]] = mapped_column(String(100))
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProjectModel(Base):
    """The consensus model last fitted on all of a project's answers: what incremental updates start from."""

    __tablename__ = "project_model"

    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(60))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: Labels, class prior and the typical volunteer's confusion matrix (for volunteers not yet fitted).
    model: Mapped[dict[str, Any]] = mapped_column()
    n_answers: Mapped[int] = mapped_column(Integer)
    fitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VolunteerReliability(Base):
    """A volunteer's fitted reliability in one project: skill with its uncertainty, and confusion matrix."""

    __tablename__ = "volunteer_reliability"
    __table_args__ = (UniqueConstraint("project_id", "volunteer_id", name="uq_volunteer_reliability_project"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id", ondelete="CASCADE"), index=True)
    #: Expected share of correct answers, and its posterior standard deviation.
    skill: Mapped[float] = mapped_column(Float)
    skill_std: Mapped[float] = mapped_column(Float)
    #: Row k: the probabilities of each given label when the truth is label k (project label order).
    confusion: Mapped[list[Any]] = mapped_column()
    n_answers: Mapped[int] = mapped_column(Integer)


class Quarantine(Base):
    """A volunteer whose answers in a project carry no weight, until the owner releases them."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("project_id", "volunteer_id", name="uq_quarantine_project_volunteer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    released_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class ExportState(str, enum.Enum):
    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


class Export(Base):
    """An export made on demand by a worker: a file with its provenance, and its progress."""

    __tablename__ = "export"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    #: consensus, answers, reliability or gold.
    kind: Mapped[str] = mapped_column(String(20))
    #: csv, jsonl, parquet, geojson or coco.
    format: Mapped[str] = mapped_column(String(20))
    state: Mapped[ExportState] = mapped_column(_enum(ExportState), default=ExportState.pending)
    #: Rows written so far, and the rows expected (for the progress bar).
    rows: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    #: The finished file, relative to the instance's exports folder.
    path: Mapped[Optional[str]] = mapped_column(Text)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text)
    job_id: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One event posted to a project's webhook, with its attempts (retried with backoff by RQ)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("event_key", name="uq_webhook_delivery_event_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    #: unit.retired or project.completed.
    event: Mapped[str] = mapped_column(String(40))
    #: Makes an event happen once (e.g. ``unit.retired:<unit>:<answers>``).
    event_key: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column()
    url: Mapped[str] = mapped_column(String(2000))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: HTTP status of the last attempt (None when it got no response).
    status_code: Mapped[Optional[int]] = mapped_column(Integer)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
