"""Volunteers: anonymous at first, with an optional account; what is stored about them, and erasing it.

A volunteer starts anonymous, known by a random public id that their device keeps in a
signed token. An account (a username and a password, no email) is made *on* that
volunteer, so everything they did before signing up stays theirs. Signing in on another
device merges that device's anonymous volunteer into the account: its answers,
servings, quarantine entries and reliabilities move to the account, except those for
units the account itself already answered or was served (one answer and one serving
per volunteer per unit), which stay with the emptied anonymous volunteer, detached.

Erasing a volunteer keeps the science and forgets the person: their answers and the
rest move to a fresh volunteer with a new public id and no account, then the person's
row is deleted, so their tokens no longer name anyone.

Example:
    >>> from sqlalchemy import create_engine
    >>> from sqlalchemy.orm import Session
    >>> from microtasks.models import Base
    >>> engine = create_engine("sqlite://")
    >>> Base.metadata.create_all(engine)
    >>> with Session(engine) as session:
    ...     volunteer = create_volunteer(session)
    ...     account = create_account(session, volunteer.id, "ada", "correct horse battery")
    ...     (account.id == volunteer.id, authenticate(session, "ada", "wrong password") is None)
    (True, True)
"""

from __future__ import annotations

import functools
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session, aliased

from microtasks.accounts import check_credentials, check_password, hash_password
from microtasks.errors import Conflict, MicrotasksError
from microtasks.models import Answer, Assignment, Project, Quarantine, Unit, Volunteer, VolunteerReliability
from microtasks.quarantine import GOLD_PASS, is_qualification, settle_qualification

#: Rows read at a time when a volunteer's data is streamed.
CHUNK = 500


class VolunteerGone(MicrotasksError):
    """The token names a volunteer who no longer exists (they erased their data)."""

    status = 401

    def __init__(self, message: str = "This volunteer identity no longer exists (its data was erased); "
                                      "get a new token from POST /api/v1/volunteers.") -> None:
        super().__init__(message)


def create_volunteer(session: Session) -> Volunteer:
    volunteer = Volunteer(public_id=str(uuid.uuid4()))
    session.add(volunteer)
    session.flush()
    return volunteer


def exists(session: Session, volunteer_id: int) -> bool:
    """Whether a token's volunteer still exists (only asked off the hot path, when something was refused)."""
    return session.scalar(select(Volunteer.id).where(Volunteer.id == volunteer_id)) is not None


def get_volunteer(session: Session, volunteer_id: int) -> Volunteer:
    volunteer = session.get(Volunteer, volunteer_id)
    if volunteer is None:
        raise VolunteerGone()
    return volunteer


# -- accounts -------------------------------------------------------------------------------

def create_account(session: Session, volunteer_id: int, username: str, password: str) -> Volunteer:
    """Make an account of the volunteer ``volunteer_id``: the same row, so all their history stays.

    Raises :class:`VolunteerGone` for an erased volunteer, :class:`Conflict` when the
    volunteer already has an account or the username is taken. The caller commits (and
    turns a unique-constraint failure of a concurrent sign-up into the same 409).
    """
    check_credentials(username, password)
    volunteer = get_volunteer(session, volunteer_id)
    if volunteer.username is not None:
        raise Conflict(f"This volunteer already has an account ({volunteer.username!r}); sign in instead.")
    if session.scalar(select(Volunteer.id).where(Volunteer.username == username)) is not None:
        raise Conflict(f"The username {username!r} is taken.", field="username")
    volunteer.username, volunteer.password_hash = username, hash_password(password)
    session.flush()
    return volunteer


def authenticate(session: Session, username: str, password: str) -> Volunteer | None:
    """The account with this username and password, or None (an unknown name costs the same hashing)."""
    volunteer = session.scalars(select(Volunteer).where(Volunteer.username == username)).first()
    stored = volunteer.password_hash if volunteer is not None else _dummy_hash()
    return volunteer if check_password(stored, password) and volunteer is not None else None


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


# -- merging and erasing --------------------------------------------------------------------

@dataclass
class Moved:
    """What moving a volunteer's rows to another volunteer did."""

    #: Answers now with the target volunteer.
    answers: int = 0
    #: Answers left with the source volunteer: the target had answered the same unit.
    kept_apart: int = 0
    #: Projects the source volunteer was served in: their serving cache must be rebuilt after commit.
    projects: set[int] = field(default_factory=set)


def _served_projects(session: Session, volunteer_id: int) -> set[int]:
    served = select(Unit.project_id).join(Assignment, Assignment.unit_id == Unit.id).where(
        Assignment.volunteer_id == volunteer_id)
    answered = select(Unit.project_id).join(Answer, Answer.unit_id == Unit.id).where(
        Answer.volunteer_id == volunteer_id)
    return set(session.scalars(served.union(answered)))


def _move(session: Session, source_id: int, target_id: int) -> Moved:
    """Move the source volunteer's rows to the target, except where the target already has one."""
    moved = Moved(projects=_served_projects(session, source_id))
    for table, key in ((Answer, "unit_id"), (Assignment, "unit_id"), (VolunteerReliability, "project_id")):
        theirs = aliased(table)  # not correlated with the updated table
        taken = select(getattr(theirs, key)).where(theirs.volunteer_id == target_id)
        result = session.execute(
            update(table).where(table.volunteer_id == source_id, getattr(table, key).not_in(taken))
            .values(volunteer_id=target_id), execution_options={"synchronize_session": False})
        if table is Answer:
            moved.answers = result.rowcount  # type: ignore[attr-defined]
    moved.kept_apart = session.scalar(select(func.count()).select_from(Answer).where(
        Answer.volunteer_id == source_id)) or 0
    held = {entry.project_id: entry for entry in session.scalars(
        select(Quarantine).where(Quarantine.volunteer_id == target_id))}
    for entry in session.scalars(select(Quarantine).where(Quarantine.volunteer_id == source_id)).all():
        mine = held.get(entry.project_id)
        if mine is None:
            entry.volunteer_id = target_id
        elif _stricter(entry, mine):  # the same person: the quarantine in force wins
            mine.reason, mine.created_at, mine.released_at = entry.reason, entry.created_at, entry.released_at
    session.flush()
    settle_qualification(session, target_id)  # gold passed on the other device counts too
    return moved


def _stricter(entry: Quarantine, other: Quarantine) -> bool:
    """Whether ``entry`` silences more than ``other``: in force where the other is not, or not a qualification."""
    if entry.released_at is not None:
        return False
    return other.released_at is not None or (is_qualification(other.reason) and not is_qualification(entry.reason))


def merge(session: Session, anonymous_id: int, account_id: int) -> Moved:
    """Sign-in on another device: move that device's anonymous volunteer into the account.

    Answers and servings of units the account already has stay with the anonymous
    volunteer (nothing is lost, nothing is counted twice). Only an anonymous volunteer is
    merged; any other is left alone (an empty :class:`Moved`). After committing, rebuild
    the serving cache of ``projects`` so the account is never served a unit it answered.
    """
    if anonymous_id == account_id:
        return Moved()
    source = session.get(Volunteer, anonymous_id)
    if source is None or source.username is not None:
        return Moved()
    return _move(session, anonymous_id, account_id)


def erase(session: Session, volunteer_id: int) -> tuple[Volunteer, Moved]:
    """Forget a person and keep the science: their rows move to a new detached volunteer, theirs is deleted.

    Returns the detached volunteer (a new public id, no account) and what moved. After
    committing, rebuild the serving cache of the moved ``projects``.
    """
    get_volunteer(session, volunteer_id)
    detached = create_volunteer(session)
    moved = _move(session, volunteer_id, detached.id)
    session.execute(delete(Volunteer).where(Volunteer.id == volunteer_id))
    return detached, moved


# -- what is stored about a volunteer -------------------------------------------------------

def stats(session: Session, volunteer_id: int) -> list[dict[str, Any]]:
    """Per project the volunteer answered in: answers given, gold answered and gold passed."""
    passed = func.count(case((Answer.gold_score >= GOLD_PASS, 1)))
    rows = session.execute(
        select(Project.id, Project.slug, Project.name, func.count(Answer.id), func.count(Answer.gold_score), passed)
        .join(Unit, Unit.project_id == Project.id).join(Answer, Answer.unit_id == Unit.id)
        .where(Answer.volunteer_id == volunteer_id).group_by(Project.id, Project.slug, Project.name)
        .order_by(Project.name))
    return [{"project_id": pid, "slug": slug, "name": name, "answers": answers, "gold_answered": gold,
             "gold_passed": passed} for pid, slug, name, answers, gold, passed in rows]


def records(session: Session, volunteer_id: int) -> dict[str, Iterator[tuple[Any, int]]]:
    """Everything stored about a volunteer but their row, section by section, read in chunks as consumed.

    Each section (``answers``, ``assignments``, ``quarantine``, ``reliability``) yields
    ``(row, project id)``. Keep the session open until the iterators are consumed.
    """
    def rows(entity: Any, unit_of: Any = None) -> Iterator[tuple[Any, int]]:
        statement = select(entity, Unit.project_id).join(Unit, Unit.id == unit_of) if unit_of is not None else \
            select(entity, entity.project_id)
        statement = statement.where(entity.volunteer_id == volunteer_id).order_by(entity.id)
        for row in session.execute(statement.execution_options(yield_per=CHUNK)):
            yield row[0], row[1]

    return {"answers": rows(Answer, Answer.unit_id), "assignments": rows(Assignment, Assignment.unit_id),
            "quarantine": rows(Quarantine), "reliability": rows(VolunteerReliability)}
