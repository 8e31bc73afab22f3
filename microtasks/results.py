"""Computing and storing a unit's consensus result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from microtasks import __version__, gold
from microtasks.consensus import DEFAULT_LABEL_METHOD, LABEL_METHODS, MajorityVote, MultiLabelMajority
from microtasks.consensus.craters import CraterClustering
from microtasks.consensus.incremental import ReliabilityModel
from microtasks.db import upsertable_insert
from microtasks.errors import NotFound
from microtasks.models import (
    Answer,
    ConsensusResult,
    Project,
    ProjectModel,
    TaskType,
    Unit,
    UnitState,
    VolunteerReliability,
    utcnow,
)
from microtasks.quarantine import Rules, quarantine, quarantined, suspects


def aggregate_unit(project: Project, answers: list[tuple[Hashable, dict[str, Any]]],
                   model: ReliabilityModel | None = None, fitted: str | None = None) -> dict[str, Any]:
    """Consensus for one unit's ``(volunteer, payload)`` answers: result, confidence, algorithm, parameters.

    For single-label tagging with a fitted ``model`` (named ``fitted``), the unit's posterior
    comes from the volunteers' fitted reliabilities; otherwise from a majority vote.
    """
    if project.task_type is TaskType.tagging and not project.multi_select and model is not None:
        posterior = model.posterior([(v, p["label"]) for v, p in answers])
        best = int(np.argmax(posterior))
        shares = {str(label): round(float(share), 4) for label, share in zip(model.labels, posterior) if share >= 1e-4}
        return {"result": {"label": model.labels[best], "shares": shares}, "confidence": float(posterior[best]),
                "algorithm": f"{fitted}+incremental", "parameters": {"reliabilities": "last refit"}}
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
    model = CraterClustering().fit(frame)
    return {"result": {"marks": model.marks_.iloc[0]}, "confidence": float(model.confidences_.iloc[0]),
            "algorithm": model.name, "parameters": model.parameters}


def agreement(result: dict[str, Any], payloads: list[dict[str, Any]]) -> float | None:
    """Share of a unit's answers that agree with its result, from 0 to 1 (None with no answers).

    Single label: the share of answers giving the result's label. Several labels: the mean
    Jaccard index of each answer's labels with the result's (1 when both are empty). Marks:
    the mean over consensus marks of their support (volunteers) over the answers; with no
    consensus mark, the share of answers that marked nothing. "Not sure" answers disagree.

    Example:
        >>> agreement({"label": "cat"}, [{"label": "cat"}, {"label": "dog"}, {"unsure": True}, {"label": "cat"}])
        0.5
        >>> agreement({"labels": ["cat", "dog"]}, [{"labels": ["cat"]}, {"labels": ["cat", "dog"]}])
        0.75
        >>> agreement({"marks": [{"x": 1, "y": 2, "support": 2}, {"x": 9, "y": 9, "support": 1}]},
        ...           [{"marks": [{"x": 1, "y": 2}]}, {"marks": [{"x": 1, "y": 2}, {"x": 9, "y": 9}]}])
        0.75
    """
    if not payloads:
        return None
    if "label" in result:
        return sum(p.get("label") == result["label"] for p in payloads) / len(payloads)
    if "labels" in result:
        want = set(result["labels"])

        def jaccard(payload: dict[str, Any]) -> float:
            if "labels" not in payload:
                return 0.0
            got = set(payload["labels"])
            return 1.0 if not want and not got else len(want & got) / len(want | got)

        return sum(jaccard(p) for p in payloads) / len(payloads)
    marks = result.get("marks") or []
    if not marks:
        return sum("marks" in p and not p["marks"] for p in payloads) / len(payloads)
    return min(1.0, sum(m["support"] for m in marks) / len(marks) / len(payloads))


def _upsert(session: Session, values: dict[str, Any]) -> None:
    """Insert or replace a unit's consensus result."""
    statement = upsertable_insert(session, ConsensusResult).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=[ConsensusResult.unit_id],
        set_={key: statement.excluded[key] for key in values if key != "unit_id"}))


def adaptive_need(count: int, need: int, minimum: int, maximum: int, threshold: float | None,
                  confidence: float, stable: bool = False) -> int | None:
    """A unit's new need after its consensus, or None to leave it as it is.

    With a threshold set: once a unit has its minimum answers, a confidence at or above the
    threshold, or a consensus that did not change with the latest answer (``stable``),
    retires it at its current count; a unit that has all the answers it needs but stays
    below the threshold, and still changing, asks for one more, up to the maximum.
    """
    if threshold is None or count < minimum:
        return None
    if (confidence >= threshold or stable) and count < need:
        return count
    if confidence < threshold and not stable and count >= need and need < maximum:
        return need + 1
    return None


def marks_stable(previous: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """True when a marking unit's consensus did not change: the same craters, each within the gold
    tolerances (:mod:`microtasks.gold`) of its earlier self; two empty results are stable too."""
    if previous is None or "marks" not in previous or "marks" not in current:
        return False
    old, new = previous["marks"], current["marks"]
    return len(old) == len(new) and gold.match_marks(old, new)[0] == len(new)


def load_model(session: Session, project_id: int, volunteer_ids: list[int]) -> tuple[ReliabilityModel, str] | None:
    """The project's last fitted model, with the matrices of the given volunteers only."""
    stored = session.get(ProjectModel, project_id)
    if stored is None:
        return None
    rows = session.execute(select(VolunteerReliability.volunteer_id, VolunteerReliability.confusion).where(
        VolunteerReliability.project_id == project_id, VolunteerReliability.volunteer_id.in_(volunteer_ids)))
    return ReliabilityModel.from_json(stored.model, dict(rows.all())), stored.algorithm


def compute_consensus(session: Session, unit_id: int, job_id: str | None = None) -> tuple[ConsensusResult, bool]:
    """Aggregate all stored answers of a unit and upsert its result (keyed by unit).

    Returns the result, and whether it is the same as the unit's previous result (marking only).
    """
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"No unit {unit_id}.")
    previous = session.scalars(select(ConsensusResult.result).where(ConsensusResult.unit_id == unit_id)).first()
    answers = session.execute(
        select(Answer.volunteer_id, Answer.payload).where(Answer.unit_id == unit_id, Answer.counted)
        .order_by(Answer.id)
    ).all()
    if not answers:
        raise NotFound(f"Unit {unit_id} has no answers yet.")
    loaded = load_model(session, unit.project_id, [v for v, _ in answers])
    model, fitted = loaded if loaded else (None, None)
    decided = aggregate_unit(unit.project, [(v, p) for v, p in answers], model, fitted)
    values = dict(unit_id=unit_id, n_answers=len(answers), version=__version__, job_id=job_id,
                  computed_at=utcnow(), agreement=agreement(decided["result"], [p for _, p in answers]), **decided)
    _upsert(session, values)
    result = session.scalars(
        select(ConsensusResult).where(ConsensusResult.unit_id == unit_id).execution_options(populate_existing=True)
    ).one()
    return result, marks_stable(previous, decided["result"])


#: A project's label model is refitted once it has this many counted answers, then whenever
#: its answers have grown by ``REFIT_GROWTH`` since the last fit.
REFIT_FIRST = 50
REFIT_GROWTH = 1.25


def refit_due(session: Session, project: Project) -> int | None:
    """The project's counted answers when its label model should be refitted now, else None."""
    if project.task_type is not TaskType.tagging or project.multi_select:
        return None
    answers = session.scalar(select(func.count()).select_from(Answer).join(Unit).where(
        Unit.project_id == project.id, Answer.counted)) or 0
    stored = session.get(ProjectModel, project.id)
    if answers >= REFIT_FIRST and (stored is None or answers >= REFIT_GROWTH * stored.n_answers):
        return answers
    return None


@dataclass(frozen=True)
class Refit:
    """What a refit did."""

    #: Answers the model was fitted on.
    answers: int = 0
    #: Volunteers newly quarantined, with the reason.
    quarantined: dict[int, str] = field(default_factory=dict)
    #: Units whose counts changed because of a quarantine (the serving cache must follow).
    reopened: set[int] = field(default_factory=set)


def refit_project(session: Session, project_id: int, job_id: str | None = None, rules: Rules = Rules()) -> Refit:
    """Fit the default label model on all of a single-label project's answers, with its gold units.

    Volunteers who break the spam and carelessness :class:`~microtasks.quarantine.Rules` are
    quarantined first and left out of the fit. Stores the model and every other volunteer's
    reliability (what incremental updates use) and rewrites the consensus of every retired
    unit from the fit. The caller commits.
    """
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"No project {project_id}.")
    if project.task_type is not TaskType.tagging or project.multi_select:
        return Refit()
    rows = session.execute(
        select(Answer.unit_id, Answer.volunteer_id, Answer.payload, Answer.duration_ms, Answer.counted,
               Unit.gold.is_not(None)).join(Unit).where(Unit.project_id == project_id)).all()
    rows = [r for r in rows if "label" in r[2]]  # "not sure" answers carry no label
    frame = pd.DataFrame({"unit": [r[0] for r in rows], "volunteer": [r[1] for r in rows],
                          "label": [r[2]["label"] for r in rows], "ms": [r[3] for r in rows],
                          "fit": [bool(r[4] or r[5]) for r in rows]}).astype({"ms": float})
    frame = frame[~frame.volunteer.isin(quarantined(session, project_id))]
    if not frame.fit.any():
        return Refit()
    gold = pd.Series(dict(session.execute(select(Unit.id, Unit.gold).where(
        Unit.project_id == project_id, Unit.gold.is_not(None))).all()), dtype=object).map(lambda g: g["label"])
    method = LABEL_METHODS[DEFAULT_LABEL_METHOD]()
    fitted = method.fit(frame[frame.fit], gold if len(gold) else None)

    by_volunteer = frame.groupby("volunteer")
    top = by_volunteer["label"].agg(lambda labels: labels.value_counts().index[0])
    stats = pd.DataFrame({"n_answers": by_volunteer.size(), "median_ms": by_volunteer["ms"].median(),
                          "top_label": top,
                          "top_share": by_volunteer["label"].agg(lambda labels: labels.value_counts().iloc[0]
                                                                 / len(labels)),
                          "skill": fitted.skills_, "skill_std": fitted.skills_std_}).dropna(subset=["skill"])
    found = suspects(stats, len(project.labels), rules)
    reopened: set[int] = set()
    for volunteer_id, reason in found.items():
        reopened |= quarantine(session, project, int(volunteer_id), reason)
    if found:
        frame = frame[~frame.volunteer.isin(found)]
        if not frame.fit.any():
            return Refit(quarantined={int(k): v for k, v in found.items()}, reopened=reopened)
        fitted = method.fit(frame[frame.fit], gold if len(gold) else None)

    answers = frame[frame.fit]
    counts = answers.groupby("volunteer").size()
    model = ReliabilityModel.from_fitted(fitted, counts)
    session.execute(delete(VolunteerReliability).where(VolunteerReliability.project_id == project_id))
    session.execute(insert(VolunteerReliability), [
        {"project_id": project_id, "volunteer_id": int(v), "skill": float(fitted.skills_[v]),
         "skill_std": float(fitted.skills_std_[v]), "confusion": model.confusions[v].round(6).tolist(),
         "n_answers": int(counts[v])} for v in model.confusions])
    stored = session.get(ProjectModel, project_id) or ProjectModel(project_id=project_id)
    stored.algorithm, stored.parameters, stored.model = method.name, method.parameters, model.to_json()
    stored.n_answers, stored.fitted_at = len(answers), utcnow()
    session.add(stored)
    retired = session.execute(select(Unit.id, Unit.answer_count).where(
        Unit.project_id == project_id, Unit.state == UnitState.retired, Unit.gold.is_(None))).all()
    agreements = (answers["label"] == answers["unit"].map(fitted.labels_)).groupby(answers["unit"]).mean()
    for unit_id, n_answers in retired:
        if unit_id not in fitted.probas_.index:
            continue
        posterior = fitted.probas_.loc[unit_id]
        shares = {str(k): round(float(v), 4) for k, v in posterior.items() if v >= 1e-4}
        _upsert(session, dict(unit_id=int(unit_id), n_answers=int(n_answers), version=__version__, job_id=job_id,
                              computed_at=utcnow(), result={"label": fitted.labels_[unit_id], "shares": shares},
                              confidence=float(fitted.confidences_[unit_id]),
                              agreement=float(agreements[unit_id]), algorithm=method.name,
                              parameters=method.parameters))
    return Refit(answers=len(answers), quarantined={int(k): v for k, v in found.items()}, reopened=reopened)
