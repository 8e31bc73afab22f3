"""Anonymous volunteers: known by a random public id that their device keeps in a signed token."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from microtasks.models import Volunteer


def create_volunteer(session: Session) -> Volunteer:
    volunteer = Volunteer(public_id=str(uuid.uuid4()))
    session.add(volunteer)
    session.flush()
    return volunteer

