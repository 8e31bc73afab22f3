"""Which unit a volunteer sees next.

A unit is served to a volunteer at most once, never after it retired, and only
while its stored answers plus the leases in flight are below the project's
redundancy. Started units are finished first (depth-first), so that results
arrive early and a volunteer's answer is most often the one that completes a unit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from microtasks.models import Assignment, Project, Unit, UnitState, Volunteer, utcnow


def next_unit(session: Session, project: Project, volunteer: Volunteer,
              now: datetime | None = None) -> tuple[Unit, Assignment] | None:
    """Lease the next unit for ``volunteer``, or return None when there is none left for them.

    A volunteer who still holds an unexpired, unanswered lease in the project gets
    that unit again, so reloading a page spends no slot.
    """
    now = now or utcnow()
    held = session.execute(
        select(Unit, Assignment)
        .join(Assignment, Assignment.unit_id == Unit.id)
        .where(Unit.project_id == project.id, Unit.state == UnitState.open,
               Assignment.volunteer_id == volunteer.id, Assignment.answered.is_(False),
               Assignment.expires_at > now)
        .order_by(Assignment.served_at)
        .limit(1)
    ).first()
    if held is not None:
        return held[0], held[1]

    in_flight = (
        select(func.count())
        .where(Assignment.unit_id == Unit.id, Assignment.answered.is_(False), Assignment.expires_at > now)
        .correlate(Unit)
        .scalar_subquery()
    )
    served_before = exists().where(and_(Assignment.unit_id == Unit.id, Assignment.volunteer_id == volunteer.id))
    unit = session.scalars(
        select(Unit)
        .where(Unit.project_id == project.id, Unit.state == UnitState.open, ~served_before,
               Unit.answer_count + in_flight < project.redundancy)
        .order_by(Unit.answer_count.desc(), Unit.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=Unit)
    ).first()
    if unit is None:
        return None
    assignment = Assignment(unit_id=unit.id, volunteer_id=volunteer.id, served_at=now,
                            expires_at=now + timedelta(seconds=project.lease_seconds))
    session.add(assignment)
    session.flush()
    return unit, assignment
