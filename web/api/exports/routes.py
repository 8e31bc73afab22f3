"""Owner API: exports made by a worker (a ZIP with its provenance, with progress), or streamed directly."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, send_file, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from microtasks import exporting
from microtasks.models import Export, ExportState, Project
from web.api.exports.schemas import ExportRequestSchema, ExportSchema, StreamArgsSchema
from web.auth import owned_project, owner_required
from web.extensions import db, state
from workers.exports import enqueue_export, exports_dir

blp = Blueprint("exports", __name__, url_prefix="/projects",
                description="Exports of consensus results, raw answers, volunteer reliability and gold (owners).")

#: The list shows this many of a project's latest exports.
LIST_LIMIT = 100


def _export(project_id: int, export_id: int) -> Export:
    """One of the owner's exports, or 404 (also when the project is another owner's)."""
    project = owned_project(project_id)
    export = db().get(Export, export_id)
    if export is None or export.project_id != project.id:
        abort(404, message=f"No export {export_id} in project {project_id}.")
    return export


@blp.route("/<int:project_id>/export")
class ExportStream(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(StreamArgsSchema, location="query")
    @blp.response(200, content_type="text/csv", description="The export, streamed as it is read.")
    def get(self, args: dict[str, str], project_id: int) -> Response:
        """Download an export at once, streamed (CSV, JSON Lines or JSON)

        For large projects, Parquet, GeoJSON or COCO, and a provenance file beside the data,
        start an export instead (``POST .../exports``).
        """
        project = owned_project(project_id)
        kind, fmt = args["kind"], args["format"]
        exporting.validate(project, kind, fmt, exporting.STREAM_FORMATS)
        sessions = state().sessions

        def generate():  # type: ignore[no-untyped-def]
            # A session of its own: the request's is closed before the stream ends.
            with sessions() as session:
                yield from exporting.stream(session, session.get(Project, project.id), kind, fmt)

        name = exporting.data_name(project, kind, fmt)
        return current_app.response_class(stream_with_context(generate()), mimetype=exporting.MEDIA_TYPES[fmt],
                                          headers={"Content-Disposition": f'attachment; filename="{name}"'})


@blp.route("/<int:project_id>/exports")
class Exports(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, ExportSchema(many=True))
    def get(self, project_id: int) -> list[Export]:
        """The project's exports, newest first (the latest 100)"""
        project = owned_project(project_id)
        return list(db().scalars(select(Export).where(Export.project_id == project.id)
                                 .order_by(Export.id.desc()).limit(LIST_LIMIT)))

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(ExportRequestSchema)
    @blp.response(202, ExportSchema)
    def post(self, args: dict[str, Any], project_id: int) -> Export:
        """Start an export: a worker writes a ZIP of the data file and its provenance.json

        Poll the export for its progress (``rows`` of ``total``); once ``state`` is done,
        ``download_url`` gives the ZIP. GeoJSON and COCO are for the marks of a marking
        project (consensus or answers); any other combination is a 422.
        """
        project = owned_project(project_id)
        exporting.validate(project, args["kind"], args["format"], exporting.ARCHIVE_FORMATS)
        export = Export(project_id=project.id, kind=args["kind"], format=args["format"], state=ExportState.pending)
        db().add(export)
        db().commit()
        export.job_id = enqueue_export(state().redis, export.id)
        db().commit()
        return export


@blp.route("/<int:project_id>/exports/<int:export_id>")
class ExportById(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, ExportSchema)
    def get(self, project_id: int, export_id: int) -> Export:
        """An export: its state, progress and, once done, provenance and download link"""
        return _export(project_id, export_id)


@blp.route("/<int:project_id>/exports/<int:export_id>/download")
class ExportDownload(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, content_type="application/zip", description="The ZIP: the data file and provenance.json.")
    @blp.alt_response(409, description="The export is not done yet (or failed).")
    def get(self, project_id: int, export_id: int) -> Response:
        """Download a finished export: a ZIP of the data file and its provenance.json"""
        export = _export(project_id, export_id)
        if export.state is not ExportState.done or not export.path:
            message = f"Export {export_id} failed: {export.error}" if export.state is ExportState.failed else \
                f"Export {export_id} is {export.state.value}; download it once it is done."
            abort(409, message=message)
        path = exports_dir(state().settings) / export.path
        if not path.is_file():
            abort(404, message=f"The file of export {export_id} is gone; start a new export.")
        return send_file(path, mimetype="application/zip", as_attachment=True, download_name=path.name)
