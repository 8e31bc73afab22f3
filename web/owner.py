"""Owner pages: sign up and sign in, API keys, projects with their settings, preview and publishing."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from marshmallow import ValidationError as SchemaError
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from microtasks.accounts import MIN_PASSWORD, api_keys, authenticate, create_api_key, create_owner, \
    owner_for_key, revoke_api_key, set_password
from microtasks.errors import MicrotasksError
from microtasks.models import ConsensusResult, Project, Quarantine, TaskType, Unit, Volunteer
from microtasks.projects import SERVING, create_project, progress, update_project
from microtasks.quarantine import release
from web.api.projects.schemas import ProjectSchema
from web.auth import current_owner, manages
from web.demo import demo_truth
from web.extensions import db, state

bp = Blueprint("owner", __name__, url_prefix="/owner")

#: Blank rows offered below a project's field guide entries and tutorial steps.
SPARE_ROWS = 2


def _sign_in(owner_id: int) -> Any:
    session.clear()
    session["owner_id"] = owner_id
    return redirect(url_for("owner.projects"))


@bp.route("/login", methods=["GET", "POST"])
def login():  # type: ignore[no-untyped-def]
    if request.method == "POST":
        if request.form.get("api_key"):
            owner = owner_for_key(db(), request.form["api_key"].strip())
            db().commit()
        else:
            owner = authenticate(db(), request.form.get("username", "").strip(), request.form.get("password", ""))
        if owner is None:
            flash(_("That username and password (or API key) are not known."))
            return render_template("owner/login.html", signup=_signup_open()), 401
        return _sign_in(owner.id)
    return render_template("owner/login.html", signup=_signup_open())


def _signup_open() -> bool:
    return bool(current_app.config.get("OWNER_SIGNUP", True))


@bp.route("/signup", methods=["GET", "POST"])
def signup():  # type: ignore[no-untyped-def]
    if not _signup_open():
        abort(404)
    if request.method == "POST":
        form = request.form
        if form.get("password", "") != form.get("confirm", ""):
            flash(_("The two passwords differ."))
            return render_template("owner/signup.html", form=form), 422
        try:
            owner, key = create_owner(db(), form.get("name", "").strip() or form.get("username", "").strip(),
                                      form.get("username", "").strip(), form.get("password", ""))
        except MicrotasksError as error:
            flash(_explain(error))
            return render_template("owner/signup.html", form=form), error.status
        db().commit()
        response = _sign_in(owner.id)
        session["new_key"] = key
        return response
    return render_template("owner/signup.html", form={})


@bp.post("/logout")
def logout():  # type: ignore[no-untyped-def]
    session.clear()
    return redirect(url_for("volunteer.index"))


def _signed_in() -> Any:
    owner = current_owner()
    if owner is None:
        abort(redirect(url_for("owner.login")))
    return owner


@bp.get("/")
def projects():  # type: ignore[no-untyped-def]
    owner = _signed_in()
    rows = db().scalars(select(Project).where(Project.owner_id == owner.id).order_by(Project.id)).all()
    return render_template("owner/projects.html", owner=owner, cards=[(p, progress(db(), p)) for p in rows])


@bp.route("/account", methods=["GET", "POST"])
def account():  # type: ignore[no-untyped-def]
    """API keys (make, revoke) and the password."""
    owner = _signed_in()
    new_key = session.pop("new_key", None)
    status = 200
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "new-key":
                new_key = create_api_key(db(), owner, request.form.get("name", ""))[1]
                flash(_("Your new API key is below. Copy it now: it is not shown again."))
            elif action == "revoke":
                row = revoke_api_key(db(), owner, int(request.form.get("key_id", 0)))
                flash(_("Key %(prefix)s… revoked: it stops working at once.", prefix=row.prefix))
            elif action == "password":
                if request.form.get("new_password") != request.form.get("confirm"):
                    raise MicrotasksError(_("The two new passwords differ."))
                set_password(owner, request.form.get("current_password", ""), request.form.get("new_password", ""))
                flash(_("Password changed."))
            db().commit()
        except MicrotasksError as error:
            db().rollback()
            flash(_explain(error))
            status = error.status  # e.g. 404 for another owner's key
    return render_template("owner/account.html", owner=owner, keys=api_keys(db(), owner), new_key=new_key), status


def _explain(error: MicrotasksError) -> str:
    """An account's refusal in the page's language (the core says it in English)."""
    if error.field == "username":
        return _("That username is taken.") if error.status == 409 else _(
            "A username has 3 to 80 letters, digits, dots, dashes or underscores, starting with a letter or digit.")
    if error.field == "password":
        return ngettext("A password needs at least %(num)d character.", "A password needs at least %(num)d characters.",
                        MIN_PASSWORD)
    if error.field == "current_password":
        return _("The current password is not right.")
    return error.message


def _owned(project_id: int) -> Project:
    """The signed-in owner's project (any project for an administrator), or 404."""
    owner = _signed_in()
    found = db().get(Project, project_id)
    if found is None or not manages(owner, found):
        abort(404)
    return found


@bp.route("/projects/new", methods=["GET", "POST"])
def new_project():  # type: ignore[no-untyped-def]
    owner = _signed_in()
    if request.method == "POST":
        try:
            settings = ProjectSchema().load(_settings_from_form(request.form, None))
            project = create_project(db(), owner, settings)
        except (SchemaError, MicrotasksError) as error:
            _flash_errors(error)
            return render_template("owner/settings.html", project=None, form=request.form, spare=SPARE_ROWS,
                                   locked=False), 422
        db().commit()
        flash(_("Project created. Upload a batch of images, preview the first units, then publish."))
        return redirect(url_for("owner.project", project_id=project.id))
    form = MultiDict({"task_type": "tagging", "redundancy": 3, "languages": "en", "strategy": "depth_first",
                      "lease_seconds": 600, "gold_warmup_rate": 0.4, "gold_warmup": 20, "gold_rate": 0.1,
                      "qualification": 0})
    return render_template("owner/settings.html", project=None, form=form, spare=SPARE_ROWS, locked=False)


@bp.get("/projects/<int:project_id>")
def project(project_id: int):  # type: ignore[no-untyped-def]
    found = _owned(project_id)
    results = db().execute(
        select(ConsensusResult, Unit).join(Unit, Unit.id == ConsensusResult.unit_id)
        .where(Unit.project_id == found.id).order_by(ConsensusResult.computed_at.desc()).limit(50)
    ).all()
    quarantined = db().execute(
        select(Quarantine, Volunteer.public_id).join(Volunteer, Volunteer.id == Quarantine.volunteer_id)
        .where(Quarantine.project_id == found.id).order_by(Quarantine.id.desc())
    ).all()
    preview = [] if found.published else db().scalars(
        select(Unit).where(Unit.project_id == found.id).order_by(Unit.id).limit(12)).all()
    return render_template("owner/project.html", project=found, progress=progress(db(), found), results=results,
                           quarantined=quarantined, preview=preview,
                           can_simulate=demo_truth(state().settings, found.slug) is not None)


@bp.route("/projects/<int:project_id>/settings", methods=["GET", "POST"])
def settings(project_id: int):  # type: ignore[no-untyped-def]
    found = _owned(project_id)
    locked = progress(db(), found)["answers"] > 0
    if request.method == "POST":
        try:
            changes = ProjectSchema(partial=True).load(_settings_from_form(request.form, found))
            changed = update_project(db(), found, changes)
        except (SchemaError, MicrotasksError) as error:
            db().rollback()
            _flash_errors(error)
            return render_template("owner/settings.html", project=found, form=request.form, spare=SPARE_ROWS,
                                   locked=locked), 422
        db().commit()
        if changed & set(SERVING):
            state().dispatcher.invalidate(found.id)
        flash(_("Settings saved.") if changed else _("Nothing changed."))
        return redirect(url_for("owner.project", project_id=found.id))
    return render_template("owner/settings.html", project=found, form=_form_from_project(found), spare=SPARE_ROWS,
                           locked=locked)


@bp.post("/projects/<int:project_id>/publish")
def publish(project_id: int):  # type: ignore[no-untyped-def]
    """Open the project to volunteers (or close it again: leases in flight still count)."""
    found = _owned(project_id)
    update_project(db(), found, {"published": request.form.get("published") == "1"})
    db().commit()
    state().dispatcher.invalidate(found.id)
    flash(_("Published: volunteers can start.") if found.published else _("Unpublished: no new units are served."))
    return redirect(url_for("owner.project", project_id=found.id))


@bp.post("/projects/<int:project_id>/quarantine/<volunteer>/release")
def release_volunteer(project_id: int, volunteer: str):  # type: ignore[no-untyped-def]
    """The owner lets a quarantined volunteer's later answers count again."""
    found = _owned(project_id)
    release(db(), found.id, volunteer)
    db().commit()
    flash(_("Volunteer %(volunteer)s released: their next answers count again.", volunteer=volunteer[:8]))
    return redirect(url_for("owner.project", project_id=project_id))


@bp.post("/projects/<int:project_id>/simulate")
def simulate(project_id: int):  # type: ignore[no-untyped-def]
    """Demo projects only: fill the open units with simulated volunteers."""
    from web.demo import simulate_volunteers

    found = _owned(project_id)
    if demo_truth(state().settings, found.slug) is None:
        abort(404)  # not a demo project: there is nothing to simulate it with
    answered = simulate_volunteers(state().settings, found.slug, volunteers=3,
                                   seed=int(request.form.get("seed", 0) or 0) + found.id)
    flash(ngettext("Simulated volunteers gave %(num)d answer; consensus appears as the worker computes it.",
                   "Simulated volunteers gave %(num)d answers; consensus appears as the worker computes it.", answered))
    return redirect(url_for("owner.project", project_id=project_id))


# -- the settings form ------------------------------------------------------------------

def _flash_errors(error: SchemaError | MicrotasksError) -> None:
    if isinstance(error, MicrotasksError):
        flash(error.message)
        return
    for field, messages in sorted(error.normalized_messages().items()):
        flash(f"{field.replace('_', ' ')}: {_first(messages)}")


def _first(messages: Any) -> str:
    while isinstance(messages, (list, dict)):
        messages = next(iter(messages.values() if isinstance(messages, dict) else messages), "")
    return str(messages)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _words(text: str) -> list[str]:
    return [word.strip() for word in text.replace(",", " ").split() if word.strip()]


def _rows(form: MultiDict, prefix: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Indexed form rows (``guide-0-label`` ...) with their uploaded images; blank rows are dropped."""
    rows = []
    index = 0
    while f"{prefix}-{index}-{fields[0]}" in form:
        row: dict[str, Any] = {name: form.get(f"{prefix}-{index}-{name}", "").strip() for name in fields}
        upload = request.files.get(f"{prefix}-{index}-upload")
        row["image"] = _store_example(upload) if upload and upload.filename else (
            form.get(f"{prefix}-{index}-image") or None)
        if form.get(f"{prefix}-{index}-remove-image"):
            row["image"] = None
        if any(row[name] for name in fields):
            rows.append(row)
        index += 1
    return rows


def _store_example(upload: Any) -> str:
    """Store an example image (checked, upright, without metadata) and return its media name."""
    from microtasks.importing import store_image

    try:
        return store_image(upload.read(), state().settings.media_dir).media
    except ValueError as error:
        raise MicrotasksError(f"{upload.filename}: {error}.", field="image") from None


def _settings_from_form(form: MultiDict, project: Project | None) -> dict[str, Any]:
    """The settings form as the API's project fields (so one schema checks both)."""
    data: dict[str, Any] = {name: form.get(name, "").strip() for name in (
        "name", "description", "instructions", "strategy", "redundancy", "max_redundancy", "lease_seconds",
        "gold_warmup_rate", "gold_warmup", "gold_rate", "qualification")}
    data = {k: v for k, v in data.items() if v != ""}
    for name in ("min_redundancy", "confidence_threshold", "webhook_url"):
        data[name] = form.get(name, "").strip() or None
    data["topics"] = _words(form.get("topics", ""))
    data["languages"] = _words(form.get("languages", "")) or ["en"]
    data["published"] = form.get("published") == "1"
    if project is None:
        data["slug"] = form.get("slug", "").strip() or None
        if data["slug"] is None:
            del data["slug"]
    data["task_type"] = form.get("task_type", project.task_type.value if project else "")
    data["labels"] = _lines(form.get("labels", ""))
    data["multi_select"] = form.get("multi_select") == "1"
    data["marking_tool"] = form.get("marking_tool") or None if data["task_type"] == TaskType.marking.value else None
    data["field_guide"] = [{"label": r["label"], "text": r["text"], "image": r["image"]}
                           for r in _rows(form, "guide", ("label", "text"))]
    data["tutorial"] = [{"title": r["title"], "text": r["text"], "image": r["image"]}
                        for r in _rows(form, "step", ("title", "text"))]
    translations = {}
    for code in data["languages"][1:]:
        texts: dict[str, Any] = {name: form.get(f"tr-{code}-{name}", "").strip()
                                 for name in ("name", "description", "instructions")}
        texts = {k: v for k, v in texts.items() if v}
        labels = {}
        for line in _lines(form.get(f"tr-{code}-labels", "")):
            label, _equals, text = line.partition("=")
            if text.strip():
                labels[label.strip()] = text.strip()
        if labels:
            texts["labels"] = labels
        if texts:
            translations[code] = texts
    data["translations"] = translations
    return data


def _form_from_project(project: Project) -> MultiDict:
    """A project's settings as the form's fields."""
    form: MultiDict = MultiDict({
        "name": project.name, "description": project.description, "instructions": project.instructions,
        "task_type": project.task_type.value, "labels": "\n".join(project.labels),
        "multi_select": "1" if project.multi_select else "",
        "marking_tool": project.marking_tool.value if project.marking_tool else "",
        "redundancy": project.redundancy, "min_redundancy": project.min_redundancy or "",
        "max_redundancy": project.max_redundancy, "confidence_threshold": project.confidence_threshold or "",
        "strategy": project.strategy.value, "lease_seconds": project.lease_seconds,
        "gold_warmup_rate": project.gold_warmup_rate, "gold_warmup": project.gold_warmup,
        "gold_rate": project.gold_rate, "qualification": project.qualification,
        "topics": ", ".join(project.topics),
        "languages": ", ".join(project.languages), "webhook_url": project.webhook_url or "",
        "published": "1" if project.published else "",
    })
    for prefix, rows, fields in (("guide", project.field_guide, ("label", "text")),
                                 ("step", project.tutorial, ("title", "text"))):
        for index, row in enumerate(rows):
            for name in (*fields, "image"):
                form[f"{prefix}-{index}-{name}"] = row.get(name) or ""
    for code, texts in project.translations.items():
        for name in ("name", "description", "instructions"):
            form[f"tr-{code}-{name}"] = texts.get(name, "")
        form[f"tr-{code}-labels"] = "\n".join(f"{k} = {v}" for k, v in (texts.get("labels") or {}).items())
    return form
