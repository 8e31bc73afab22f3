"""Owner API: projects (batch uploads are in web.api.batches, exports in web.api.exports)."""

from __future__ import annotations

from typing import Any

from flask import g, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from microtasks.errors import ValidationError
from microtasks.importing import store_image
from microtasks.models import Project, Quarantine, Volunteer
from microtasks.quarantine import release
from microtasks.projects import SERVING, create_project, progress, update_project
from web.api.projects.schemas import (
    ImageUploadSchema,
    ProjectSchema,
    ProjectUpdateSchema,
    QuarantineSchema,
    StoredImageSchema,
)
from web.auth import owned_project, owner_required
from web.extensions import db, state

blp = Blueprint("projects", __name__, url_prefix="/projects", description="Projects (owners).")


def _with_progress(project: Project) -> Project:
    project.progress = progress(db(), project)  # type: ignore[attr-defined]
    return project


@blp.route("")
class Projects(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, ProjectSchema(many=True))
    def get(self) -> list[Project]:
        """List your projects with their progress"""
        projects = db().scalars(select(Project).where(Project.owner_id == g.owner.id).order_by(Project.id)).all()
        return [_with_progress(p) for p in projects]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(ProjectSchema)
    @blp.response(201, ProjectSchema)
    def post(self, settings: dict[str, Any]) -> Project:
        """Create a project"""
        project = create_project(db(), g.owner, settings)
        db().commit()
        return _with_progress(project)


@blp.route("/<int:project_id>")
class ProjectById(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, ProjectSchema)
    def get(self, project_id: int) -> Project:
        """One of your projects with its progress"""
        return _with_progress(owned_project(project_id))

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(ProjectUpdateSchema)
    @blp.response(200, ProjectSchema)
    def patch(self, changes: dict[str, Any], project_id: int) -> Project:
        """Change a project's settings, or publish it (``{"published": true}``)

        The task type, labels, multi-select and marking tool cannot change once the
        project has answers (409). A new redundancy applies at once to every unit
        without its own.
        """
        project = owned_project(project_id)
        changes.pop("slug", None)
        changed = update_project(db(), project, changes)
        db().commit()
        if changed & set(SERVING):
            state().dispatcher.invalidate(project.id)
        return _with_progress(project)


@blp.route("/<int:project_id>/images")
class ProjectImages(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(ImageUploadSchema, location="files")
    @blp.response(201, StoredImageSchema)
    def post(self, files: dict[str, Any], project_id: int) -> dict[str, Any]:
        """Store an example image for the field guide or the tutorial

        The image is checked, turned upright and stripped of its metadata like a
        unit's; use the returned ``media`` as an entry's ``image``.
        """
        owned_project(project_id)
        try:
            stored = store_image(files["file"].read(), state().settings.media_dir)
        except ValueError as error:
            raise ValidationError(f"{files['file'].filename}: {error}.", field="file") from None
        return {"media": stored.media, "url": url_for("media", name=stored.media), "width": stored.width,
                "height": stored.height}


@blp.route("/<int:project_id>/quarantine")
class QuarantineList(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, QuarantineSchema(many=True))
    def get(self, project_id: int) -> list[dict[str, Any]]:
        """Volunteers whose answers do not count, with the reason (newest first)"""
        project = owned_project(project_id)
        rows = db().execute(select(Quarantine, Volunteer.public_id).join(Volunteer, Volunteer.id == Quarantine.volunteer_id)
                            .where(Quarantine.project_id == project.id).order_by(Quarantine.id.desc())).all()
        return [{"volunteer": public_id, "reason": entry.reason, "created_at": entry.created_at,
                 "released_at": entry.released_at} for entry, public_id in rows]


@blp.route("/<int:project_id>/quarantine/<volunteer>/release")
class QuarantineRelease(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, QuarantineSchema)
    def post(self, project_id: int, volunteer: str) -> dict[str, Any]:
        """Release a volunteer: their later answers count again"""
        project = owned_project(project_id)
        entry = release(db(), project.id, volunteer)
        db().commit()
        return {"volunteer": volunteer, "reason": entry.reason, "created_at": entry.created_at,
                "released_at": entry.released_at}
