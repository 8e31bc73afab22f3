"""Computing and storing a unit's consensus result."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from microtasks import __version__
from microtasks.consensus import MajorityVote, MarkMajority, MultiLabelMajority
from microtasks.errors import NotFound
from microtasks.models import Answer, ConsensusResult, Project, TaskType, Unit, Volunteer, utcnow


def aggregate_unit(project: Project, answers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Consensus for one unit's ``(volunteer, payload)`` answers: result, confidence, algorithm, parameters."""
    if project.task_type is TaskType.tagging and project.multi_select:
        frame = pd.DataFrame({"unit": 0, "volunteer": [v for v, _ in answers],
                              "labels": [p["labels"] for _, p in answers]})
        model = MultiLabelMajority().fit(frame)
        labels = model.labels_.iloc[0] if len(model.labels_) else []
        confidence = float(model.confidences_.iloc[0]) if len(model.confidences_) else 0.0
        shares = model.probas_.iloc[0].round(4).to_dict() if len(model.probas_) else {}
        return {"result": {"labels": labels, "shares": shares}, "confidence": confidence,
                "algorithm": model.name, "parameters": {"threshold": 0.5}}
    if project.task_type is TaskType.tagging:
        frame = pd.DataFrame({"unit": 0, "volunteer": [v for v, _ in answers],
                              "label": [p["label"] for _, p in answers]})
        model = MajorityVote().fit(frame)
        shares = model.probas_.iloc[0]
        return {"result": {"label": model.labels_.iloc[0], "shares": shares[shares > 0].round(4).to_dict()},
                "confidence": float(model.confidences_.iloc[0]), "algorithm": model.name,
                "parameters": {"tie_break": "random", "seed": 0}}
    rows = []
    for volunteer, payload in answers:
        marks = payload["marks"] or [{}]
        for mark in marks:
            rows.append({"unit": 0, "volunteer": volunteer, "x": mark.get("x"), "y": mark.get("y"),
                         "r": mark.get("r")})
    frame = pd.DataFrame(rows, columns=["unit", "volunteer", "x", "y", "r"]).astype(
        {"x": float, "y": float, "r": float})
    model = MarkMajority().fit(frame)
    return {"result": {"marks": model.marks_.iloc[0]}, "confidence": float(model.confidences_.iloc[0]),
            "algorithm": model.name, "parameters": model.parameters}


def compute_consensus(session: Session, unit_id: int, job_id: str | None = None) -> ConsensusResult:
    """Aggregate all stored answers of a unit and upsert its result (keyed by unit)."""
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"No unit {unit_id}.")
    answers = session.execute(
        select(Volunteer.public_id, Answer.payload).join(Volunteer, Volunteer.id == Answer.volunteer_id)
        .where(Answer.unit_id == unit_id).order_by(Answer.id)
    ).all()
    if not answers:
        raise NotFound(f"Unit {unit_id} has no answers yet.")
    decided = aggregate_unit(unit.project, [(v, p) for v, p in answers])
    values = dict(unit_id=unit_id, n_answers=len(answers), version=__version__, job_id=job_id,
                  computed_at=utcnow(), **decided)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(ConsensusResult).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[ConsensusResult.unit_id],
        set_={key: statement.excluded[key] for key in values if key != "unit_id"},
    )
    session.execute(statement)
    return session.scalars(
        select(ConsensusResult).where(ConsensusResult.unit_id == unit_id).execution_options(populate_existing=True)
    ).one()
