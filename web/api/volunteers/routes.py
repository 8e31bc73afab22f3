"""Volunteer API: an anonymous identity, the next units, and answers."""

from __future__ import annotations

from typing import Any, Sequence

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from microtasks.answers import AnswerIn, Submission, submit_answers
from microtasks.errors import MicrotasksError
from microtasks.serving import skip
from microtasks.volunteers import create_volunteer
from web.api.volunteers.schemas import (
    AnswerBatchInSchema,
    AnswerBatchOutSchema,
    AnswerInSchema,
    AnswerOutSchema,
    HealthSchema,
    NextArgs,
    NextUnitSchema,
    SkipSchema,
    VolunteerTokenSchema,
)
from web.auth import current_volunteer_id, volunteer_token
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
        leases = state().dispatcher.lease(db(), project_id, volunteer_id, args["count"])
        db().commit()
        units = [{"id": lease.unit_id, "project_id": project_id, "width": lease.width, "height": lease.height,
                  "lease_expires_at": lease.expires_at, "media_url": url_for("media", name=lease.media)}
                 for lease in leases]
        if not units:
            return {"unit": None, "units": [], "lease_expires_at": None,
                    "message": "Nothing left to do in this project for you. Thank you!"}
        return {"unit": units[0], "units": units, "lease_expires_at": units[0]["lease_expires_at"]}


def _store(items: Sequence[AnswerIn]) -> list[Submission | MicrotasksError]:
    """Store answers, commit, then update the serving cache and queue consensus for completed units."""
    volunteer_id = current_volunteer_id()
    outcomes = submit_answers(db(), volunteer_id, items)
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
        project_id = skip(db(), volunteer_id, unit_id)
        db().commit()
        state().dispatcher.answered([(project_id, unit_id, volunteer_id, None, False)])
        return {"unit_id": unit_id, "skipped": True}


def _feedback(outcome: Submission) -> dict[str, Any] | None:
    if not outcome.gold:
        return None
    return {"score": outcome.gold_score, "expected": outcome.gold_expected}


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
                "created": outcome.created, "unit_complete": outcome.completed_unit, "gold": _feedback(outcome)}
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
                                "unit_complete": outcome.completed_unit, "gold": _feedback(outcome)})
        return {"results": results}
