"""Owners, their API keys, projects and progress."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from microtasks.errors import Conflict, NotFound, ValidationError
from microtasks.models import (
    Answer,
    ConsensusResult,
    MarkingTool,
    Owner,
    Project,
    Strategy,
    TaskType,
    Unit,
    UnitState,
)


def hash_key(key: str) -> str:
    """API keys are random and long, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_owner(session: Session, name: str) -> tuple[Owner, str]:
    """Create an owner; returns it with its API key, which is shown this once and never stored."""
    key = "mt_" + secrets.token_urlsafe(32)
    owner = Owner(name=name, api_key_hash=hash_key(key))
    session.add(owner)
    session.flush()
    return owner, key


def owner_for_key(session: Session, key: str) -> Owner | None:
    return session.scalars(select(Owner).where(Owner.api_key_hash == hash_key(key))).first()


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60] or "project"


def create_project(session: Session, owner: Owner, settings: dict[str, Any]) -> Project:
    """Create a project from already-typed settings (the API schema or the CLI checked the types)."""
    task_type = TaskType(settings["task_type"])
    labels = list(settings.get("labels") or [])
    tool = settings.get("marking_tool")
    if task_type is TaskType.tagging:
        if len(labels) < 2:
            raise ValidationError("A tagging project needs at least two labels.", field="labels")
        if len(set(labels)) != len(labels):
            raise ValidationError("Labels must be distinct.", field="labels")
        if tool:
            raise ValidationError("'marking_tool' is only for marking projects.", field="marking_tool")
    else:
        if labels:
            raise ValidationError("'labels' are only for tagging projects.", field="labels")
        tool = tool or MarkingTool.circle.value
    slug = settings.get("slug") or slugify(settings["name"])
    if session.scalars(select(Project.id).where(Project.slug == slug)).first() is not None:
        raise Conflict(f"A project with slug {slug!r} already exists.", field="slug")
    project = Project(
        owner=owner,
        slug=slug,
        name=settings["name"],
        description=settings.get("description", ""),
        instructions=settings.get("instructions", ""),
        task_type=task_type,
        labels=labels,
        multi_select=bool(settings.get("multi_select", False)),
        marking_tool=MarkingTool(tool) if tool else None,
        redundancy=settings.get("redundancy", 3),
        max_redundancy=max(settings.get("max_redundancy", 10), settings.get("redundancy", 3)),
        lease_seconds=settings.get("lease_seconds", 600),
        strategy=Strategy(settings.get("strategy", Strategy.depth_first.value)),
        gold_warmup_rate=settings.get("gold_warmup_rate", 0.4),
        gold_warmup=settings.get("gold_warmup", 20),
        gold_rate=settings.get("gold_rate", 0.1),
        min_redundancy=settings.get("min_redundancy"),
        confidence_threshold=settings.get("confidence_threshold"),
    )
    session.add(project)
    session.flush()
    return project


def get_project(session: Session, project_id: int, owner: Owner | None = None) -> Project:
    """The project, or NotFound; with ``owner`` given, only one of theirs."""
    project = session.get(Project, project_id)
    if project is None or (owner is not None and project.owner_id != owner.id):
        raise NotFound(f"No project {project_id}.")
    return project


def progress(session: Session, project: Project) -> dict[str, int]:
    """Counts of units by state, answers and consensus results."""
    by_state = dict(
        session.execute(
            select(Unit.state, func.count()).where(Unit.project_id == project.id).group_by(Unit.state)
        ).all()
    )
    answers = session.scalar(
        select(func.count()).select_from(Answer).join(Unit).where(Unit.project_id == project.id)
    )
    results = session.scalar(
        select(func.count()).select_from(ConsensusResult).join(Unit).where(Unit.project_id == project.id)
    )
    units = sum(by_state.values())
    return {
        "units": units,
        "open": by_state.get(UnitState.open, 0),
        "retired": by_state.get(UnitState.retired, 0),
        "answers": answers or 0,
        "results": results or 0,
    }
