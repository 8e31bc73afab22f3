"""Owner pages: sign in with the API key, follow a project, export its results."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from sqlalchemy import select

from microtasks.models import ConsensusResult, Project, Quarantine, Unit, Volunteer
from microtasks.projects import owner_for_key, progress
from microtasks.quarantine import release
from web.auth import current_owner
from web.demo import demo_truth
from web.extensions import db, state

bp = Blueprint("owner", __name__, url_prefix="/owner")


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    if request.method == "POST":
        owner = owner_for_key(db(), request.form.get("api_key", "").strip())
        if owner is None:
            flash("That API key is not known.")
            return render_template("owner/login.html"), 401
        session.clear()
        session["owner_id"] = owner.id
        return redirect(url_for("owner.projects"))
    return render_template("owner/login.html")


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    session.clear()
    return redirect(url_for("volunteer.index"))


@bp.get("/")
def projects():  # type: ignore[no-untyped-def]
    owner = current_owner()
    if owner is None:
        return redirect(url_for("owner.login"))
    rows = db().scalars(select(Project).where(Project.owner_id == owner.id).order_by(Project.id)).all()
    return render_template("owner/projects.html", owner=owner, cards=[(p, progress(db(), p)) for p in rows])


def _owned(project_id: int) -> Project:
    """The signed-in owner's project, or 404 (also when nobody is signed in)."""
    owner = current_owner()
    found = db().get(Project, project_id)
    if owner is None or found is None or found.owner_id != owner.id:
        abort(404)
    return found


@bp.get("/projects/<int:project_id>")
def project(project_id: int):  # type: ignore[no-untyped-def]
    if current_owner() is None:
        return redirect(url_for("owner.login"))
    found = _owned(project_id)
    results = db().execute(
        select(ConsensusResult, Unit).join(Unit, Unit.id == ConsensusResult.unit_id)
        .where(Unit.project_id == found.id).order_by(ConsensusResult.computed_at.desc()).limit(50)
    ).all()
    quarantined = db().execute(
        select(Quarantine, Volunteer.public_id).join(Volunteer, Volunteer.id == Quarantine.volunteer_id)
        .where(Quarantine.project_id == found.id).order_by(Quarantine.id.desc())
    ).all()
    return render_template("owner/project.html", project=found, progress=progress(db(), found), results=results,
                           quarantined=quarantined,
                           can_simulate=demo_truth(state().settings, found.slug) is not None)


@bp.post("/projects/<int:project_id>/quarantine/<volunteer>/release")
def release_volunteer(project_id: int, volunteer: str):  # type: ignore[no-untyped-def]
    """The owner lets a quarantined volunteer's later answers count again."""
    found = _owned(project_id)
    release(db(), found.id, volunteer)
    db().commit()
    flash(f"Volunteer {volunteer[:8]} released: their next answers count again.")
    return redirect(url_for("owner.project", project_id=project_id))


@bp.post("/projects/<int:project_id>/simulate")
def simulate(project_id: int):  # type: ignore[no-untyped-def]
    """Demo projects only: fill the open units with simulated volunteers."""
    from web.demo import simulate_volunteers

    found = _owned(project_id)
    answered = simulate_volunteers(state().settings, found.slug, volunteers=3,
                                   seed=int(request.form.get("seed", 0) or 0) + found.id)
    flash(f"Simulated volunteers gave {answered} answers; consensus appears as the worker computes it.")
    return redirect(url_for("owner.project", project_id=project_id))
