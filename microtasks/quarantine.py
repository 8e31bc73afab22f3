"""Spam and carelessness: volunteers whose answers carry no information get weight 0.

A volunteer with enough answers in a project is quarantined when they answer
implausibly fast, always give the same answer, or agree with gold and peers at
chance level. A quarantined volunteer is still served units (nothing tells them), but
their answers no longer count toward any unit's redundancy nor weigh in its consensus:
the units they had counted for are reopened for other volunteers, and the refit that
found them recomputes every retired unit without them. The owner can review the list
and release a volunteer, whose later answers count again.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from microtasks.errors import NotFound
from microtasks.models import Answer, Project, Quarantine, Unit, UnitState, Volunteer, utcnow


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
    quarantined again by the rules (the owner decided). The caller commits.
    """
    if session.scalars(select(Quarantine.id).where(Quarantine.project_id == project.id,
                                                   Quarantine.volunteer_id == volunteer_id)).first() is not None:
        return set()
    session.add(Quarantine(project_id=project.id, volunteer_id=volunteer_id, reason=reason))
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
