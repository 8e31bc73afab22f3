"""Volunteer API: an anonymous identity, the next units, and answers; an optional account, and privacy."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from flask import Response, after_this_request, current_app, request, stream_with_context, url_for
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy.exc import IntegrityError

from microtasks import gold
from microtasks.answers import AnswerIn, Submission, submit_answers
from microtasks.errors import Conflict, MicrotasksError
from microtasks.models import Volunteer
from microtasks.serving import skip
from microtasks.volunteers import (
    Moved,
    VolunteerGone,
    authenticate,
    create_account,
    create_volunteer,
    erase,
    exists,
    get_volunteer,
    merge,
    records,
    stats,
)
from web.api.volunteers.schemas import (
    AccountTokenSchema,
    AnswerBatchInSchema,
    AnswerBatchOutSchema,
    AnswerInSchema,
    AnswerOutSchema,
    AnswerRecordSchema,
    AssignmentRecordSchema,
    CredentialsSchema,
    ErasedSchema,
    HealthSchema,
    NextArgs,
    NextUnitSchema,
    QuarantineRecordSchema,
    ReliabilityRecordSchema,
    SkipSchema,
    VolunteerRecordSchema,
    VolunteerSummarySchema,
    VolunteerTokenSchema,
)
from web.auth import VOLUNTEER_HEADER, clear_volunteer_cookie, current_volunteer_id, set_volunteer_cookie, \
    volunteer_token
from web.extensions import db, state
from workers.connection import after_answers

blp = Blueprint("volunteers", __name__, description="Anonymous volunteers: units to answer, and answers.")


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, bool]:
        """Liveness for load balancers: one Redis round trip, no database"""
        return {"redis": bool(state().redis.ping())}


@blp.route("/volunteers")
class Volunteers(MethodView):
    @blp.response(201, VolunteerTokenSchema)
    def post(self) -> dict[str, str]:
        """Start as a new anonymous volunteer: no sign-up, just a token"""
        volunteer = create_volunteer(db())
        db().commit()
        return {"id": volunteer.public_id, "token": volunteer_token(volunteer)}


@blp.route("/projects/<int:project_id>/next")
class NextUnit(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.arguments(NextArgs, location="query")
    @blp.response(200, NextUnitSchema)
    def post(self, args: dict[str, int], project_id: int) -> dict[str, Any]:
        """Lease the next units to answer: never one you were served before, never a retired one"""
        volunteer_id = current_volunteer_id()
        with _identity_checked(volunteer_id):
            leases = state().dispatcher.lease(db(), project_id, volunteer_id, args["count"])
            db().commit()
        if not leases and not exists(db(), volunteer_id):
            raise VolunteerGone()
        units = [{"id": lease.unit_id, "project_id": project_id, "width": lease.width, "height": lease.height,
                  "lease_expires_at": lease.expires_at, "media_url": url_for("media", name=lease.media),
                  "thumbnail_url": url_for("media", name=_thumbnail(lease.media))}
                 for lease in leases]
        if not units:
            return {"unit": None, "units": [], "lease_expires_at": None,
                    "message": "Nothing left to do in this project for you. Thank you!"}
        return {"unit": units[0], "units": units, "lease_expires_at": units[0]["lease_expires_at"]}


def _thumbnail(media: str) -> str:
    """The thumbnail stored beside a unit's phone-size copy (see :func:`microtasks.importing.media_names`)."""
    return media.removesuffix(".webp") + ".thumb.webp"


@contextmanager
def _identity_checked(volunteer_id: int) -> Iterator[None]:
    """A token of an erased volunteer fails on the foreign key of what it writes: a 401, not a 500.

    Tokens are checked without the database (the hot path), so the database's constraint
    is the check; the volunteer is looked up only once a write has failed.
    """
    try:
        yield
    except IntegrityError:
        db().rollback()
        if not exists(db(), volunteer_id):
            raise VolunteerGone() from None
        raise


def _store(items: Sequence[AnswerIn]) -> list[Submission | MicrotasksError]:
    """Store answers, commit, then update the serving cache and queue consensus for completed units."""
    volunteer_id = current_volunteer_id()
    with _identity_checked(volunteer_id):
        outcomes = submit_answers(db(), volunteer_id, items)
        if any(isinstance(o, Conflict) for o in outcomes) and not exists(db(), volunteer_id):
            raise VolunteerGone()  # an erased volunteer was served nothing: not a conflict, a lost identity
        db().commit()
    after_answers(state().redis, state().dispatcher, volunteer_id, outcomes)
    return outcomes


@blp.route("/units/<int:unit_id>/skip")
class Skip(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.response(200, SkipSchema)
    def post(self, unit_id: int) -> dict[str, Any]:
        """Pass on a unit you were served: it goes to someone else and is not offered to you again"""
        volunteer_id = current_volunteer_id()
        try:
            project_id = skip(db(), volunteer_id, unit_id)
        except Conflict:
            if not exists(db(), volunteer_id):
                raise VolunteerGone() from None
            raise
        db().commit()
        state().dispatcher.answered([(project_id, unit_id, volunteer_id, None, False)])
        return {"unit_id": unit_id, "skipped": True}


def _feedback(outcome: Submission) -> dict[str, Any] | None:
    if not outcome.gold:
        return None
    feedback = {"score": outcome.gold_score, "expected": outcome.gold_expected}
    if outcome.gold_expected is not None and "marks" in outcome.gold_expected:
        feedback |= gold.mark_feedback(outcome.gold_expected["marks"], outcome.payload.get("marks") or [])
    return feedback


@blp.route("/units/<int:unit_id>/answers")
class Answers(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.arguments(AnswerInSchema)
    @blp.response(201, AnswerOutSchema)
    @blp.alt_response(200, schema=AnswerOutSchema, description="This answer id was already stored: nothing new.")
    def post(self, answer: dict[str, Any], unit_id: int) -> tuple[dict[str, Any], int]:
        """Submit an answer to a unit you were served"""
        outcome = _store([AnswerIn(unit_id, str(answer["answer_id"]), answer["payload"], answer["duration_ms"])])[0]
        if isinstance(outcome, MicrotasksError):
            raise outcome
        body = {"answer_id": outcome.answer_id, "unit_id": unit_id, "payload": outcome.payload,
                "created": outcome.created, "unit_complete": outcome.completed_unit, "gold": _feedback(outcome),
                "answer_count": outcome.answer_count, "unit_full": outcome.unit_full}
        return body, 201 if outcome.created else 200


@blp.route("/answers")
class AnswerBatch(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.arguments(AnswerBatchInSchema)
    @blp.response(200, AnswerBatchOutSchema)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Submit several answers at once (an app sending what it queued offline); each stands alone"""
        items = [AnswerIn(a["unit_id"], str(a["answer_id"]), a["payload"], a["duration_ms"]) for a in body["answers"]]
        results = []
        for item, outcome in zip(items, _store(items)):
            if isinstance(outcome, MicrotasksError):
                results.append({"status": outcome.status, "answer_id": item.answer_id, "unit_id": item.unit_id,
                                "created": False, "unit_complete": False, "message": outcome.message,
                                "errors": outcome.errors})
            else:
                results.append({"status": 201 if outcome.created else 200, "answer_id": outcome.answer_id,
                                "unit_id": item.unit_id, "created": outcome.created,
                                "unit_complete": outcome.completed_unit, "gold": _feedback(outcome),
                                "answer_count": outcome.answer_count, "unit_full": outcome.unit_full})
        return {"results": results}


# -- accounts and privacy -------------------------------------------------------------------

def _remember_on_this_device(volunteer: Any) -> None:
    """Pages (no token header) keep the identity in the cookie; API clients keep the token themselves."""
    if not request.headers.get(VOLUNTEER_HEADER):
        after_this_request(lambda response: set_volunteer_cookie(response, volunteer))


def _forget_on_this_device() -> None:
    after_this_request(clear_volunteer_cookie)


def refresh_serving(moved: Moved) -> None:
    """After commit: rebuild the serving cache of projects whose servings changed hands."""
    for project_id in sorted(moved.projects):
        state().dispatcher.invalidate(project_id)


@blp.route("/volunteers/account")
class Account(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.arguments(CredentialsSchema)
    @blp.response(201, AccountTokenSchema)
    @blp.alt_response(409, description="The username is taken, or this volunteer already has an account.")
    def post(self, credentials: dict[str, str]) -> dict[str, Any]:
        """Make an account of your volunteer: a username and a password, no email

        The account is the volunteer you already are, so your answers and credit so far
        stay yours; sign in with it on another device to carry on there.
        """
        volunteer_id = current_volunteer_id()
        try:
            volunteer = create_account(db(), volunteer_id, credentials["username"], credentials["password"])
            db().commit()
        except IntegrityError:  # a concurrent sign-up took the name first
            db().rollback()
            raise Conflict(f"The username {credentials['username']!r} is taken.", field="username") from None
        return {"id": volunteer.public_id, "token": volunteer_token(volunteer), "username": volunteer.username,
                "merged_answers": 0, "kept_apart": 0}


@blp.route("/volunteers/login")
class Login(MethodView):
    @blp.arguments(CredentialsSchema)
    @blp.response(200, AccountTokenSchema)
    @blp.alt_response(401, description="The username and password are not known.")
    def post(self, credentials: dict[str, str]) -> dict[str, Any]:
        """Sign in to your account; what this device did anonymously joins it

        Returns the account's token (pages get it as their cookie). When the call carries
        an anonymous volunteer's token, that volunteer's answers move to the account,
        except answers to units the account had already answered, which stay for science,
        detached from you.
        """
        account = authenticate(db(), credentials["username"], credentials["password"])
        if account is None:
            abort(401, message="That username and password are not known.")
        device = current_volunteer_id(required=False)
        moved = merge(db(), device, account.id) if device is not None else Moved()
        db().commit()
        refresh_serving(moved)
        _remember_on_this_device(account)
        return {"id": account.public_id, "token": volunteer_token(account), "username": account.username,
                "merged_answers": moved.answers, "kept_apart": moved.kept_apart}


@blp.route("/volunteers/logout")
class Logout(MethodView):
    @blp.response(204)
    @blp.alt_response(409, description="An anonymous volunteer cannot sign out: their history would be lost.")
    def post(self) -> None:
        """Sign out on this device (pages): the cookie is cleared, the next page starts anonymous

        A volunteer without an account is refused: with no way back, their history would
        be lost (make an account first, or erase yourself).
        """
        volunteer_id = current_volunteer_id(required=False)
        volunteer = db().get(Volunteer, volunteer_id) if volunteer_id is not None else None
        if volunteer is not None and volunteer.username is None:
            raise Conflict("You have no account, so signing out would lose your history for good: "
                           "make an account first (or erase your data).")
        _forget_on_this_device()


def summary(volunteer: Volunteer) -> dict[str, Any]:
    """The volunteer and what they have done, per project (for the API and the account page)."""
    projects = stats(db(), volunteer.id)
    return {"id": volunteer.public_id, "username": volunteer.username, "created_at": volunteer.created_at,
            "answers": sum(p["answers"] for p in projects), "gold_passed": sum(p["gold_passed"] for p in projects),
            "projects": projects}


@blp.route("/volunteers/me")
class Me(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.response(200, VolunteerSummarySchema)
    def get(self) -> dict[str, Any]:
        """You: your account, if any, and your answers, projects and gold passed; and your token, signed anew

        After the server's secret key is rotated, tokens signed with the old key keep working only
        while it stays among the fallback keys: an app that calls this now and then and keeps the
        token it returns never loses its volunteer. (The pages' cookie is re-signed by the pages, and
        its token never reaches a script.)
        """
        volunteer = get_volunteer(db(), current_volunteer_id())
        renewed = {"token": volunteer_token(volunteer)} if request.headers.get(VOLUNTEER_HEADER) else {}
        return {**summary(volunteer), **renewed}

    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.response(200, ErasedSchema)
    def delete(self) -> dict[str, Any]:
        """Erase yourself: your answers stay for science, detached from you; your tokens stop working

        Your answers, servings, quarantine entries and reliabilities move to a new
        pseudonymous volunteer that nothing links to you, and your volunteer (with its
        account) is deleted. This cannot be undone.
        """
        _, moved = erase(db(), current_volunteer_id())
        db().commit()
        refresh_serving(moved)
        _forget_on_this_device()
        return {"erased": True, "answers_kept": moved.answers}


#: Sections of a data download: name, schema.
SECTIONS = (("answers", AnswerRecordSchema()), ("assignments", AssignmentRecordSchema()),
            ("quarantine", QuarantineRecordSchema()), ("reliability", ReliabilityRecordSchema()))


@blp.route("/volunteers/me/data")
class MyData(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.response(200, content_type="application/json", description="Everything stored about you, as JSON.")
    def get(self) -> Response:
        """Download everything stored about you (JSON, streamed)

        Your volunteer (never your password's hash), your answers with what you gave,
        the units you were served, quarantine entries and your fitted reliabilities.
        """
        volunteer = get_volunteer(db(), current_volunteer_id())
        head = VolunteerRecordSchema().dump(volunteer)
        sessions = state().sessions

        def generate() -> Iterator[str]:
            # A session of its own: the request's is closed before the stream ends.
            with sessions() as session:
                sections = records(session, volunteer.id)
                yield '{"volunteer": ' + json.dumps(head)
                for name, schema in SECTIONS:
                    yield f', "{name}": ['
                    for position, (row, project_id) in enumerate(sections[name]):
                        yield ("," if position else "") + json.dumps({"project_id": project_id, **schema.dump(row)})
                    yield "]"
                yield "}\n"

        name = f"microtasks-volunteer-{volunteer.public_id}.json"
        return current_app.response_class(stream_with_context(generate()), mimetype="application/json",
                                          headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                   "Cache-Control": "no-store"})
