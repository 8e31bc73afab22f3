"""Volunteer pages: the project list and the task page."""

from __future__ import annotations

import json
from typing import Any, Sequence

from flask import Blueprint, abort, make_response, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import case, func, or_, select

from microtasks.models import Answer, Project, Unit, UnitState
from microtasks.projects import localized
from web.api.stats.routes import published_summary
from web.auth import current_owner, ensure_volunteer_cookie
from web.extensions import db, state
from web.i18n import language

bp = Blueprint("volunteer", __name__)

#: Seconds the project list's typical task times are kept in Redis: a visit must not rank every answer.
TYPICAL_TIME_SECONDS = 300


def _unit_counts(project_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(retired, all) units of each project, gold apart, in one grouped query."""
    rows = db().execute(
        select(Unit.project_id, func.sum(case((Unit.state == UnitState.retired, 1), else_=0)), func.count())
        .where(Unit.project_id.in_(project_ids), Unit.gold.is_(None)).group_by(Unit.project_id))
    return {project_id: (int(retired or 0), int(total)) for project_id, retired, total in rows}


def _median_seconds(project_ids: Sequence[int]) -> dict[int, float]:
    """The median time volunteers took per answer in each project, in one grouped query.

    Window functions rank each project's answer times (PostgreSQL and SQLite alike); the
    median is the middle rank, or the mean of the two middle ranks.
    """
    ranked = (select(Unit.project_id.label("project_id"), Answer.duration_ms.label("ms"),
                     func.row_number().over(partition_by=Unit.project_id, order_by=Answer.duration_ms).label("rank"),
                     func.count().over(partition_by=Unit.project_id).label("n"))
              .join(Unit, Unit.id == Answer.unit_id)
              .where(Unit.project_id.in_(project_ids), Answer.duration_ms.is_not(None))
              .subquery())
    middle = or_(ranked.c.rank == (ranked.c.n + 1) // 2, ranked.c.rank == ranked.c.n // 2 + 1)
    rows = db().execute(select(ranked.c.project_id, func.avg(ranked.c.ms)).where(middle)
                        .group_by(ranked.c.project_id))
    return {project_id: float(ms) / 1000 for project_id, ms in rows if ms is not None}


def _typical_seconds(project_ids: Sequence[int]) -> dict[int, float]:
    """:func:`_median_seconds` of the published projects, from Redis when computed in the last
    :data:`TYPICAL_TIME_SECONDS`."""
    key = "mt:typical-seconds"
    cached = state().redis.get(key)
    if cached is not None:
        return {int(project_id): seconds for project_id, seconds in json.loads(cached).items()}
    found = _median_seconds(project_ids)
    state().redis.set(key, json.dumps(found), ex=TYPICAL_TIME_SECONDS)
    return found


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    """Published projects, filterable by topic: each with its texts in the volunteer's language, the
    typical time a task takes and how far the project has come."""
    projects = db().scalars(select(Project).where(Project.published.is_(True)).order_by(Project.id)).all()
    topics = sorted({str(topic) for project in projects for topic in project.topics or []}, key=str.casefold)
    topic = request.args.get("topic")
    shown = [project for project in projects if not topic or topic in (project.topics or [])]
    counts, seconds = _unit_counts([project.id for project in shown]), _typical_seconds([p.id for p in projects])
    cards = [{"project": project, "texts": localized(project, language()), "seconds": seconds.get(project.id),
              "retired": counts.get(project.id, (0, 0))[0], "units": counts.get(project.id, (0, 0))[1]}
             for project in shown]
    return render_template("volunteer/index.html", cards=cards, topics=topics, topic=topic)


def _owns(project: Project) -> bool:
    """The signed-in owner may open their unpublished project's page (it serves nothing until published)."""
    owner = current_owner()
    return owner is not None and (owner.id == project.owner_id or owner.is_admin)


def _media_url(entry: dict[str, Any]) -> str | None:
    """The address of a field guide entry's or tutorial step's example image, if it has one."""
    return url_for("media", name=entry["image"]) if entry.get("image") else None


@bp.get("/p/<slug>")
def task(slug: str):  # type: ignore[no-untyped-def]
    project = db().scalars(select(Project).where(Project.slug == slug)).first()
    if project is None or not (project.published or _owns(project)):
        abort(404, description=_("No project %(slug)s.", slug=repr(slug)))
    texts = localized(project, language())
    settings = {
        "id": project.id,
        "name": texts["name"],
        "task_type": project.task_type.value,
        "labels": project.labels,
        "names": texts["labels"],  # what each label is called in the volunteer's language; answers keep the label
        "multi_select": project.multi_select,
        "marking_tool": project.marking_tool.value if project.marking_tool else None,
        "summary_url": url_for("stats.Summary", slug=project.slug) if project.published else None,
    }
    guide = [{**entry, "name": texts["labels"].get(entry["label"], entry["label"]), "url": _media_url(entry)}
             for entry in texts["field_guide"]]
    tutorial = [{**step, "url": _media_url(step)} for step in texts["tutorial"]]
    response = make_response(render_template("volunteer/task.html", project=project, settings=settings,
                                             texts=texts, guide=guide, tutorial=tutorial))
    response.headers["Cache-Control"] = "no-store"
    return ensure_volunteer_cookie(response)


def _method_texts() -> dict[str, str]:
    """What each consensus method does, in the volunteer's language (the core's
    :data:`microtasks.stats.METHODS` says it in English)."""
    return {
        "majority_vote": _("Majority vote: the label most volunteers chose."),
        "multilabel_majority": _("Majority per label: a label is kept when more than half of the volunteers "
                                 "chose it."),
        "multilabel_dawid_skene": _("Dawid-Skene per label: each volunteer’s reliability at ticking and at "
                                    "leaving out labels is estimated from all answers and weighs their choices."),
        "wawa": _("Weighted majority vote: volunteers who usually agree with the majority weigh more."),
        "dawid_skene": _("Dawid-Skene: each volunteer’s reliability is estimated from all answers and weighs "
                         "their votes."),
        "one_coin_dawid_skene": _("One-coin Dawid-Skene: one reliability per volunteer weighs their votes."),
        "bayesian_dawid_skene": _("Bayesian Dawid-Skene: each volunteer’s reliability, with its uncertainty, is "
                                  "estimated from all answers and weighs their votes."),
        "mark_majority": _("Mark majority: a mark is kept when more than half of the volunteers made it."),
        "crater_clustering": _("Mark clustering: marks close together are grouped, and a group is kept when "
                               "enough of the volunteers made it."),
    }


@bp.get("/p/<slug>/about")
def about(slug: str):  # type: ignore[no-untyped-def]
    """The public transparency page of a published project: progress and a summary of its results, in the
    volunteer's language."""
    found = published_summary(slug)
    if found is None:
        abort(404, description=_("No published project %(slug)s.", slug=repr(slug)))
    project, summary = found
    return render_template("volunteer/about.html", project=project, summary=summary,
                           texts=localized(project, language()), methods=_method_texts())
