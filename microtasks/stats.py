"""A project's numbers: the owner's dashboard (:func:`project_stats`) and the public page (:func:`public_summary`).

Everything is counted by the database with ``GROUP BY``, so a project with a million
answers costs a handful of aggregate queries (three passes over its answers) and no rows
in Python. Time series are bucketed by UTC hour. What differs between PostgreSQL and
SQLite is kept in small helpers: the hour of a timestamp (:func:`hour_bucket`), a hint to
SQLite's planner (:func:`_unindexed`) and the JSON look-ups of the public summary
(:func:`_json_labels_contain`, :func:`_json_marks_count`).

Gold units are left out of the unit counts (they never retire) and counted apart.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, exists, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from microtasks.models import (
    Answer,
    Assignment,
    ConsensusResult,
    Project,
    Quarantine,
    TaskType,
    Unit,
    UnitState,
    utcnow,
)
from microtasks.quarantine import GOLD_PASS

#: Hours in the per-hour series, the current hour last.
HOURS = 48
#: Equal-width bins over [0, 1] of the confidence and agreement histograms (1.0 falls in the last).
BINS = 10
#: Answers-per-volunteer bins: (name, fewest answers, most answers or None).
VOLUNTEER_BINS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 1, 1), ("2-5", 2, 5), ("6-20", 6, 20), ("21-100", 21, 100), (">100", 101, None))
#: What each consensus method does, in words, for the public page.
METHODS = {
    "majority_vote": "Majority vote: the label most volunteers chose.",
    "multilabel_majority": "Majority per label: a label is kept when more than half of the volunteers chose it.",
    "multilabel_dawid_skene": "Dawid-Skene per label: each volunteer's reliability at ticking and at leaving out "
                              "labels is estimated from all answers and weighs their choices.",
    "wawa": "Weighted majority vote: volunteers who usually agree with the majority weigh more.",
    "dawid_skene": "Dawid-Skene: each volunteer's reliability is estimated from all answers and weighs their votes.",
    "one_coin_dawid_skene": "One-coin Dawid-Skene: one reliability per volunteer weighs their votes.",
    "bayesian_dawid_skene": "Bayesian Dawid-Skene: each volunteer's reliability, with its uncertainty, "
                            "is estimated from all answers and weighs their votes.",
    "mark_majority": "Mark majority: a mark is kept when more than half of the volunteers made it.",
    "crater_clustering": "Mark clustering: marks close together are grouped, and a group is kept when enough "
                         "of the volunteers made it.",
}


def hour_bucket(session: Session, column: Any) -> ColumnElement[Any]:
    """The start of the UTC hour of a timestamp column (PostgreSQL: a timestamp, SQLite: ISO text).

    :func:`_as_hour` turns either into an aware datetime.
    """
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%dT%H:00:00", column)


def _as_hour(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=timezone.utc)


def _start_of_hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _grouped(session: Session, inner: Any, key: str, *aggregates: Any) -> dict[Any, tuple[Any, ...]]:
    """``{key: aggregates}`` of a subquery grouped by its ``key`` column.

    Grouping on a subquery's column rather than on an expression keeps PostgreSQL happy
    when the expression has bound parameters (they would differ between SELECT and GROUP BY).
    """
    column = inner.c[key]
    rows = session.execute(select(column, *aggregates).group_by(column)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def _unindexed(session: Session, column: Any) -> Any:
    """``column``, written ``+column`` for SQLite so that its planner does not use the column's index.

    Walking an index (the project's units, or answers by volunteer) makes SQLite read the answer
    table in random order, ten times slower on a large project than one sequential pass;
    PostgreSQL chooses the sequential pass (a hash join or aggregate) by itself.
    """
    if session.get_bind().dialect.name == "sqlite":
        return literal_column(f"+{column.table.name}.{column.name}")
    return column


def _project_answers(session: Session, project: Project) -> Any:
    """A SELECT (columns to add) over all of a project's answers, read in one sequential pass."""
    return (select().select_from(Answer).join(Unit, Unit.id == Answer.unit_id)
            .where(_unindexed(session, Unit.project_id) == project.id))


def unit_states(session: Session, project: Project, now: datetime | None = None) -> dict[str, int]:
    """Units by state: ``open`` (no counted answer, no live lease), ``in_progress`` (open, with counted
    answers or a live lease), ``retired``; ``total`` of those three, and ``gold`` units apart.

    A live lease is an assignment not yet expired whose volunteer has not answered; only live
    leases are looked at (through the index on their expiry), never every unit's assignments.
    """
    now = now or utcnow()
    kind = case((Unit.gold.is_not(None), "gold"), (Unit.state == UnitState.retired, "retired"),
                (Unit.answer_count > 0, "in_progress"), else_="open")
    inner = select(kind.label("kind")).where(Unit.project_id == project.id).subquery()
    counts = {k: int(n) for k, (n,) in _grouped(session, inner, "kind", func.count()).items()}
    answered = exists().where(Answer.unit_id == Assignment.unit_id, Answer.volunteer_id == Assignment.volunteer_id)
    leased = session.scalar(
        select(func.count(distinct(Assignment.unit_id))).join(Unit, Unit.id == Assignment.unit_id).where(
            Assignment.expires_at > now, Unit.project_id == project.id, Unit.state == UnitState.open,
            Unit.answer_count == 0, Unit.gold.is_(None), ~answered)) or 0
    states = {"open": counts.get("open", 0) - leased, "in_progress": counts.get("in_progress", 0) + leased,
              "retired": counts.get("retired", 0)}
    return {**states, "total": sum(states.values()), "gold": counts.get("gold", 0)}


def _bin(column: Any) -> ColumnElement[int]:
    """The :data:`BINS`-bin histogram bin of a value in [0, 1] (-1 for NULL)."""
    return case((column.is_(None), -1), *((column < (i + 1) / BINS, i) for i in range(BINS - 1)), else_=BINS - 1)


def _histograms(session: Session, project: Project) -> dict[str, dict[str, Any]]:
    """Count, mean and a histogram over [0, 1] of the consensus results' confidence and agreement.

    One pass over the results, grouped by both bins at once (at most 110 groups).
    """
    inner = (select(_bin(ConsensusResult.confidence).label("c"), _bin(ConsensusResult.agreement).label("a"),
                    ConsensusResult.confidence, ConsensusResult.agreement)
             .join(Unit, Unit.id == ConsensusResult.unit_id).where(Unit.project_id == project.id).subquery())
    rows = session.execute(select(inner.c.c, inner.c.a, func.count(), func.sum(inner.c.confidence),
                                  func.sum(inner.c.agreement)).group_by(inner.c.c, inner.c.a)).all()
    edges = [round(i / BINS, 10) for i in range(BINS + 1)]
    out = {}
    for key, position, total_at in (("confidence", 0, 3), ("agreement", 1, 4)):
        counts = [0] * BINS
        total = 0.0
        for row in rows:
            if row[position] >= 0:
                counts[row[position]] += int(row[2])
                total += float(row[total_at] or 0.0)
        n = sum(counts)
        out[key] = {"results": n, "mean": total / n if n else None,
                    "histogram": [{"low": edges[i], "high": edges[i + 1], "count": counts[i]} for i in range(BINS)]}
    return out


def _per_volunteer(session: Session, project: Project) -> dict[str, Any]:
    """The answers-per-volunteer bins, with the project's volunteers and answers, from one pass
    over its answers grouped by volunteer (reading only the answers' unit and volunteer)."""
    per = (_project_answers(session, project).add_columns(func.count().label("n"))
           .group_by(_unindexed(session, Answer.volunteer_id)).subquery())
    bucket = case(*((per.c.n <= high, i) for i, (_, _, high) in enumerate(VOLUNTEER_BINS) if high is not None),
                  else_=len(VOLUNTEER_BINS) - 1)
    inner = select(bucket.label("bin"), per.c.n).subquery()
    rows = _grouped(session, inner, "bin", func.count(), func.sum(inner.c.n))
    return {"bins": [{"bin": name, "volunteers": int(rows.get(i, (0,))[0])}
                     for i, (name, _, _) in enumerate(VOLUNTEER_BINS)],
            "volunteers": sum(int(n) for n, _ in rows.values()),
            "answers": sum(int(total or 0) for _, total in rows.values())}


def _recent(session: Session, project: Project, now: datetime) -> dict[str, int]:
    """The last 24 hours' answers and volunteers, and the counted answers of the last 24 hours and hour."""
    day_ago, hour_ago = now - timedelta(hours=24), now - timedelta(hours=1)
    answers, volunteers, counted, hour_counted = session.execute(_project_answers(session, project).add_columns(
        func.count(), func.count(distinct(Answer.volunteer_id)), func.sum(case((Answer.counted, 1), else_=0)),
        func.sum(case((and_(Answer.counted, Answer.created_at > hour_ago), 1), else_=0)))
        .where(Answer.created_at > day_ago, Answer.created_at <= now)).one()
    return {"answers": int(answers), "volunteers": int(volunteers), "counted": int(counted or 0),
            "hour_counted": int(hour_counted or 0)}


def _hourly(session: Session, project: Project, start: datetime, end: datetime) -> dict[datetime, tuple[Any, ...]]:
    """Per UTC hour in [start, end): answers, counted answers, volunteers, gold answers, mean gold score.

    Grouped by hour and volunteer first, so distinct volunteers are a count of groups, not a sort.
    """
    answers = (_project_answers(session, project).add_columns(
        hour_bucket(session, Answer.created_at).label("hour"), Answer.volunteer_id, Answer.counted, Answer.gold_score)
        .where(Answer.created_at >= start, Answer.created_at < end).subquery())
    by_volunteer = (select(answers.c.hour, func.count().label("n"),
                           func.sum(case((answers.c.counted, 1), else_=0)).label("counted"),
                           func.count(answers.c.gold_score).label("gold_n"),
                           func.sum(answers.c.gold_score).label("gold_sum"))
                    .group_by(answers.c.hour, answers.c.volunteer_id).subquery())
    rows = _grouped(session, by_volunteer, "hour", func.sum(by_volunteer.c.n), func.sum(by_volunteer.c.counted),
                    func.count(), func.sum(by_volunteer.c.gold_n), func.sum(by_volunteer.c.gold_sum))
    return {_as_hour(hour): (int(n), int(counted or 0), int(volunteers), int(gold_n or 0),
                             float(gold_sum) / int(gold_n) if gold_n else None)
            for hour, (n, counted, volunteers, gold_n, gold_sum) in rows.items()}


def _eta(session: Session, project: Project, now: datetime, last_hour: int, last_day: int) -> dict[str, Any]:
    """Answers the open units still need, the recent rate of counted answers, and the time left at that rate.

    The rate is the last hour's; with no counted answer in the last hour, the last 24 hours' average;
    with none in the last day either, there is no estimate (``seconds`` is None).
    """
    need = func.coalesce(Unit.redundancy, project.redundancy)
    needed = session.scalar(select(func.coalesce(func.sum(
        case((need > Unit.answer_count, need - Unit.answer_count), else_=0)), 0)).where(
        Unit.project_id == project.id, Unit.state == UnitState.open, Unit.gold.is_(None)))
    needed = int(needed or 0)
    rate: float | None
    window: str | None
    if last_hour:
        rate, window = float(last_hour), "1h"
    elif last_day:
        rate, window = last_day / 24.0, "24h"
    else:
        rate, window = None, None
    if needed == 0:
        seconds: float | None = 0.0
    else:
        seconds = None if rate is None else needed / rate * 3600.0
    return {"answers_needed": needed, "answers_per_hour": rate, "rate_window": window, "seconds": seconds,
            "finish_at": None if seconds is None else _iso(now + timedelta(seconds=seconds))}


def project_stats(session: Session, project: Project, now: datetime | None = None) -> dict[str, Any]:
    """Everything the owner's dashboard draws, counted now (or at ``now``, an aware datetime).

    Keys: ``units`` (see :func:`unit_states`); ``answers`` (total, counted, last hour, last 24 h);
    ``answers_per_hour``, ``volunteers["active_per_hour"]`` and ``gold["score_per_hour"]``,
    each :data:`HOURS` UTC hours oldest first; ``confidence`` and ``agreement`` (count, mean,
    histogram); ``volunteers`` (total, last 24 h, answers-per-volunteer bins, quarantined);
    ``eta`` (see :func:`_eta`); ``gold`` (answers, mean score, share passing :data:`GOLD_PASS`).
    """
    now = now or utcnow()
    current = _start_of_hour(now)
    hours = [current - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    hourly = _hourly(session, project, hours[0], current + timedelta(hours=1))
    empty = (0, 0, 0, 0, None)
    people = _per_volunteer(session, project)
    recent = _recent(session, project, now)
    counted = session.scalar(select(func.coalesce(func.sum(Unit.answer_count), 0)).where(
        Unit.project_id == project.id))
    histograms = _histograms(session, project)
    gold_n, gold_mean, gold_passed = session.execute(
        select(func.count(Answer.gold_score), func.avg(Answer.gold_score),
               func.sum(case((Answer.gold_score >= GOLD_PASS, 1), else_=0)))
        .join(Unit, Unit.id == Answer.unit_id)
        .where(Unit.project_id == project.id, Unit.gold.is_not(None), Answer.gold_score.is_not(None))).one()
    quarantined = session.scalar(select(func.count()).select_from(Quarantine).where(
        Quarantine.project_id == project.id, Quarantine.released_at.is_(None)))

    def series(position: int) -> list[Any]:
        return [hourly.get(h, empty)[position] for h in hours]

    return {
        "generated_at": _iso(now),
        "units": unit_states(session, project, now),
        "answers": {"total": people["answers"], "counted": int(counted or 0), "last_hour": recent["hour_counted"],
                    "last_24h": recent["answers"]},
        "answers_per_hour": [{"hour": _iso(h), "answers": int(n), "counted": int(c or 0)}
                             for h, n, c in zip(hours, series(0), series(1))],
        "confidence": histograms["confidence"],
        "agreement": histograms["agreement"],
        "volunteers": {
            "total": people["volunteers"], "last_24h": recent["volunteers"],
            "active_per_hour": [{"hour": _iso(h), "volunteers": int(v)} for h, v in zip(hours, series(2))],
            "answers_per_volunteer": people["bins"], "quarantined": int(quarantined or 0)},
        "eta": _eta(session, project, now, recent["hour_counted"], recent["counted"]),
        "gold": {
            "answers": int(gold_n or 0), "mean_score": None if gold_mean is None else float(gold_mean),
            "pass_rate": float(gold_passed) / gold_n if gold_n else None,
            "score_per_hour": [{"hour": _iso(h), "answers": int(n or 0), "mean_score": None if m is None else float(m)}
                               for h, n, m in zip(hours, series(3), series(4))]},
    }


def _json_labels_contain(session: Session, label: str) -> ColumnElement[bool]:
    """True when a result's ``labels`` list holds ``label``."""
    if session.get_bind().dialect.name == "postgresql":
        return ConsensusResult.result["labels"].op("@>", is_comparison=True)(literal([label], JSONB))
    each = func.json_each(ConsensusResult.result, "$.labels").table_valued("value")
    return exists().select_from(each).where(each.c.value == label)


def _json_marks_count(session: Session) -> ColumnElement[int]:
    """The number of consensus marks in a result."""
    if session.get_bind().dialect.name == "postgresql":
        return func.jsonb_array_length(ConsensusResult.result["marks"])
    return func.json_array_length(ConsensusResult.result, "$.marks")


def default_method(project: Project) -> str:
    """The consensus method a project's first results use."""
    if project.task_type is TaskType.marking:
        return "crater_clustering"
    return "multilabel_majority" if project.multi_select else "majority_vote"


def public_summary(session: Session, project: Project) -> dict[str, Any]:
    """What the public transparency page shows: progress, answers, volunteers and a summary of results.

    ``labels`` (tagging): units per consensus label, in the project's label order; ``marks``
    (marking): consensus marks in all, units with and without any. ``methods``: the consensus
    methods behind the results, with a sentence each (before any result, the one the first
    results will use).
    """
    units = unit_states(session, project)
    people = _per_volunteer(session, project)

    # One pass over the results, grouped by method (and, for single labels, by label).
    single = project.task_type is TaskType.tagging and not project.multi_select
    columns = [ConsensusResult.algorithm.label("algorithm"), ConsensusResult.confidence.label("confidence")]
    if single:
        columns.append(ConsensusResult.result["label"].as_string().label("label"))
    elif project.task_type is TaskType.tagging:
        columns += [case((_json_labels_contain(session, str(label)), 1), else_=0).label(f"has_{i}")
                    for i, label in enumerate(project.labels)]
    else:
        columns.append(_json_marks_count(session).label("marks"))
    inner = (select(*columns).join(Unit, Unit.id == ConsensusResult.unit_id)
             .where(Unit.project_id == project.id).subquery())
    keys = [inner.c.algorithm, inner.c.label] if single else [inner.c.algorithm]
    sums: list[Any] = []
    if project.task_type is TaskType.marking:
        sums = [func.sum(inner.c.marks), func.sum(case((inner.c.marks == 0, 1), else_=0))]
    elif not single:
        sums = [func.sum(inner.c[f"has_{i}"]) for i in range(len(project.labels))]
    rows = session.execute(select(*keys, func.count(), func.sum(inner.c.confidence), *sums).group_by(*keys)).all()
    at = len(keys)
    results = sum(int(row[at]) for row in rows)
    confidence = sum(float(row[at + 1] or 0.0) for row in rows)
    names = sorted({row[0] for row in rows})
    bases = list(dict.fromkeys(name.split("+")[0] for name in names)) or [default_method(project)]

    labels: list[dict[str, Any]] | None = None
    marks: dict[str, int] | None = None
    if single:
        found: dict[str, int] = {}
        for row in rows:
            if row[1] is not None:
                found[row[1]] = found.get(row[1], 0) + int(row[at])
        labels = [{"label": label, "units": found.pop(str(label), 0)} for label in project.labels]
        labels += [{"label": label, "units": n} for label, n in sorted(found.items())]
    elif project.task_type is TaskType.tagging:
        labels = [{"label": label, "units": sum(int(row[at + 2 + i] or 0) for row in rows)}
                  for i, label in enumerate(project.labels)]
    else:
        total, without = (sum(int(row[at + 2 + i] or 0) for row in rows) for i in range(2))
        marks = {"total": total, "units_with_marks": results - without, "units_without_marks": without}
    mean_confidence = confidence / results if results else None

    return {
        "name": project.name, "slug": project.slug, "description": project.description,
        "task_type": project.task_type.value,
        "units": units,
        "percent_complete": round(100.0 * units["retired"] / units["total"], 1) if units["total"] else 0.0,
        "answers": people["answers"], "volunteers": people["volunteers"],
        "results": results, "mean_confidence": mean_confidence,
        "methods": [{"name": name, "description": METHODS.get(name, name)} for name in bases],
        "labels": labels, "marks": marks,
    }
