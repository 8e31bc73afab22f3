"""Exports of a project: consensus results, raw answers, volunteer reliability and gold performance.

Four kinds:

* ``consensus``: one row per unit with a result (marking: one row per consensus mark, and
  a row with empty coordinates for a unit where nothing was found), with its confidence
  and agreement;
* ``answers``: one row per raw answer (marking: one row per mark);
* ``reliability``: one row per volunteer who answered, by pseudonymous id: fitted skill
  with its uncertainty, gold performance, quarantine;
* ``gold``: one row per answer to a gold unit: the known answer, the given one, the score.

Formats: flat ``csv`` (one column per field, never JSON in a cell: several labels are
joined by ``;``; a text cell a spreadsheet would run as a formula is prefixed with ``'``),
``jsonl`` (the same rows, typed), ``parquet`` (typed columns, row groups of
:data:`ROW_GROUP` rows) and, for the marks of a marking project, ``geojson`` (Point
features in pixel coordinates) and ``coco`` (object-detection annotations). ``json``, one
array with the nested results kept, remains for the direct download.

Everything is streamed, so memory does not grow with the project: rows are read
:data:`FETCH` at a time on the driver's own cursor (server-side on PostgreSQL), turned
into Arrow arrays column by column, and written chunk by chunk; CSV lines are built by
Arrow's compute kernels rather than row by row. :func:`write_export` packs the data file
and its ``provenance.json`` (algorithms and parameters, code version, time, counts,
columns) into one ZIP, so that they travel together.

Example:
    >>> neutralise("=1+1"), neutralise("crater"), neutralise(-3)
    ("'=1+1", 'crater', -3)
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import queue
import subprocess
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Sequence

from sqlalchemy import Select, and_, case, distinct, func, select
from sqlalchemy.orm import Session

from microtasks import __version__
from microtasks.errors import ValidationError
from microtasks.models import (
    Answer,
    Batch,
    BatchKind,
    ConsensusResult,
    MarkingTool,
    Project,
    ProjectModel,
    Quarantine,
    TaskType,
    Unit,
    Volunteer,
    VolunteerReliability,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

#: What can be exported.
KINDS = ("consensus", "answers", "reliability", "gold")
#: Every format: ``json`` is only streamed (the direct download), ``parquet`` only written to a file.
FORMATS = ("csv", "jsonl", "json", "parquet", "geojson", "coco")
#: Formats of an export made by a job (a ZIP with the provenance).
ARCHIVE_FORMATS = ("csv", "jsonl", "parquet", "geojson", "coco")
#: Formats the direct download streams.
STREAM_FORMATS = ("csv", "jsonl", "json")
#: Formats of marks: for the consensus or answers of a marking project.
MARK_FORMATS = ("geojson", "coco")
#: Rows read from the database at a time.
FETCH = 5_000
#: Rows per Parquet row group.
ROW_GROUP = 65_536
#: The data file's extension, and its media type.
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "json": "json", "parquet": "parquet", "geojson": "geojson",
              "coco": "coco.json"}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson", "json": "application/json",
               "parquet": "application/vnd.apache.parquet", "geojson": "application/geo+json",
               "coco": "application/json", "zip": "application/zip"}

#: ``progress(done, total)``: called after each chunk with the source records (results,
#: answers or volunteers) read so far and expected, and once more at the end with both equal.
Progress = Callable[[int, int], None]

_FORMULA = frozenset("=+-@\t\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"
_FORMULA_BYTES = list(b"=+-@\t\r")
_QUOTED_BYTES = list(b'",\r\n')
_cursor_numbers = itertools.count(1)


def neutralise(cell: Any) -> Any:
    """Keep spreadsheets from running a text cell as a formula (one starting with ``=``, ``+``, ``-``, ``@``)."""
    if isinstance(cell, str) and cell and cell[0] in _FORMULA:
        return "'" + cell
    return cell


def validate(project: Project, kind: str, fmt: str, formats: Sequence[str] = FORMATS) -> None:
    """Raise :class:`~microtasks.errors.ValidationError` (422) unless the project can be exported so."""
    if kind not in KINDS:
        raise ValidationError(f"Unknown export kind {kind!r}; choose from {', '.join(KINDS)}.", field="kind")
    if fmt not in formats:
        raise ValidationError(f"Unknown format {fmt!r}; choose from {', '.join(formats)}.", field="format")
    if fmt in MARK_FORMATS:
        if project.task_type is not TaskType.marking:
            raise ValidationError(f"{fmt} exports marks, so it is only for marking projects; this is a "
                                  f"{project.task_type.value} project.", field="format")
        if kind not in ("consensus", "answers"):
            raise ValidationError(f"{fmt} exports marks: choose the kind consensus or answers, not {kind}.",
                                  field="format")


def archive_name(project: Project, kind: str, fmt: str) -> str:
    """``<slug>-<kind>-<format>.zip``, the ZIP :func:`write_export` writes."""
    return f"{project.slug}-{kind}-{fmt}.zip"


def data_name(project: Project, kind: str, fmt: str) -> str:
    """The data file's name, inside the ZIP or alone."""
    return f"{project.slug}-{kind}.{EXTENSIONS[fmt]}"


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a flat export."""

    name: str
    #: int, float, str, bool or timestamp (UTC).
    type: str
    description: str


@dataclass
class Tally:
    """What an export read and wrote."""

    #: Source records read (results, answers or volunteers), and the number expected.
    records: int = 0
    total: int = 0
    #: Rows, features or annotations written.
    rows: int = 0


#: Chunks of an export's rows, column by column, each with the source records read so far.
Chunks = Iterator[tuple[int, list[list[Any]]]]


@dataclass
class Table:
    """A flat export: its columns, a query counting the source records, and its rows in chunks."""

    columns: list[Column]
    count: Select[Any]
    chunks: Callable[[], Chunks]


def _fetch(session: Session, statement: Select[Any]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``statement``, :data:`FETCH` at a time, as the database driver gives them.

    The driver's own cursor skips SQLAlchemy's per-row processing (most of the time of a
    large export), so values come raw: JSON as text on SQLite (see :func:`_json`), booleans
    as 0/1 and times as text. On PostgreSQL the cursor is server-side, so rows stream.
    Statements hold no user input: their only literals are ids and our own constants.

    The rows are read on a thread of its own, one chunk ahead: the database driver works
    without the GIL while this thread formats the previous chunk. The session's
    connection must not be used for anything else until the iteration ends.
    """
    connection = session.connection()
    sql = str(statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    driver: Any = connection.connection.driver_connection
    server_side = connection.dialect.name == "postgresql"
    chunks: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def hand_over(item: Any) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            if server_side:
                from psycopg.types.string import TextLoader

                cursor = driver.cursor(name=f"microtasks_export_{next(_cursor_numbers)}")
                # Times as text: Arrow parses text far faster than Python makes datetimes.
                cursor.adapters.register_loader("timestamptz", TextLoader)
            else:
                cursor = driver.cursor()
            try:
                cursor.execute(sql)
                while not stop.is_set():
                    rows = cursor.fetchmany(FETCH)
                    if not rows:
                        break
                    hand_over(rows)
            finally:
                cursor.close()
        except BaseException as error:  # raised again in the reading generator below
            hand_over(error)
        else:
            hand_over(None)

    reader = threading.Thread(target=read, name="export-reader", daemon=True)
    reader.start()
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _count(session: Session, statement: Select[Any]) -> int:
    return int(session.scalar(statement) or 0)


def _json(value: Any) -> Any:
    """A JSON column's value: parsed on SQLite, already a dict or list on PostgreSQL."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _has_offset(text: str) -> bool:
    """Whether a time as text ends with a zone offset (PostgreSQL's) rather than being naive UTC (SQLite's)."""
    return text.endswith("Z") or "+" in text[19:] or "-" in text[19:]


def _iso(value: datetime | str | None) -> str | None:
    """A time as ISO 8601 in UTC (``2026-01-01T12:00:00.000000Z``); SQLite's naive text is already UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        if not _has_offset(value):
            return value.replace(" ", "T", 1) + "Z"
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _transpose(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(map(itemgetter(i), rows)) for i in range(width)]


def _in_project(project: Project) -> Any:
    return Unit.project_id == project.id


def _circles(project: Project) -> bool:
    return project.marking_tool is not MarkingTool.point


def _results_count(project: Project) -> Select[Any]:
    return select(func.count()).select_from(ConsensusResult).join(Unit).where(_in_project(project))


def _answers_count(project: Project, *where: Any) -> Select[Any]:
    return select(func.count()).select_from(Answer).join(Unit).where(_in_project(project), *where)


def _label_columns(project: Project, prefix: str = "", what: str = "") -> list[Column]:
    if project.multi_select:
        return [Column(f"{prefix}labels", "str", f"The {what}labels in the project's label order, joined by ';' "
                                                 "(empty: none apply).")]
    return [Column(f"{prefix}label", "str", f"The {what}label.")]


def _mark_columns(project: Project, what: str) -> list[Column]:
    columns = [Column("x", "float", f"The {what}'s centre, in pixels from the image's left edge."),
               Column("y", "float", f"The {what}'s centre, in pixels from the image's top edge.")]
    if _circles(project):
        columns.append(Column("r", "float", f"The {what}'s radius in pixels."))
    return columns


_UNIT_ID = Column("unit_id", "int", "The unit's id.")
_UNIT = Column("unit", "str", "The owner's name for the unit (its file name or manifest name).")
_VOLUNTEER = Column("volunteer", "str", "The volunteer's pseudonymous id.")
_ANSWER_ID = Column("answer_id", "str", "The answer's id (made by the volunteer's device).")
_TILE_COLUMNS = [
    Column("image", "str", "Tiled units: the whole image the tile was cut from."),
    Column("image_x", "float", "Tiled units: x in whole-image pixels."),
    Column("image_y", "float", "Tiled units: y in whole-image pixels."),
    Column("duplicate", "bool", "Tiled units: true for the overlap's copy of a crater kept from a neighbouring "
                                "tile (leave it out of a whole-image catalogue)."),
    Column("tile", "int", "Tiled units: the tile's number in its image."),
]


def _consensus_table(session: Session, project: Project) -> Table:
    statement = (select(ConsensusResult.unit_id, Unit.external_id, ConsensusResult.result,
                        ConsensusResult.confidence, ConsensusResult.agreement, ConsensusResult.n_answers,
                        ConsensusResult.algorithm, ConsensusResult.version, ConsensusResult.computed_at)
                 .join(Unit, Unit.id == ConsensusResult.unit_id).where(_in_project(project)).order_by(Unit.id))
    tail = [Column("confidence", "float", "Confidence of the unit's result, from 0 to 1."),
            Column("agreement", "float", "Share of the unit's answers that agree with the result (marks: the mean "
                                         "share of volunteers per mark); empty when not computed."),
            Column("n_answers", "int", "Answers the result was computed from."),
            Column("algorithm", "str", "The consensus algorithm (its parameters are in provenance.json)."),
            Column("version", "str", "Version of the code that computed the result."),
            Column("computed_at", "timestamp", "When the result was computed (UTC).")]
    if project.task_type is TaskType.tagging:
        labels = [str(label) for label in project.labels]
        multi = project.multi_select
        columns = [_UNIT_ID, _UNIT, *_label_columns(project, what="decided "),
                   *[Column(f"share_{label}", "float", f"Share of the evidence for {label!r} (several labels: "
                                                       "of the volunteers who chose it).") for label in labels],
                   *tail]

        def tagging_chunks() -> Chunks:
            done = 0
            for part in _fetch(session, statement):
                rows = []
                for unit_id, unit, result, *rest in part:
                    result = _json(result)
                    shares = result.get("shares") or {}
                    value = ";".join(result.get("labels") or []) if multi else result.get("label")
                    rows.append((unit_id, unit, value, *[shares.get(label, 0.0) for label in labels], *rest))
                done += len(part)
                yield done, _transpose(rows, len(columns))

        return Table(columns, _results_count(project), tagging_chunks)

    tiles = _tile_boxes(session, project)
    mark_columns = [
        *_mark_columns(project, "consensus mark"),
        Column("mark", "int", "The mark's number in the unit's result (empty: nothing was found)."),
        Column("support", "int", "Volunteers who marked it."),
        Column("mark_confidence", "float", "Share of the unit's volunteers who marked it."),
        Column("centre_spread", "float", "Median distance of the volunteers' centres from it, in pixels."),
        *([Column("radius_spread", "float", "Median difference of the volunteers' radii from its radius, in "
                                            "pixels.")] if _circles(project) else []),
        *(_TILE_COLUMNS if tiles.units else []),
    ]
    columns = [_UNIT_ID, _UNIT, *mark_columns, *tail]
    keys = ["confidence" if c.name == "mark_confidence" else c.name for c in mark_columns]

    def marking_chunks() -> Chunks:
        for done, units in _consensus_marks(session, statement, tiles):
            rows = [(unit_id, unit, *[mark.get(k) for k in keys], *rest)
                    for (unit_id, unit, _result, *rest), marks in units for mark in marks or [{}]]
            yield done, _transpose(rows, len(columns))

    return Table(columns, _results_count(project), marking_chunks)


def _answers_table(session: Session, project: Project) -> Table:
    head = [_ANSWER_ID, _UNIT_ID, _UNIT, _VOLUNTEER]
    tail = [Column("duration_ms", "int", "Time the volunteer spent on the unit, as their device measured it."),
            Column("counted", "bool", "Whether the answer counts towards consensus (not for gold units, late "
                                      "answers or quarantined volunteers)."),
            Column("gold_score", "float", "Gold units: agreement with the known answer, from 0 to 1."),
            Column("created_at", "timestamp", "When the answer arrived (UTC).")]

    def ordered(value: Any) -> Select[Any]:
        return (select(Answer.answer_uuid, Answer.unit_id, Unit.external_id, Volunteer.public_id, value,
                       Answer.duration_ms, Answer.counted, Answer.gold_score, Answer.created_at)
                .join(Unit, Unit.id == Answer.unit_id).join(Volunteer, Volunteer.id == Answer.volunteer_id)
                .where(_in_project(project)).order_by(Answer.id))

    count = _answers_count(project)
    if project.task_type is TaskType.tagging and not project.multi_select:
        # The database reads the label from the JSON, so the rows come out ready: this is the
        # export of the largest projects, and the fastest path.
        columns = [*head, *_label_columns(project), Column("unsure", "bool", "The volunteer answered 'not sure' "
                                                                               "(stored, never counted)."), *tail]
        statement = ordered(Answer.payload["label"].as_string())

        def label_chunks() -> Chunks:
            done = 0
            for part in _fetch(session, statement):
                values = _transpose(part, len(columns) - 1)
                values.insert(5, [label is None for label in values[4]])
                done += len(part)
                yield done, values

        return Table(columns, count, label_chunks)

    statement = ordered(Answer.payload)
    if project.task_type is TaskType.tagging:
        columns = [*head, *_label_columns(project), Column("unsure", "bool", "The volunteer answered 'not sure' "
                                                                               "(stored, never counted)."), *tail]

        def labels_chunks() -> Chunks:
            done = 0
            for part in _fetch(session, statement):
                rows = []
                for a, u, x, v, payload, *rest in part:
                    payload = _json(payload)
                    unsure = "unsure" in payload
                    rows.append((a, u, x, v, None if unsure else ";".join(payload.get("labels") or []), unsure,
                                 *rest))
                done += len(part)
                yield done, _transpose(rows, len(columns))

        return Table(columns, count, labels_chunks)

    keys = ("x", "y", "r") if _circles(project) else ("x", "y")
    columns = [*head, *_mark_columns(project, "mark"),
               Column("mark", "int", "The mark's number in the answer (empty: nothing there)."), *tail]
    blank = (None,) * len(keys)

    def mark_chunks() -> Chunks:
        done = 0
        for part in _fetch(session, statement):
            rows = []
            for a, u, x, v, payload, *rest in part:
                marks = _json(payload).get("marks") or []
                if not marks:
                    rows.append((a, u, x, v, *blank, None, *rest))
                rows += [(a, u, x, v, *[mark.get(k) for k in keys], i, *rest) for i, mark in enumerate(marks)]
            done += len(part)
            yield done, _transpose(rows, len(columns))

    return Table(columns, count, mark_chunks)


def _reliability_table(session: Session, project: Project) -> Table:
    stats = (select(Answer.volunteer_id.label("volunteer_id"), func.count().label("answers"),
                    func.sum(case((Answer.counted, 1), else_=0)).label("counted"),
                    func.count(Answer.gold_score).label("gold_answers"),
                    func.avg(Answer.gold_score).label("gold_score"))
             .join(Unit, Unit.id == Answer.unit_id).where(_in_project(project)).group_by(Answer.volunteer_id)
             .subquery())
    statement = (select(Volunteer.public_id, stats.c.answers, stats.c.counted, VolunteerReliability.skill,
                        VolunteerReliability.skill_std, VolunteerReliability.n_answers, stats.c.gold_answers,
                        stats.c.gold_score,
                        case((and_(Quarantine.id.is_not(None), Quarantine.released_at.is_(None)), True),
                             else_=False),
                        Quarantine.reason, VolunteerReliability.confusion)
                 .select_from(stats).join(Volunteer, Volunteer.id == stats.c.volunteer_id)
                 .outerjoin(VolunteerReliability, and_(VolunteerReliability.volunteer_id == stats.c.volunteer_id,
                                                       VolunteerReliability.project_id == project.id))
                 .outerjoin(Quarantine, and_(Quarantine.volunteer_id == stats.c.volunteer_id,
                                             Quarantine.project_id == project.id))
                 .order_by(Volunteer.public_id))
    columns = [
        _VOLUNTEER,
        Column("n_answers", "int", "Answers the volunteer gave in the project (gold and 'not sure' included)."),
        Column("counted", "int", "Of those, the answers that count towards consensus."),
        Column("skill", "float", "Fitted expected share of correct answers (multi-label projects: the mean of "
                                 "sensitivity and specificity, 1/2 being chance); empty until fitted."),
        Column("skill_std", "float", "Posterior standard deviation of the skill."),
        Column("fitted_answers", "int", "Answers the skill was fitted on."),
        Column("gold_answers", "int", "Answers to gold units."),
        Column("gold_score", "float", "Mean score on gold units, from 0 to 1 (empty without gold answers)."),
        Column("quarantined", "bool", "The volunteer's answers carry no weight now."),
        Column("quarantine_reason", "str", "Why the volunteer was quarantined (kept once released)."),
    ]
    labels = [str(label) for label in project.labels]
    n = len(labels)
    confusion = project.task_type is TaskType.tagging and not project.multi_select and n > 0
    coins = project.task_type is TaskType.tagging and project.multi_select
    if confusion:
        columns += [Column(f"confusion_{truth}_{given}", "float",
                           f"Fitted probability of answering {given!r} when the truth is {truth!r}.")
                    for truth in labels for given in labels]
    elif coins:
        columns += [Column("sensitivity", "float", "Fitted probability of ticking a label that applies."),
                    Column("specificity", "float", "Fitted probability of leaving out a label that does not.")]

    def chunks() -> Chunks:
        done = 0
        for part in _fetch(session, statement):
            rows = []
            for *values, matrix in part:
                matrix = _json(matrix) if confusion or coins else None
                side = n if confusion else 2
                fits = isinstance(matrix, list) and len(matrix) == side and all(len(row) == side for row in matrix)
                if confusion:
                    values += [p for row in matrix for p in row] if fits else [None] * (n * n)
                elif coins:  # rows: truth absent, present; columns: left out, ticked
                    values += [matrix[1][1], matrix[0][0]] if fits else [None, None]
                rows.append(values)
            done += len(part)
            yield done, _transpose(rows, len(columns))

    count = (select(func.count(distinct(Answer.volunteer_id))).select_from(Answer).join(Unit)
             .where(_in_project(project)))
    return Table(columns, count, chunks)


def _gold_table(session: Session, project: Project) -> Table:
    gold_units = Unit.gold.is_not(None)
    statement = (select(Answer.answer_uuid, Answer.unit_id, Unit.external_id, Volunteer.public_id, Unit.gold,
                        Answer.payload, Answer.gold_score, Answer.duration_ms, Answer.created_at)
                 .join(Unit, Unit.id == Answer.unit_id).join(Volunteer, Volunteer.id == Answer.volunteer_id)
                 .where(_in_project(project), gold_units).order_by(Answer.id))
    marking = project.task_type is TaskType.marking
    if marking:
        middle = [Column("expected_marks", "int", "Marks in the known answer."),
                  Column("given_marks", "int", "Marks the volunteer gave."),
                  Column("matched_marks", "int", "Given marks that match a known mark one to one, within the gold "
                                                 "tolerances.")]
    else:
        middle = [*_label_columns(project, "expected_", "known "), *_label_columns(project, "given_", "given "),
                  Column("unsure", "bool", "The volunteer answered 'not sure'.")]
    columns = [_ANSWER_ID, _UNIT_ID, _UNIT, _VOLUNTEER, *middle,
               Column("gold_score", "float", "Agreement of the given answer with the known one, from 0 to 1."),
               Column("duration_ms", "int", "Time the volunteer spent on the unit."),
               Column("created_at", "timestamp", "When the answer arrived (UTC).")]

    def flat(known: dict[str, Any], given: dict[str, Any]) -> tuple[Any, ...]:
        if marking:
            from microtasks import gold  # scipy, only for marks

            matched, n_known, n_given = gold.match_marks(known.get("marks") or [], given.get("marks") or [])
            return n_known, n_given, matched
        unsure = "unsure" in given
        if project.multi_select:
            return ";".join(known.get("labels") or []), None if unsure else ";".join(given.get("labels") or []), \
                unsure
        return known.get("label"), given.get("label"), unsure

    def chunks() -> Chunks:
        done = 0
        for part in _fetch(session, statement):
            rows = [(a, u, x, v, *flat(_json(known) or {}, _json(given) or {}), *rest)
                    for a, u, x, v, known, given, *rest in part]
            done += len(part)
            yield done, _transpose(rows, len(columns))

    return Table(columns, _answers_count(project, gold_units), chunks)


def table(session: Session, project: Project, kind: str) -> Table:
    """The flat export ``kind`` of a project: its columns, and its rows in chunks (read when iterated)."""
    builders = {"consensus": _consensus_table, "answers": _answers_table, "reliability": _reliability_table,
                "gold": _gold_table}
    if kind not in builders:
        raise ValidationError(f"Unknown export kind {kind!r}; choose from {', '.join(KINDS)}.", field="kind")
    return builders[kind](session, project)


# -- tiles ------------------------------------------------------------------------------------

#: A whole image of a tiles batch: ``(batch id, image name)``.
ImageKey = tuple[int, str]


@dataclass
class Tiles:
    """The tiled units of a project: where each tile lies in its whole image."""

    #: unit id -> (image, tile number, x0, y0, x1, y1)
    units: dict[int, tuple[ImageKey, int, float, float, float, float]] = field(default_factory=dict)
    #: image -> (name, width, height)
    images: dict[ImageKey, tuple[str, Any, Any]] = field(default_factory=dict)

    def boxes(self, key: ImageKey) -> list[tuple[int, float, float, float, float]]:
        return [(tile, x0, y0, x1, y1) for k, tile, x0, y0, x1, y1 in self.units.values() if k == key]


def _tile_boxes(session: Session, project: Project) -> Tiles:
    """The units of the project's tiles batches, with their boxes in the whole image."""
    tiles = Tiles()
    statement = (select(Unit.id, Unit.batch_id, Unit.data).join(Batch, Batch.id == Unit.batch_id)
                 .where(_in_project(project), Batch.kind == BatchKind.tiles))
    for part in _fetch(session, statement):
        for unit_id, batch_id, data in part:
            data = _json(data)
            if not isinstance(data, dict) or not all(k in data for k in ("image", "x0", "y0", "x1", "y1")):
                continue
            key = (int(batch_id), str(data["image"]))
            tiles.units[unit_id] = (key, int(data.get("tile", unit_id)), float(data["x0"]), float(data["y0"]),
                                    float(data["x1"]), float(data["y1"]))
            tiles.images.setdefault(key, (str(data["image"]), data.get("image_width"), data.get("image_height")))
    return tiles


#: A consensus record (the raw row) with its marks.
Marked = tuple[tuple[Any, ...], list[dict[str, Any]]]


def _merge_image(tiles: Tiles, key: ImageKey, units: list[Marked]) -> None:
    """Give the consensus marks of one image's tiles whole-image coordinates, and flag the overlaps' copies."""
    import pandas as pd

    from microtasks.tiles import merge_tiles

    records = [(tiles.units[record[0]][1], mark["x"], mark["y"], mark.get("r"), mark.get("support", 0), i, j)
               for i, (record, marks) in enumerate(units) for j, mark in enumerate(marks)]
    craters = pd.DataFrame(records, columns=["unit", "x", "y", "r", "support", "record", "mark"]).astype(
        {"x": float, "y": float, "r": float, "support": float})
    boxes = pd.DataFrame(tiles.boxes(key), columns=["tile", "x0", "y0", "x1", "y1"]).drop_duplicates("tile")
    merged = merge_tiles(craters, boxes)
    kept = set(zip(merged["record"].tolist(), merged["mark"].tolist()))
    for i, (record, marks) in enumerate(units):
        _, tile, x0, y0, _, _ = tiles.units[record[0]]
        for j, mark in enumerate(marks):
            mark.update(image=key[1], tile=tile, image_x=round(mark["x"] + x0, 2), image_y=round(mark["y"] + y0, 2),
                        duplicate=(i, j) not in kept)


def _consensus_marks(session: Session, statement: Select[Any], tiles: Tiles) -> Iterator[tuple[int, list[Marked]]]:
    """Consensus rows (unit id first, result third) with their numbered marks, in chunks.

    A tiled unit's marks get whole-image coordinates: the tiles of one image are held back
    until the image is complete and then merged with :func:`~microtasks.tiles.merge_tiles`
    (results are read in batch order, so an image's tiles come together).
    """
    if tiles.units:
        statement = statement.order_by(None).order_by(Unit.batch_id, Unit.id)
    done = 0
    held: list[Marked] = []
    held_key: ImageKey | None = None
    for part in _fetch(session, statement):
        out: list[Marked] = []
        for record in part:
            marks = [dict(mark, mark=i) for i, mark in enumerate(_json(record[2]).get("marks") or [])]
            key = tiles.units[record[0]][0] if record[0] in tiles.units else None
            if held and key != held_key:
                _merge_image(tiles, held_key, held)  # type: ignore[arg-type]
                out += held
                held = []
            if key is None:
                out.append((record, marks))
            else:
                held.append((record, marks))
                held_key = key
        done += len(part)
        yield done, out
    if held:
        _merge_image(tiles, held_key, held)  # type: ignore[arg-type]
        yield done, held


# -- flat formats through Arrow -----------------------------------------------------------------


def _pool() -> "pa.MemoryPool":
    """The C allocator's pool: it hands freed memory back, where Arrow's default (mimalloc) keeps tens of MB."""
    import pyarrow as pa

    return pa.system_memory_pool()


def _arrow_type(column: Column) -> "pa.DataType":
    import pyarrow as pa

    return {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
            "timestamp": pa.timestamp("us", tz="UTC")}[column.type]


def _arrays(columns: list[Column], values: list[list[Any]]) -> list["pa.Array"]:
    """Typed Arrow arrays of one chunk; NaN becomes null, and SQLite's 0/1 and time text are converted."""
    import pyarrow as pa

    pool = _pool()
    arrays = []
    for column, items in zip(columns, values):
        kind = column.type
        first = next((v for v in items if v is not None), None)
        if kind == "float":
            arrays.append(pa.array(items, pa.float64(), from_pandas=True, memory_pool=pool))
        elif kind == "bool" and first is not None and not isinstance(first, bool):
            arrays.append(pa.array(items, pa.int64(), memory_pool=pool).cast(pa.bool_(), memory_pool=pool))
        elif kind == "timestamp" and isinstance(first, str):
            text = pa.array(items, pa.string(), memory_pool=pool)
            if not _has_offset(first):
                text = text.cast(pa.timestamp("us"), memory_pool=pool)
            arrays.append(text.cast(_arrow_type(column), memory_pool=pool))
        else:
            arrays.append(pa.array(items, _arrow_type(column), memory_pool=pool))
    return arrays


def _time_text(array: "pa.Array") -> "pa.Array":
    """ISO 8601 text of UTC times (through naive times: formatting with a zone is far slower)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pool = _pool()
    text = array.cast(pa.timestamp("us"), memory_pool=pool).cast(pa.string(), memory_pool=pool)
    text = pc.replace_substring(text, " ", "T", max_replacements=1, memory_pool=pool)
    return pc.binary_join_element_wise(text, "Z", "", memory_pool=pool)


def _string_parts(array: "pa.Array") -> tuple["np.ndarray", "np.ndarray"]:
    """The offsets and the UTF-8 bytes of a string array, as numpy views (no copy)."""
    import numpy as np

    offsets = np.frombuffer(array.buffers()[1], np.int32, count=len(array) + 1, offset=4 * array.offset)
    data = array.buffers()[2]
    return offsets, np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)


def _csv_cells(array: "pa.Array", column: Column) -> "pa.Array":
    """One column of CSV cells as text: formulas neutralised, quotes where needed, floats as Python writes them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    pool = _pool()
    if array.null_count == len(array):
        return pa.nulls(len(array), pa.string(), memory_pool=pool)
    if column.type == "timestamp":
        return _time_text(array)
    if column.type == "bool":
        return pc.if_else(array, "true", "false", memory_pool=pool)
    if column.type == "float":
        text = array.cast(pa.string(), memory_pool=pool)
        whole = pc.match_substring_regex(text, r"^-?\d+$", memory_pool=pool)
        return pc.if_else(whole, pc.binary_join_element_wise(text, ".0", "", memory_pool=pool), text,
                          memory_pool=pool)
    if column.type != "str":
        return array.cast(pa.string(), memory_pool=pool)
    offsets, data = _string_parts(array)
    starts = offsets[:-1][offsets[:-1] < offsets[1:]]
    if np.isin(data[starts], _FORMULA_BYTES).any():
        formula = pc.match_substring_regex(array, _FORMULA_PATTERN, memory_pool=pool)
        array = pc.if_else(formula, pc.binary_join_element_wise("'", array, "", memory_pool=pool), array,
                           memory_pool=pool)
        offsets, data = _string_parts(array)
    if np.isin(data[offsets[0]:offsets[-1]], _QUOTED_BYTES).any():
        escaped = pc.replace_substring(array, '"', '""', memory_pool=pool)
        quoted = pc.binary_join_element_wise('"', escaped, '"', "", memory_pool=pool)
        array = pc.if_else(pc.match_substring_regex(array, '[",\r\n]', memory_pool=pool), quoted, array,
                           memory_pool=pool)
    return array


def _csv_chunk(columns: list[Column], arrays: list["pa.Array"]) -> bytes:
    """CSV lines of one chunk, joined by Arrow: the last cell of each line gets the newline, so the
    joined lines, end to end, are the text."""
    import pyarrow.compute as pc

    pool = _pool()
    cells = [_csv_cells(array, column) for column, array in zip(columns, arrays)]
    cells[-1] = pc.binary_join_element_wise(cells[-1], "\n", "", null_handling="replace", null_replacement="",
                                            memory_pool=pool)
    lines = pc.binary_join_element_wise(*cells, ",", null_handling="replace", null_replacement="", memory_pool=pool)
    offsets, data = _string_parts(lines)
    return data[offsets[0]:offsets[-1]].tobytes()


def _csv_chunks(data: Table, tally: Tally, progress: Progress | None) -> Iterator[bytes]:
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([neutralise(c.name) for c in data.columns])
    yield header.getvalue().encode("utf-8")
    for done, values in data.chunks():
        if values and values[0]:
            yield _csv_chunk(data.columns, _arrays(data.columns, values))
        tally.records, tally.rows = done, tally.rows + (len(values[0]) if values else 0)
        if progress:
            progress(done, max(tally.total, done))


def _json_records(columns: list[Column], arrays: list["pa.Array"]) -> list[dict[str, Any]]:
    import pyarrow as pa

    arrays = [_time_text(a) if c.type == "timestamp" else a for c, a in zip(columns, arrays)]
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns]).to_pylist()


def _jsonl_chunks(data: Table, tally: Tally, progress: Progress | None, array: bool = False) -> Iterator[bytes]:
    """One JSON object per line; with ``array``, the same objects in one JSON array."""
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    if array:
        yield b"["
    for done, values in data.chunks():
        if values and values[0]:
            lines = [dumps(record) for record in _json_records(data.columns, _arrays(data.columns, values))]
            if array:
                yield (("\n" if tally.rows == 0 else ",\n") + ",\n".join(lines)).encode("utf-8")
            else:
                yield ("\n".join(lines) + "\n").encode("utf-8")
        tally.records, tally.rows = done, tally.rows + (len(values[0]) if values else 0)
        if progress:
            progress(done, max(tally.total, done))
    if array:
        yield b"\n]\n"


def _write_parquet(data: Table, handle: IO[bytes], tally: Tally, progress: Progress | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c.name, _arrow_type(c), metadata={"description": c.description})
                        for c in data.columns])
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    with pq.ParquetWriter(handle, schema, compression="snappy", memory_pool=_pool()) as writer:
        for done, values in data.chunks():
            rows = len(values[0]) if values else 0
            if rows:
                pending.append(pa.record_batch(_arrays(data.columns, values), schema=schema))
                pending_rows += rows
            if pending_rows >= ROW_GROUP:
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=ROW_GROUP)
                pending, pending_rows = [], 0
            tally.records, tally.rows = done, tally.rows + rows
            if progress:
                progress(done, max(tally.total, done))
        if pending or tally.rows == 0:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=ROW_GROUP)


# -- marks: GeoJSON and COCO ------------------------------------------------------------------------


@dataclass
class _Marks:
    """The marks of one result or answer, in its unit's pixels, with what a feature or annotation needs."""

    unit_id: int
    unit: str
    marks: list[dict[str, Any]]
    #: Shared by the marks: the result's confidence, or the answer's volunteer...
    properties: dict[str, Any]


def _marks_source(session: Session, project: Project, kind: str, tiles: Tiles
                  ) -> tuple[int, Iterator[tuple[int, list[_Marks]]]]:
    """The source records expected, and the marks of each result or answer in chunks."""
    if kind == "consensus":
        statement = (select(ConsensusResult.unit_id, Unit.external_id, ConsensusResult.result,
                            ConsensusResult.confidence, ConsensusResult.agreement, ConsensusResult.n_answers,
                            ConsensusResult.algorithm)
                     .join(Unit, Unit.id == ConsensusResult.unit_id).where(_in_project(project)).order_by(Unit.id))

        def consensus() -> Iterator[tuple[int, list[_Marks]]]:
            for done, units in _consensus_marks(session, statement, tiles):
                yield done, [_Marks(unit_id, unit, marks, {"unit_confidence": confidence, "agreement": agreement,
                                                           "n_answers": n_answers, "algorithm": algorithm})
                             for (unit_id, unit, _r, confidence, agreement, n_answers, algorithm), marks in units]

        return _count(session, _results_count(project)), consensus()
    statement = (select(Answer.unit_id, Unit.external_id, Answer.payload, Answer.answer_uuid, Volunteer.public_id,
                        Answer.counted, Answer.created_at)
                 .join(Unit, Unit.id == Answer.unit_id).join(Volunteer, Volunteer.id == Answer.volunteer_id)
                 .where(_in_project(project)).order_by(Answer.id))

    def answers() -> Iterator[tuple[int, list[_Marks]]]:
        done = 0
        for part in _fetch(session, statement):
            units = []
            for unit_id, unit, payload, answer_id, volunteer, counted, created_at in part:
                marks = [dict(mark, mark=i) for i, mark in enumerate(_json(payload).get("marks") or [])]
                if unit_id in tiles.units:
                    key, tile, x0, y0, _, _ = tiles.units[unit_id]
                    for mark in marks:
                        mark.update(image=key[1], tile=tile, image_x=round(mark["x"] + x0, 2),
                                    image_y=round(mark["y"] + y0, 2))
                units.append(_Marks(unit_id, unit, marks, {"answer_id": answer_id, "volunteer": volunteer,
                                                           "counted": _bool(counted), "created_at": _iso(created_at)}))
            done += len(part)
            yield done, units

    return _count(session, _answers_count(project)), answers()


_GEOJSON_PROPERTIES = [
    Column("unit_id", "int", "The unit's id."),
    Column("unit", "str", "The owner's name for the unit."),
    Column("mark", "int", "The mark's number in the unit's result or in the answer."),
    Column("r", "float", "Circles: the radius in pixels."),
    Column("support", "int", "Consensus: volunteers who marked it."),
    Column("confidence", "float", "Consensus: share of the unit's volunteers who marked it."),
    Column("centre_spread", "float", "Consensus: median distance of the volunteers' centres from it, in pixels."),
    Column("radius_spread", "float", "Consensus, circles: median difference of the volunteers' radii."),
    Column("unit_confidence", "float", "Consensus: confidence of the unit's whole result."),
    Column("agreement", "float", "Consensus: agreement of the unit's answers with the result."),
    Column("n_answers", "int", "Consensus: answers the result was computed from."),
    Column("algorithm", "str", "Consensus: the algorithm (parameters in provenance.json)."),
    Column("answer_id", "str", "Answers: the answer's id."),
    Column("volunteer", "str", "Answers: the volunteer's pseudonymous id."),
    Column("counted", "bool", "Answers: whether it counts towards consensus."),
    Column("created_at", "timestamp", "Answers: when it arrived (UTC)."),
    *_TILE_COLUMNS,
]

_COCO_FIELDS = [
    Column("images", "list", "One per unit (id: the unit's id), or one per whole image for tiled units: file_name, "
                             "width, height."),
    Column("annotations.bbox", "list", "[x - r, y - r, 2r, 2r] in image pixels (points: a 1 x 1 box around it)."),
    Column("annotations.score", "float", "Consensus: the mark's confidence."),
    Column("annotations.attributes", "dict", "unit_id, unit, mark, x, y, r; support (consensus), answer_id and "
                                             "volunteer (answers); tile (tiled units)."),
    Column("categories", "list", "One category: crater (circles) or point."),
]


def _geojson_chunks(session: Session, project: Project, kind: str, tally: Tally, progress: Progress | None
                    ) -> Iterator[bytes]:
    tiles = _tile_boxes(session, project)
    total, source = _marks_source(session, project, kind, tiles)
    tally.total = total
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    yield (b'{"type": "FeatureCollection", "coordinate_system": "pixels of the unit\'s image: x to the right, '
           b'y down, origin at the top-left corner", "features": [')
    for done, units in source:
        features = []
        for item in units:
            for mark in item.marks:
                properties = {"unit_id": item.unit_id, "unit": item.unit,
                              **{k: v for k, v in mark.items() if k not in ("x", "y")}, **item.properties}
                features.append(dumps({"type": "Feature", "id": tally.rows + len(features) + 1,
                                       "geometry": {"type": "Point", "coordinates": [mark["x"], mark["y"]]},
                                       "properties": properties}))
        if features:
            yield (("," if tally.rows else "") + "\n" + ",\n".join(features)).encode("utf-8")
        tally.records, tally.rows = done, tally.rows + len(features)
        if progress:
            progress(done, max(total, done))
    yield b"\n]}\n"


def _coco_chunks(session: Session, project: Project, kind: str, tally: Tally, progress: Progress | None
                 ) -> Iterator[bytes]:
    """COCO: the images, then the annotations; a tiled unit's marks go on its whole image."""
    tiles = _tile_boxes(session, project)
    circle = _circles(project)
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    info = {"description": f"{project.name}: {kind} marks", "version": __version__,
            "date_created": _iso(datetime.now(timezone.utc))}
    category = {"id": 1, "name": "crater" if circle else "point", "supercategory": "mark"}
    yield f'{{"info": {dumps(info)}, "licenses": [], "categories": [{dumps(category)}], "images": ['.encode()
    written = 0
    statement = (select(Unit.id, Unit.external_id, Unit.media, Unit.width, Unit.height)
                 .where(_in_project(project)).order_by(Unit.id))
    for part in _fetch(session, statement):
        images = [dumps({"id": unit_id, "file_name": name, "media": media, "width": width, "height": height})
                  for unit_id, name, media, width, height in part if unit_id not in tiles.units]
        if images:
            yield (("," if written else "") + "\n" + ",\n".join(images)).encode("utf-8")
            written += len(images)
    first_id = _count(session, select(func.max(Unit.id))) + 1
    image_ids = {key: first_id + i for i, key in enumerate(tiles.images)}
    for key, (name, width, height) in tiles.images.items():
        yield (("," if written else "") + "\n" + dumps({"id": image_ids[key], "file_name": name, "width": width,
                                                        "height": height})).encode("utf-8")
        written += 1
    yield b'\n], "annotations": ['
    total, source = _marks_source(session, project, kind, tiles)
    tally.total = total
    for done, units in source:
        annotations = []
        for item in units:
            for mark in item.marks:
                if mark.get("duplicate"):
                    continue
                tiled = "image_x" in mark
                x, y = (mark["image_x"], mark["image_y"]) if tiled else (mark["x"], mark["y"])
                r = mark.get("r") if circle else None
                bbox = [round(x - r, 2), round(y - r, 2), round(2 * r, 2), round(2 * r, 2)] if r else \
                    [round(x - 0.5, 2), round(y - 0.5, 2), 1, 1]
                attributes = {"unit_id": item.unit_id, "unit": item.unit, "mark": mark.get("mark"), "x": x, "y": y,
                              **({"r": r} if r else {})}
                for name in ("support", "tile", "answer_id", "volunteer"):
                    if name in mark or name in item.properties:
                        attributes[name] = mark.get(name, item.properties.get(name))
                annotation = {"id": tally.rows + len(annotations) + 1,
                              "image_id": image_ids[tiles.units[item.unit_id][0]] if tiled else item.unit_id,
                              "category_id": 1, "bbox": bbox, "area": round(3.141592653589793 * r * r, 2) if r else 1,
                              "iscrowd": 0, "attributes": attributes}
                if "confidence" in mark:
                    annotation["score"] = mark["confidence"]
                annotations.append(dumps(annotation))
        if annotations:
            yield (("," if tally.rows else "") + "\n" + ",\n".join(annotations)).encode("utf-8")
        tally.records, tally.rows = done, tally.rows + len(annotations)
        if progress:
            progress(done, max(total, done))
    yield b"\n]}\n"


# -- the JSON array of the direct download (nested results kept) ------------------------------------


def _nested_chunks(session: Session, project: Project, kind: str, tally: Tally, progress: Progress | None
                   ) -> Iterator[bytes]:
    """One JSON array of records with the nested result or payload, as the direct download has always given."""
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    if kind == "consensus":
        names = ["unit_id", "unit", "result", "confidence", "agreement", "n_answers", "algorithm", "parameters",
                 "version", "computed_at"]
        statement = (select(ConsensusResult.unit_id, Unit.external_id, ConsensusResult.result,
                            ConsensusResult.confidence, ConsensusResult.agreement, ConsensusResult.n_answers,
                            ConsensusResult.algorithm, ConsensusResult.parameters, ConsensusResult.version,
                            ConsensusResult.computed_at)
                     .join(Unit, Unit.id == ConsensusResult.unit_id).where(_in_project(project)).order_by(Unit.id))
        tally.total = _count(session, _results_count(project))

        def record(row: tuple[Any, ...]) -> dict[str, Any]:
            u, x, result, c, a, n, algorithm, parameters, version, at = row
            return dict(zip(names, (u, x, _json(result), c, a, n, algorithm, _json(parameters), version, _iso(at))))
    else:
        names = ["answer_id", "unit_id", "unit", "volunteer", "payload", "duration_ms", "counted", "gold_score",
                 "created_at"]
        statement = (select(Answer.answer_uuid, Answer.unit_id, Unit.external_id, Volunteer.public_id,
                            Answer.payload, Answer.duration_ms, Answer.counted, Answer.gold_score, Answer.created_at)
                     .join(Unit, Unit.id == Answer.unit_id).join(Volunteer, Volunteer.id == Answer.volunteer_id)
                     .where(_in_project(project)).order_by(Answer.id))
        tally.total = _count(session, _answers_count(project))

        def record(row: tuple[Any, ...]) -> dict[str, Any]:
            a, u, x, v, payload, ms, counted, score, at = row
            return dict(zip(names, (a, u, x, v, _json(payload), ms, _bool(counted), score, _iso(at))))
    yield b"["
    for part in _fetch(session, statement):
        yield (("," if tally.rows else "") + "\n" + ",\n".join(dumps(record(row)) for row in part)).encode("utf-8")
        tally.records = tally.rows = tally.rows + len(part)
        if progress:
            progress(tally.records, max(tally.total, tally.records))
    yield b"\n]\n"


# -- writing -----------------------------------------------------------------------------------------


def _chunks(session: Session, project: Project, kind: str, fmt: str, tally: Tally, progress: Progress | None
            ) -> Iterator[bytes]:
    """The data file of a text format, in chunks of bytes."""
    if fmt == "geojson":
        return _geojson_chunks(session, project, kind, tally, progress)
    if fmt == "coco":
        return _coco_chunks(session, project, kind, tally, progress)
    if fmt == "json" and kind in ("consensus", "answers"):
        return _nested_chunks(session, project, kind, tally, progress)
    data = table(session, project, kind)
    tally.total = _count(session, data.count)
    if fmt == "csv":
        return _csv_chunks(data, tally, progress)
    return _jsonl_chunks(data, tally, progress, array=fmt == "json")


def stream(session: Session, project: Project, kind: str, fmt: str, progress: Progress | None = None
           ) -> Iterator[bytes]:
    """An export as chunks of UTF-8 text (any format but Parquet), for a direct download.

    ``kind`` and ``fmt`` are checked at once (:class:`~microtasks.errors.ValidationError`);
    the rows are read as the chunks are consumed, so keep the session open until then.
    """
    validate(project, kind, fmt, [f for f in FORMATS if f != "parquet"])
    return _chunks(session, project, kind, fmt, Tally(), progress)


def write_data(session: Session, project: Project, kind: str, fmt: str, handle: IO[bytes],
               progress: Progress | None = None) -> Tally:
    """Write an export's data file to the binary ``handle``; returns what was read and written."""
    validate(project, kind, fmt)
    tally = Tally()
    if fmt == "parquet":
        data = table(session, project, kind)
        tally.total = _count(session, data.count)
        _write_parquet(data, handle, tally, progress)
    else:
        for chunk in _chunks(session, project, kind, fmt, tally, progress):
            handle.write(chunk)
    tally.total = tally.records
    if progress:
        progress(tally.records, tally.total)
    return tally


def columns(session: Session, project: Project, kind: str, fmt: str) -> list[Column]:
    """The columns of a flat export (for GeoJSON and COCO, the properties and fields)."""
    if fmt == "geojson":
        return _GEOJSON_PROPERTIES
    if fmt == "coco":
        return _COCO_FIELDS
    return table(session, project, kind).columns


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout the code runs from, when there is one and git is at hand."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def counts(session: Session, project: Project) -> dict[str, int]:
    """The project's units, gold units, answers, counted answers, results and volunteers who answered."""
    in_project = _in_project(project)
    units, gold_units = session.execute(select(func.count(), func.count(Unit.gold)).where(in_project)).one()
    answers, counted, volunteers = session.execute(
        select(func.count(), func.sum(case((Answer.counted, 1), else_=0)), func.count(distinct(Answer.volunteer_id)))
        .select_from(Answer).join(Unit).where(in_project)).one()
    return {"units": units, "gold_units": gold_units, "answers": answers, "counted_answers": int(counted or 0),
            "results": _count(session, _results_count(project)), "volunteers": volunteers}


_NOTES = {
    "csv": "UTF-8, comma-separated, with a header row. Several labels are joined by ';'. A text cell starting with "
           "=, +, -, @, tab or carriage return is prefixed with ' so that spreadsheets do not run it. Booleans are "
           "true/false, an empty cell is a missing value, times are ISO 8601 in UTC.",
    "jsonl": "One JSON object per line, with the columns below; null is a missing value; times are ISO 8601 "
             "in UTC.",
    "parquet": f"Typed columns (descriptions in the field metadata); times in microseconds, UTC; row groups of "
               f"{ROW_GROUP} rows.",
    "geojson": "A FeatureCollection of Point features with coordinates in the pixels of the unit's image (x to "
               "the right, y down); circles carry their radius in the property r. Marks of tiled units also give "
               "whole-image coordinates (image_x, image_y).",
    "coco": "COCO object detection: bounding boxes in image pixels, one category. A tiled unit's marks are placed "
            "on its whole image (consensus: without the overlaps' copies).",
}


def provenance(session: Session, project: Project, kind: str, fmt: str) -> dict[str, Any]:
    """What an export holds and how it was made (``counts.records`` and ``counts.rows`` come once written)."""
    algorithms = session.execute(
        select(ConsensusResult.algorithm, ConsensusResult.version, ConsensusResult.parameters, func.count())
        .join(Unit, Unit.id == ConsensusResult.unit_id).where(_in_project(project))
        .group_by(ConsensusResult.algorithm, ConsensusResult.version, ConsensusResult.parameters)
        .order_by(func.count().desc(), ConsensusResult.algorithm)).all()
    model = session.get(ProjectModel, project.id)
    return {
        "project": {"id": project.id, "slug": project.slug, "name": project.name,
                    "task_type": project.task_type.value, "labels": list(project.labels),
                    "multi_select": project.multi_select,
                    "marking_tool": project.marking_tool.value if project.marking_tool else None,
                    "redundancy": project.redundancy},
        "export": {"kind": kind, "format": fmt, "file": data_name(project, kind, fmt), "notes": _NOTES.get(fmt, ""),
                   "columns": [{"name": c.name, "type": c.type, "description": c.description}
                               for c in columns(session, project, kind, fmt)]},
        "algorithms": [{"algorithm": name, "version": version, "parameters": parameters, "results": n}
                       for name, version, parameters, n in algorithms],
        "reliability_model": None if model is None else {
            "algorithm": model.algorithm, "parameters": model.parameters, "n_answers": model.n_answers,
            "fitted_at": _iso(model.fitted_at)},
        "code": {"package": "microtasks", "version": __version__, "git_commit": git_commit()},
        "created_at": _iso(datetime.now(timezone.utc)),
        "counts": counts(session, project),
    }


class _BackgroundWriter(io.RawIOBase):
    """Writes to ``handle`` on a thread of its own, a few chunks behind.

    Deflating runs without the GIL, so the ZIP compresses on another core while the next
    rows are read and formatted. The queue is short, so memory stays bounded.
    """

    def __init__(self, handle: IO[bytes], depth: int = 4) -> None:
        super().__init__()
        self._handle = handle
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._written = 0
        self._thread = threading.Thread(target=self._drain, name="export-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._handle.write(chunk)
                except BaseException as error:  # handed to the writing thread in write() or close()
                    self._error = error

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._error is not None:
            raise self._error
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._queue.put(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def close(self) -> None:
        if not self.closed:
            self._queue.put(None)
            self._thread.join()
            super().close()
        if self._error is not None:
            raise self._error


def write_archive(session: Session, project: Project, kind: str, fmt: str, path: Path,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Write the ZIP of an export at ``path`` (the data file, then ``provenance.json``); returns the provenance.

    Text is deflated at the fastest level; Parquet, compressed already, is stored. The ZIP
    appears at ``path`` only once complete.
    """
    validate(project, kind, fmt, ARCHIVE_FORMATS)
    record = provenance(session, project, kind, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    method = zipfile.ZIP_STORED if fmt == "parquet" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(partial, "w", compression=method, compresslevel=1) as archive:
        with archive.open(data_name(project, kind, fmt), "w", force_zip64=True) as handle:
            if method == zipfile.ZIP_STORED:
                tally = write_data(session, project, kind, fmt, handle, progress)
            else:
                writer = _BackgroundWriter(handle)
                try:
                    tally = write_data(session, project, kind, fmt, writer, progress)
                finally:
                    writer.close()
        record["counts"].update(records=tally.records, rows=tally.rows)
        record["finished_at"] = _iso(datetime.now(timezone.utc))
        archive.writestr("provenance.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    partial.replace(path)
    return record


def write_export(session: Session, project: Project, kind: str, fmt: str, directory: Path,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Write ``<slug>-<kind>-<format>.zip``, the data file with its ``provenance.json``, into ``directory``.

    Args:
        session: read from; nothing is written, nothing committed.
        project: the project to export.
        kind: one of :data:`KINDS`.
        fmt: one of :data:`ARCHIVE_FORMATS` (geojson and coco: the consensus or answers of a
            marking project).
        directory: made if missing.
        progress: called as ``progress(done, total)`` with the source records read, after each chunk.

    Returns:
        The provenance as written to ``provenance.json``, plus ``archive``, the ZIP's file name.
    """
    name = archive_name(project, kind, fmt)
    record = write_archive(session, project, kind, fmt, Path(directory) / name, progress)
    return {**record, "archive": name}
