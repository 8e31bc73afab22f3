"""Volunteer pages: the project list and the task page."""

from __future__ import annotations

from flask import Blueprint, abort, make_response, render_template
from sqlalchemy import select

from microtasks.models import Project
from microtasks.projects import progress
from web.auth import ensure_volunteer_cookie
from web.extensions import db

bp = Blueprint("volunteer", __name__)


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    projects = db().scalars(select(Project).order_by(Project.id)).all()
    cards = [(project, progress(db(), project)) for project in projects]
    return render_template("volunteer/index.html", cards=cards)


@bp.get("/p/<slug>")
def task(slug: str):  # type: ignore[no-untyped-def]
    project = db().scalars(select(Project).where(Project.slug == slug)).first()
    if project is None:
        abort(404, description=f"No project {slug!r}.")
    settings = {
        "id": project.id,
        "name": project.name,
        "task_type": project.task_type.value,
        "labels": project.labels,
        "multi_select": project.multi_select,
        "marking_tool": project.marking_tool.value if project.marking_tool else None,
    }
    response = make_response(render_template("volunteer/task.html", project=project, settings=settings))
    response.headers["Cache-Control"] = "no-store"
    return ensure_volunteer_cookie(response)
