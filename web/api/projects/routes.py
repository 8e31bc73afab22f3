"""Owner API: projects, batch uploads and exports."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, g, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select
from werkzeug.utils import secure_filename

from microtasks import exporting
from microtasks.models import Batch, Project, Quarantine, Volunteer
from microtasks.quarantine import release
from microtasks.projects import create_project, get_project, progress
from web.api.projects.schemas import BatchSchema, ExportArgs, ProjectSchema, QuarantineSchema, UploadSchema
from web.auth import owner_required
from web.extensions import db, state
from workers.connection import enqueue_import

blp = Blueprint("projects", __name__, url_prefix="/projects", description="Projects, batches and exports (owners).")


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
        return _with_progress(get_project(db(), project_id, g.owner))


@blp.route("/<int:project_id>/batches")
class Batches(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, BatchSchema(many=True))
    def get(self, project_id: int) -> list[Batch]:
        """The project's batches, newest first"""
        project = get_project(db(), project_id, g.owner)
        return db().scalars(select(Batch).where(Batch.project_id == project.id).order_by(Batch.id.desc())).all()

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(UploadSchema, location="files")
    @blp.response(202, BatchSchema)
    def post(self, files: dict[str, Any], project_id: int) -> Batch:
        """Upload a batch: a ZIP of images, with an optional manifest.csv/json/jsonl

        The batch is imported by a worker; poll the batch to see what was imported
        and which files were rejected, with the reason.
        """
        project = get_project(db(), project_id, g.owner)
        upload = files["file"]
        name = secure_filename(upload.filename or "") or "upload.zip"
        uploads = state().settings.instance_dir / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        path = uploads / f"{uuid.uuid4().hex}.zip"
        upload.save(path)
        batch = Batch(project_id=project.id, name=name, source_path=str(path))
        db().add(batch)
        db().commit()
        batch.job_id = enqueue_import(state().redis, batch.id)
        db().commit()
        return batch


@blp.route("/<int:project_id>/batches/<int:batch_id>")
class BatchById(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, BatchSchema)
    def get(self, project_id: int, batch_id: int) -> Batch:
        """A batch with its import report"""
        project = get_project(db(), project_id, g.owner)
        batch = db().get(Batch, batch_id)
        if batch is None or batch.project_id != project.id:
            abort(404, message=f"No batch {batch_id} in project {project_id}.")
        return batch


@blp.route("/<int:project_id>/export")
class Export(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(ExportArgs, location="query")
    @blp.response(200, content_type="text/csv", description="The export, streamed (CSV or JSON).")
    def get(self, args: dict[str, str], project_id: int) -> Response:
        """Export consensus results or raw answers as CSV or JSON"""
        project = get_project(db(), project_id, g.owner)
        kind, fmt = args["kind"], args["format"]
        sessions = state().sessions

        def generate():  # type: ignore[no-untyped-def]
            # Its own session: the request's is closed before the stream ends.
            with sessions() as session:
                yield from exporting.stream(session, session.get(Project, project.id), kind, fmt)

        mimetype = "text/csv" if fmt == "csv" else "application/json"
        filename = f"{project.slug}-{kind}.{fmt}"
        return current_app.response_class(stream_with_context(generate()), mimetype=mimetype, headers={
            "Content-Disposition": f'attachment; filename="{filename}"'})


@blp.route("/<int:project_id>/quarantine")
class QuarantineList(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, QuarantineSchema(many=True))
    def get(self, project_id: int) -> list[dict[str, Any]]:
        """Volunteers whose answers do not count, with the reason (newest first)"""
        project = get_project(db(), project_id, g.owner)
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
        project = get_project(db(), project_id, g.owner)
        entry = release(db(), project.id, volunteer)
        db().commit()
        return {"volunteer": volunteer, "reason": entry.reason, "created_at": entry.created_at,
                "released_at": entry.released_at}
