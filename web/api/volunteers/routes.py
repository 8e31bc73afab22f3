"""Volunteer API: an anonymous identity, the next unit, and answers."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from microtasks.answers import submit_answer
from microtasks.projects import get_project
from microtasks.scheduling import next_unit
from microtasks.volunteers import create_volunteer
from web.api.volunteers.schemas import AnswerInSchema, AnswerOutSchema, NextUnitSchema, VolunteerTokenSchema
from web.auth import current_volunteer, volunteer_token
from web.extensions import db, state
from workers.connection import enqueue_consensus

blp = Blueprint("volunteers", __name__, description="Anonymous volunteers: units to answer, and answers.")


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
    @blp.response(200, NextUnitSchema)
    def post(self, project_id: int) -> dict[str, Any]:
        """Lease the next unit to answer (never one you were served before)"""
        volunteer = current_volunteer()
        project = get_project(db(), project_id)
        served = next_unit(db(), project, volunteer)
        db().commit()
        if served is None:
            return {"unit": None, "lease_expires_at": None,
                    "message": "Nothing left to do in this project for you. Thank you!"}
        unit, assignment = served
        return {
            "unit": {"id": unit.id, "project_id": unit.project_id, "width": unit.width, "height": unit.height,
                     "media_url": url_for("media", name=unit.media)},
            "lease_expires_at": assignment.expires_at,
        }


@blp.route("/units/<int:unit_id>/answers")
class Answers(MethodView):
    @blp.doc(security=[{"VolunteerToken": []}])
    @blp.arguments(AnswerInSchema)
    @blp.response(201, AnswerOutSchema)
    @blp.alt_response(200, schema=AnswerOutSchema, description="This answer id was already stored: nothing new.")
    def post(self, answer: dict[str, Any], unit_id: int) -> tuple[dict[str, Any], int]:
        """Submit an answer to a unit you were served"""
        volunteer = current_volunteer()
        submission = submit_answer(db(), volunteer, unit_id, str(answer["answer_id"]), answer["payload"],
                                   answer["duration_ms"])
        db().commit()
        if submission.completed_unit:
            enqueue_consensus(state().redis, unit_id, submission.answer.unit.answer_count)
        body = {"answer_id": submission.answer.answer_uuid, "unit_id": unit_id,
                "payload": submission.answer.payload, "created": submission.created,
                "unit_complete": submission.completed_unit}
        return body, 201 if submission.created else 200
