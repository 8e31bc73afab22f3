"""Exporting consensus results and raw answers as flat CSV or JSON, streamed.

CSV is flat: one column per field, never JSON in a cell. Multi-label results list
their labels separated by ``;``; marking results have one row per consensus mark
(and one row with empty coordinates for a unit where nothing was found). Text
cells that a spreadsheet would run as a formula are prefixed with ``'``.
JSON is one array of records, streamed, with the nested structures kept.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Iterator

from marshmallow import Schema, fields
from sqlalchemy import select
from sqlalchemy.orm import Session

from microtasks.models import Answer, ConsensusResult, Project, TaskType, Unit, Volunteer

KINDS = ("consensus", "answers")
FORMATS = ("csv", "json")
_BATCH = 1000


class ConsensusRecord(Schema):
    unit_id = fields.Integer()
    unit = fields.String()
    result = fields.Dict()
    confidence = fields.Float()
    n_answers = fields.Integer()
    algorithm = fields.String()
    parameters = fields.Dict()
    version = fields.String()
    computed_at = fields.DateTime()


class AnswerRecord(Schema):
    answer_id = fields.String()
    unit_id = fields.Integer()
    unit = fields.String()
    volunteer = fields.String()
    payload = fields.Dict()
    duration_ms = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


def _consensus_records(session: Session, project: Project) -> Iterator[dict[str, Any]]:
    rows = session.execute(
        select(ConsensusResult, Unit.external_id).join(Unit, Unit.id == ConsensusResult.unit_id)
        .where(Unit.project_id == project.id).order_by(Unit.id).execution_options(yield_per=_BATCH)
    )
    for result, external_id in rows:
        yield {"unit_id": result.unit_id, "unit": external_id, "result": result.result,
               "confidence": result.confidence, "n_answers": result.n_answers, "algorithm": result.algorithm,
               "parameters": result.parameters, "version": result.version, "computed_at": result.computed_at}


def _answer_records(session: Session, project: Project) -> Iterator[dict[str, Any]]:
    rows = session.execute(
        select(Answer, Unit.external_id, Volunteer.public_id)
        .join(Unit, Unit.id == Answer.unit_id).join(Volunteer, Volunteer.id == Answer.volunteer_id)
        .where(Unit.project_id == project.id).order_by(Answer.id).execution_options(yield_per=_BATCH)
    )
    for answer, external_id, volunteer in rows:
        yield {"answer_id": answer.answer_uuid, "unit_id": answer.unit_id, "unit": external_id,
               "volunteer": volunteer, "payload": answer.payload, "duration_ms": answer.duration_ms,
               "created_at": answer.created_at}


def _value_columns(project: Project) -> list[str]:
    if project.task_type is TaskType.tagging:
        return ["labels", "unsure"] if project.multi_select else ["label", "unsure"]
    return ["x", "y", "r"] if project.marking_tool and project.marking_tool.value == "circle" else ["x", "y"]


def _flat_values(project: Project, value: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows one result or answer becomes in CSV: one per mark for marking projects."""
    if project.task_type is TaskType.tagging:
        unsure = bool(value.get("unsure"))
        if project.multi_select:
            return [{"labels": ";".join(value.get("labels", [])), "unsure": unsure}]
        return [{"label": value.get("label"), "unsure": unsure}]
    return value.get("marks") or [{}]


def rows(session: Session, project: Project, kind: str) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Header and flat rows of an export."""
    values = _value_columns(project)
    marking = project.task_type is TaskType.marking
    if kind == "consensus":
        values = [v for v in values if v != "unsure"]
        extra = ["support", "mark_confidence"] if marking else []
        header = ["unit_id", "unit", *values, *extra, "confidence", "n_answers", "algorithm", "version",
                  "computed_at"]

        def consensus_rows() -> Iterator[dict[str, Any]]:
            for record in _consensus_records(session, project):
                for value in _flat_values(project, record["result"]):
                    row = {k: record[k] for k in header if k in record}
                    row.update({k: value.get(k) for k in values})
                    if marking:
                        row.update(support=value.get("support"), mark_confidence=value.get("confidence"))
                    yield row

        return header, consensus_rows()
    header = ["answer_id", "unit_id", "unit", "volunteer", *values, "duration_ms", "created_at"]

    def answer_rows() -> Iterator[dict[str, Any]]:
        for record in _answer_records(session, project):
            for value in _flat_values(project, record["payload"]):
                row = {k: record[k] for k in header if k in record}
                row.update({k: value.get(k) for k in values})
                yield row

    return header, answer_rows()


def neutralise(cell: Any) -> Any:
    """Keep spreadsheets from running a text cell as a formula."""
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + cell
    return cell


def stream_csv(session: Session, project: Project, kind: str) -> Iterator[str]:
    header, body = rows(session, project, kind)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for count, row in enumerate(body, start=1):
        writer.writerow({k: neutralise(v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()})
        if count % _BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def stream_json(session: Session, project: Project, kind: str) -> Iterator[str]:
    schema: Schema = ConsensusRecord() if kind == "consensus" else AnswerRecord()
    records: Iterable[dict[str, Any]] = (
        _consensus_records(session, project) if kind == "consensus" else _answer_records(session, project)
    )
    yield "["
    for i, record in enumerate(records):
        yield ("," if i else "") + "\n" + json.dumps(schema.dump(record), ensure_ascii=False)
    yield "\n]\n"


def stream(session: Session, project: Project, kind: str, fmt: str) -> Iterator[str]:
    """The export as chunks of text; ``kind`` is consensus or answers, ``fmt`` csv or json."""
    if kind not in KINDS:
        raise ValueError(f"unknown export {kind!r}; choose from {KINDS}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    return stream_csv(session, project, kind) if fmt == "csv" else stream_json(session, project, kind)
