"""Project statistics: the owner's dashboard numbers, and the public summary of a published project."""

from __future__ import annotations

import json
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from microtasks.models import Project
from microtasks.stats import project_stats, public_summary
from web.api.stats.schemas import ProjectStatsSchema, PublicSummarySchema
from web.auth import owned_project, owner_required
from web.extensions import db, state

#: Seconds a public summary is kept in Redis: a public page must not cost a pass over all answers per visit.
SUMMARY_SECONDS = 30

blp = Blueprint("stats", __name__, url_prefix="/projects",
                description="Project statistics (owners) and public summaries (anyone).")


def published_summary(slug: str) -> tuple[Project, dict[str, Any]] | None:
    """A published project with its public summary (from Redis when computed in the last
    :data:`SUMMARY_SECONDS`), or None for an unknown or unpublished project."""
    project = db().scalars(select(Project).where(Project.slug == slug, Project.published)).first()
    if project is None:
        return None
    key = f"mt:summary:{project.id}"
    cached = state().redis.get(key)
    if cached is not None:
        return project, json.loads(cached)
    summary = public_summary(db(), project)
    state().redis.set(key, json.dumps(summary), ex=SUMMARY_SECONDS)
    return project, summary


@blp.route("/<int:project_id>/stats")
class Stats(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, ProjectStatsSchema)
    def get(self, project_id: int) -> dict[str, Any]:
        """The project's dashboard numbers: units by state, answers and volunteers per hour, histograms, ETA, gold

        Per-hour series cover the last 48 UTC hours, oldest first. Another owner's project is a 404.
        """
        return project_stats(db(), owned_project(project_id))


@blp.route("/<slug>/summary")
class Summary(MethodView):

    @blp.response(200, PublicSummarySchema)
    def get(self, slug: str) -> dict[str, Any]:
        """A published project's public summary: progress, volunteers and results

        Needs no key; the numbers may be up to 30 seconds old. Unknown and unpublished projects are a 404.
        """
        found = published_summary(slug)
        if found is None:
            abort(404, message=f"No published project {slug!r}.")
        return found[1]
