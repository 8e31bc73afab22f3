"""Computing and storing a unit's consensus result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from microtasks import __version__, gold
from microtasks.consensus import (
    DEFAULT_LABEL_METHOD,
    LABEL_METHODS,
    MajorityVote,
    MultiLabelDawidSkene,
    MultiLabelMajority,
)
from microtasks.consensus.craters import CraterClustering
from microtasks.consensus.incremental import ReliabilityModel, TagReliabilityModel
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


Answers = dict[int, list[tuple[Hashable, dict[str, Any]]]]


def aggregate_units(project: Project, answers: Answers, model: ReliabilityModel | None = None,
                    fitted: str | None = None) -> dict[int, dict[str, Any]]:
    """Consensus for units of one project, from their ``(volunteer, payload)`` answers: for each
    unit its result, confidence, algorithm and parameters. All the units are aggregated at once;
    each one's result is the same as when aggregated alone.

    For tagging with a fitted ``model`` (named ``fitted``; a :class:`TagReliabilityModel` for
    multi-label projects, whose kind of tagging is fixed once they have answers), a unit's
    posterior comes from the volunteers' fitted reliabilities (for multi-label projects, one
    probability per tag); otherwise from a majority vote.
    """
    answers = {unit: given for unit, given in answers.items() if given}
    if not answers:
        return {}
    units = [unit for unit, given in answers.items() for _ in given]
    volunteers = [volunteer for given in answers.values() for volunteer, _ in given]
    payloads = [payload for given in answers.values() for _, payload in given]
    if project.task_type is TaskType.tagging and model is not None:
        key = "labels" if project.multi_select else "label"
        decided = {}
        for unit, given in answers.items():
            posterior = model.posterior([(v, p[key]) for v, p in given])
            if project.multi_select:
                result, confidence = tags_result(model.labels, posterior), tags_confidence(posterior)
            else:
                best = int(np.argmax(posterior))
                result = {"label": model.labels[best], "shares": label_shares(model.labels, posterior)}
                confidence = float(posterior[best])
            decided[unit] = {"result": result, "confidence": confidence, "algorithm": f"{fitted}+incremental",
                             "parameters": {"reliabilities": "last refit"}}
        return decided
    if project.task_type is TaskType.tagging:
        multi = project.multi_select
        key = "labels" if multi else "label"
        frame = pd.DataFrame({"unit": units, "volunteer": volunteers, key: [p[key] for p in payloads]})
        aggregator = MultiLabelMajority().fit(frame) if multi else MajorityVote().fit(frame)
        parameters = {"threshold": 0.5} if multi else {"tie_break": "random", "seed": 0}
        probas = aggregator.probas_.loc[aggregator.labels_.index]
        columns, shares = probas.columns.tolist(), probas.to_numpy()
        return {unit: {"result": {key: label, "shares": {columns[j]: round(float(row[j]), 4)
                                                         for j in np.flatnonzero(row)}},
                       "confidence": float(confidence), "algorithm": aggregator.name, "parameters": parameters}
                for unit, label, confidence, row in zip(aggregator.labels_.index.tolist(), aggregator.labels_,
                                                        aggregator.confidences_, shares)}
    rows = [(unit, volunteer, mark.get("x"), mark.get("y"), mark.get("r"))
            for unit, volunteer, payload in zip(units, volunteers, payloads) for mark in payload["marks"] or [{}]]
    frame = pd.DataFrame(rows, columns=["unit", "volunteer", "x", "y", "r"]).astype(
        {"x": float, "y": float, "r": float})
    clustering = CraterClustering().fit(frame)
    return {unit: {"result": {"marks": marks}, "confidence": float(confidence), "algorithm": clustering.name,
                   "parameters": clustering.parameters}
            for unit, marks, confidence in zip(clustering.marks_.index.tolist(), clustering.marks_,
                                               clustering.confidences_)}


def label_shares(labels: Any, posterior: Any) -> dict[str, float]:
    """A result's shares: each label's probability to 4 places, those of 1e-4 or more, by label text."""
    return {str(label): round(float(p), 4) for label, p in zip(labels, posterior) if p >= 1e-4}


def tags_result(tags: Any, posterior: np.ndarray) -> dict[str, Any]:
    """A multi-label result from each tag's probability: the tags above 1/2, and the :func:`label_shares`.

    Example:
        >>> tags_result(("sky", "sea"), np.array([0.97, 0.00001]))
        {'labels': ['sky'], 'shares': {'sky': 0.97}}
    """
    return {"labels": [tag for tag, p in zip(tags, posterior) if p > 0.5], "shares": label_shares(tags, posterior)}


def tags_confidence(posterior: np.ndarray) -> float:
    """A multi-label unit's confidence: its least decisive tag, min over tags of max(p, 1 - p)."""
    return float(np.maximum(posterior, 1.0 - posterior).min()) if len(posterior) else 1.0


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


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert or replace units' consensus results, in one statement."""
    if not rows:
        return
    statement = upsertable_insert(session, ConsensusResult.__table__)
    session.execute(statement.on_conflict_do_update(
        index_elements=["unit_id"], set_={key: statement.excluded[key] for key in rows[0] if key != "unit_id"}),
        rows)


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
    stored = session.get(ProjectModel, project_id, populate_existing=True)
    if stored is None:
        return None
    rows = session.execute(select(VolunteerReliability.volunteer_id, VolunteerReliability.confusion).where(
        VolunteerReliability.project_id == project_id, VolunteerReliability.volunteer_id.in_(volunteer_ids)))
    return ReliabilityModel.from_json(stored.model, dict(rows.all())), stored.algorithm


@dataclass(frozen=True)
class Decided:
    """A unit's new consensus, upserted and not yet committed."""

    unit: Unit
    confidence: float
    #: The result is the same as the unit's previous one (marking only; see :func:`marks_stable`).
    stable: bool


def compute_consensus(session: Session, unit_ids: list[int], job_id: str | None = None) -> list[Decided]:
    """Aggregate the counted answers of units and upsert their results (keyed by unit).

    A few statements for all the units: the units, their answers, each project's model, the
    upsert. Units that do not exist or have no counted answer (a quarantine took them) are
    left out. The units are read afresh, so a long-lived session sees their latest counts.
    """
    units = session.scalars(select(Unit).where(Unit.id.in_(unit_ids))
                            .execution_options(populate_existing=True)).all()
    answers: Answers = {}
    for unit_id, volunteer_id, payload in session.execute(
            select(Answer.unit_id, Answer.volunteer_id, Answer.payload)
            .where(Answer.unit_id.in_([unit.id for unit in units]), Answer.counted)
            .order_by(Answer.unit_id, Answer.id)):
        answers.setdefault(unit_id, []).append((volunteer_id, payload))
    by_id = {unit.id: unit for unit in units if unit.id in answers}
    marking = [unit_id for unit_id, unit in by_id.items() if unit.project.task_type is TaskType.marking]
    previous = dict(session.execute(select(ConsensusResult.unit_id, ConsensusResult.result)
                                    .where(ConsensusResult.unit_id.in_(marking))).all()) if marking else {}
    by_project: dict[int, Answers] = {}
    for unit_id, unit in by_id.items():
        by_project.setdefault(unit.project_id, {})[unit_id] = answers[unit_id]
    rows, decided = [], []
    for project_id, project_answers in by_project.items():
        project = session.get(Project, project_id)
        loaded = None
        if project.task_type is TaskType.tagging:
            volunteers = sorted({v for given in project_answers.values() for v, _ in given})
            loaded = load_model(session, project_id, volunteers)
        model, fitted = loaded if loaded else (None, None)
        for unit_id, values in aggregate_units(project, project_answers, model, fitted).items():
            given = project_answers[unit_id]
            rows.append(dict(unit_id=unit_id, n_answers=len(given), version=__version__, job_id=job_id,
                             computed_at=utcnow(), agreement=agreement(values["result"], [p for _, p in given]),
                             **values))
            decided.append(Decided(by_id[unit_id], values["confidence"],
                                   marks_stable(previous.get(unit_id), values["result"])))
    _upsert(session, rows)
    return decided


#: A project's label model is refitted once it has this many counted answers, then whenever
#: its answers have grown by ``REFIT_GROWTH`` since the last fit.
REFIT_FIRST = 50
REFIT_GROWTH = 1.25


def refit_due(session: Session, project: Project) -> int | None:
    """The project's counted answers when its label model should be refitted now, else None."""
    if project.task_type is not TaskType.tagging:
        return None
    answers = session.scalar(select(func.count()).select_from(Answer).join(Unit).where(
        Unit.project_id == project.id, Answer.counted)) or 0
    stored = session.get(ProjectModel, project.id)
    if answers >= REFIT_FIRST and (stored is None or answers >= REFIT_GROWTH * stored.n_answers):
        return answers
    return None


#: First key of the PostgreSQL advisory locks taken by :func:`_lock_refits` (the second is the project id).
REFIT_LOCK = 0x6D74


def _lock_refits(session: Session, project_id: int) -> None:
    """Take the project's refit lock until the transaction ends (PostgreSQL; a no-op on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(REFIT_LOCK, project_id)))


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
    """Fit the default label model on all of a tagging project's answers, with its gold units.

    Single-label projects fit :data:`~microtasks.consensus.DEFAULT_LABEL_METHOD`, multi-label
    ones :class:`~microtasks.consensus.MultiLabelDawidSkene` over the project's tags.
    Volunteers who break the spam and carelessness :class:`~microtasks.quarantine.Rules` are
    quarantined first and left out of the fit. Stores the model and every other volunteer's
    reliability (what incremental updates use) and rewrites the consensus of every retired
    unit from the fit. The caller commits.

    Refits of one project wait for each other (a transaction lock on PostgreSQL; SQLite lets
    one writer in at a time): two at once would both replace the stored reliabilities.
    """
    _lock_refits(session, project_id)
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"No project {project_id}.")
    if project.task_type is not TaskType.tagging:
        return Refit()
    key = "labels" if project.multi_select else "label"
    rows = session.execute(
        select(Answer.unit_id, Answer.volunteer_id, Answer.payload, Answer.duration_ms, Answer.counted,
               Unit.gold.is_not(None)).join(Unit).where(Unit.project_id == project_id)).all()
    rows = [r for r in rows if key in r[2]]  # "not sure" answers carry no label
    frame = pd.DataFrame({"unit": [r[0] for r in rows], "volunteer": [r[1] for r in rows],
                          key: [r[2][key] for r in rows], "ms": [r[3] for r in rows],
                          "fit": [bool(r[4] or r[5]) for r in rows]}).astype({"ms": float})
    # the answer as one value, to find volunteers who give the same answer to everything
    frame["answer"] = frame[key].map(lambda tags: ";".join(sorted(map(str, tags)))) if project.multi_select \
        else frame[key]
    frame = frame[~frame.volunteer.isin(quarantined(session, project_id))]
    if not frame.fit.any():
        return Refit()
    gold = pd.Series(dict(session.execute(select(Unit.id, Unit.gold).where(
        Unit.project_id == project_id, Unit.gold.is_not(None))).all()), dtype=object).map(lambda g: g[key])
    method = MultiLabelDawidSkene(labels=project.labels) if project.multi_select \
        else LABEL_METHODS[DEFAULT_LABEL_METHOD]()
    fitted = method.fit(frame[frame.fit], gold if len(gold) else None)

    by_volunteer = frame.groupby("volunteer")
    stats = pd.DataFrame({"n_answers": by_volunteer.size(), "median_ms": by_volunteer["ms"].median(),
                          "top_label": by_volunteer["answer"].agg(lambda answers: answers.value_counts().index[0]),
                          "top_share": by_volunteer["answer"].agg(lambda answers: answers.value_counts().iloc[0]
                                                                  / len(answers)),
                          "skill": fitted.skills_, "skill_std": fitted.skills_std_}).dropna(subset=["skill"])
    # a multi-label skill is a balanced accuracy over yes/no decisions: chance is 1/2
    found = suspects(stats, 2 if project.multi_select else len(project.labels), rules)
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
    model = TagReliabilityModel.from_fitted(fitted) if project.multi_select \
        else ReliabilityModel.from_fitted(fitted, counts)
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
    if project.multi_select:
        given = {unit: [{key: value} for value in values] for unit, values in answers.groupby("unit")[key]}
    else:
        agrees = (answers[key] == answers["unit"].map(fitted.labels_)).groupby(answers["unit"]).mean()
    rows = []
    for unit_id, n_answers in retired:
        if unit_id not in fitted.probas_.index:
            continue
        posterior = fitted.probas_.loc[unit_id]
        result = tags_result(posterior.index, posterior) if project.multi_select \
            else {"label": fitted.labels_[unit_id], "shares": label_shares(posterior.index, posterior)}
        rows.append(dict(unit_id=int(unit_id), n_answers=int(n_answers), version=__version__, job_id=job_id,
                         computed_at=utcnow(), result=result, confidence=float(fitted.confidences_[unit_id]),
                         agreement=agreement(result, given[unit_id]) if project.multi_select
                         else float(agrees[unit_id]), algorithm=method.name,
                         parameters=method.parameters))
    _upsert(session, rows)
    return Refit(answers=len(answers), quarantined={int(k): v for k, v in found.items()}, reopened=reopened)
