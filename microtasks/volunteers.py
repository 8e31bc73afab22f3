"""Anonymous volunteers: known by a random public id that their device keeps in a signed token."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from microtasks.models import Volunteer


def create_volunteer(session: Session) -> Volunteer:
    volunteer = Volunteer(public_id=str(uuid.uuid4()))
    session.add(volunteer)
    session.flush()
    return volunteer


def volunteer_by_public_id(session: Session, public_id: str) -> Volunteer | None:
    return session.scalars(select(Volunteer).where(Volunteer.public_id == public_id)).first()
