"""Spam and carelessness: volunteers whose answers carry no information get weight 0.

A volunteer with enough answers in a project is quarantined when they answer
implausibly fast, always give the same answer, or agree with gold and peers at
chance level. A quarantined volunteer is still served units (nothing tells them), but
their answers no longer count toward any unit's redundancy nor weigh in its consensus:
the units they had counted for are reopened for other volunteers, and the refit that
found them recomputes every retired unit without them. The owner can review the list
and release a volunteer, whose later answers count again.

The same mechanism makes a project's qualification: in a project that asks volunteers to
pass ``qualification`` gold units first, a volunteer's first serving records a
quarantine entry whose reason starts with ``qualifying:``; once they have passed that
many gold units (score at least :data:`GOLD_PASS`) the entry is released, and their
later answers count. So the submit path learns nothing new: it already reads the
volunteer's quarantine entries. Answers given while qualifying stay stored, uncounted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from microtasks.db import upsertable_insert
from microtasks.errors import NotFound
from microtasks.models import Answer, Project, Quarantine, Unit, UnitState, Volunteer, utcnow

#: A gold answer scoring at least this passes (for a project's qualification).
GOLD_PASS = 0.5
#: Reasons of the entries of a project's qualification, while qualifying and once passed.
QUALIFYING = "qualifying: pass {n} gold units"
QUALIFIED = "qualified: passed {n} gold units"


@dataclass(frozen=True)
class Rules:
    """When a volunteer's answers stop counting. Only volunteers with ``min_answers`` are judged."""

    min_answers: int = 10
    #: A median time per unit below this many milliseconds is implausibly fast.
    fast_ms: int = 800
    #: Giving one label to at least this share of units is "always the same answer"...
    same_share: float = 0.95
    #: ...unless that label really is this common among everyone's answers.
    common_share: float = 0.8
    #: Chance level: the upper end of the skill (mean + 2 sd) is at most 1/labels plus this.
    chance_margin: float = 0.05


def suspects(stats: pd.DataFrame, n_labels: int, rules: Rules = Rules()) -> dict[object, str]:
    """Volunteers to quarantine, with the reason, from per-volunteer statistics.

    Args:
        stats: indexed by volunteer, with columns ``n_answers``, ``median_ms`` (NaN when
            unknown), ``top_label``, ``top_share``, ``skill`` and ``skill_std``.
        n_labels: how many labels the project has (chance is ``1 / n_labels``).
        rules: the thresholds.

    Returns:
        Volunteer -> reason, for the volunteers that break a rule.

    Example:
        >>> stats = pd.DataFrame({"n_answers": [40, 40], "median_ms": [300.0, 5000.0],
        ...                       "top_label": ["a", "b"], "top_share": [0.3, 0.4],
        ...                       "skill": [0.9, 0.9], "skill_std": [0.02, 0.02]}, index=["fast", "fine"])
        >>> suspects(stats, n_labels=4)
        {'fast': 'answers implausibly fast (median 300 ms per unit)'}
    """
    found: dict[object, str] = {}
    if stats.empty:
        return found
    weights = stats["n_answers"] * stats["top_share"]
    label_share = weights.groupby(stats["top_label"]).sum() / stats["n_answers"].sum()
    for volunteer, row in stats[stats["n_answers"] >= rules.min_answers].iterrows():
        if pd.notna(row["median_ms"]) and row["median_ms"] < rules.fast_ms:
            found[volunteer] = f"answers implausibly fast (median {row['median_ms']:.0f} ms per unit)"
        elif row["top_share"] >= rules.same_share and label_share.get(row["top_label"], 0.0) < rules.common_share:
            found[volunteer] = f"gives the same answer ({row['top_label']!r}) to {row['top_share']:.0%} of units"
        elif row["skill"] + 2 * row["skill_std"] <= 1.0 / n_labels + rules.chance_margin:
            found[volunteer] = (f"agrees with gold and other volunteers at chance level "
                                f"(skill {row['skill']:.2f} ± {row['skill_std']:.2f})")
    return found


def quarantined(session: Session, project_id: int) -> set[int]:
    """Ids of the volunteers whose answers do not count in the project now."""
    return set(session.scalars(select(Quarantine.volunteer_id).where(
        Quarantine.project_id == project_id, Quarantine.released_at.is_(None))))


def quarantine(session: Session, project: Project, volunteer_id: int, reason: str) -> set[int]:
    """Quarantine a volunteer: their counted answers stop counting and their units reopen where needed.

    Returns the ids of the units whose counts changed. A volunteer once released is not
    quarantined again by the rules (the owner decided), unless the entry was only their
    qualification: passing gold is no pass for spam. The caller commits.
    """
    entry = session.scalars(select(Quarantine).where(Quarantine.project_id == project.id,
                                                     Quarantine.volunteer_id == volunteer_id)).first()
    if entry is None:
        session.add(Quarantine(project_id=project.id, volunteer_id=volunteer_id, reason=reason))
    elif is_qualification(entry.reason):
        entry.reason, entry.created_at, entry.released_at = reason, utcnow(), None
    else:
        return set()
    touched = set(session.scalars(select(Answer.unit_id).join(Unit).where(
        Unit.project_id == project.id, Answer.volunteer_id == volunteer_id, Answer.counted)))
    if touched:
        session.execute(update(Answer).where(Answer.volunteer_id == volunteer_id, Answer.unit_id.in_(touched))
                        .values(counted=False))
        need = func.coalesce(Unit.redundancy, project.redundancy)
        session.execute(update(Unit).where(Unit.id.in_(touched)).values(answer_count=Unit.answer_count - 1))
        session.execute(update(Unit).where(Unit.id.in_(touched), Unit.answer_count < need)
                        .values(state=UnitState.open))
    session.flush()
    return touched


def release(session: Session, project_id: int, public_id: str) -> Quarantine:
    """The owner's decision: the volunteer's later answers count again, and the next refit weighs them."""
    entry = session.scalars(select(Quarantine).join(Volunteer, Volunteer.id == Quarantine.volunteer_id).where(
        Quarantine.project_id == project_id, Volunteer.public_id == public_id)).first()
    if entry is None:
        raise NotFound(f"Volunteer {public_id} is not quarantined in project {project_id}.", field="volunteer")
    if entry.released_at is None:
        entry.released_at = utcnow()
    session.flush()
    return entry


def is_qualification(reason: str) -> bool:
    """Whether a quarantine entry is a project's qualification (not a judgement of the volunteer)."""
    return reason.startswith(("qualifying:", "qualified:"))


def start_qualifying(session: Session, project_id: int, volunteer_id: int) -> None:
    """A volunteer's first serving in a project with a qualification: their answers wait for their gold.

    Nothing is written when the project asks for none, or the volunteer already has an
    entry in the project. The caller commits.
    """
    needed = session.scalar(select(Project.qualification).where(Project.id == project_id))
    if needed:
        session.execute(upsertable_insert(session, Quarantine.__table__).on_conflict_do_nothing().values(
            project_id=project_id, volunteer_id=volunteer_id, reason=QUALIFYING.format(n=needed),
            created_at=utcnow()))


def settle_qualification(session: Session, volunteer_id: int, project_ids: set[int] | None = None) -> set[int]:
    """Release the volunteer's qualifying entries (in ``project_ids``, or all) whose gold they have passed.

    Called when a qualifying volunteer passes a gold unit (rare: only while qualifying),
    so it may read. Returns the projects where the volunteer now qualifies. The caller commits.
    """
    statement = (select(Quarantine, Project.qualification).join(Project, Project.id == Quarantine.project_id)
                 .where(Quarantine.volunteer_id == volunteer_id, Quarantine.released_at.is_(None),
                        Quarantine.reason.startswith("qualifying:")))
    if project_ids is not None:
        statement = statement.where(Quarantine.project_id.in_(project_ids))
    entries = session.execute(statement).all()
    if not entries:
        return set()
    passed = dict(session.execute(
        select(Unit.project_id, func.count()).select_from(Answer).join(Unit, Unit.id == Answer.unit_id)
        .where(Answer.volunteer_id == volunteer_id, Answer.gold_score >= GOLD_PASS,
               Unit.project_id.in_([entry.project_id for entry, _ in entries]))
        .group_by(Unit.project_id)).all())
    qualified = set()
    for entry, needed in entries:
        if passed.get(entry.project_id, 0) >= needed:
            entry.reason, entry.released_at = QUALIFIED.format(n=needed), utcnow()
            qualified.add(entry.project_id)
    session.flush()
    return qualified
