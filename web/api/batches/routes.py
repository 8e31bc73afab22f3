"""Owner API: batch uploads (a ZIP of images, or one large image cut into tiles) and their import reports."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict
from werkzeug.utils import secure_filename

from microtasks.importing import HEAD_BYTES, upload_kind
from microtasks.models import Batch, BatchKind
from web.api.batches.schemas import BatchSchema, UploadSchema
from web.auth import owned_project, owner_required
from web.extensions import db, state
from workers.connection import enqueue_import


class MultipartParser(FlaskParser):
    """The ``files`` location reads a whole multipart form: its files and its plain fields together."""

    def load_files(self, req, schema):  # type: ignore[no-untyped-def]
        return self._makeproxy(CombinedMultiDict([req.files, req.form]), schema)


class UploadBlueprint(Blueprint):
    ARGUMENTS_PARSER = MultipartParser()


blp = UploadBlueprint("batches", __name__, url_prefix="/projects",
                      description="Batch uploads and their import reports, with progress (owners).")


@blp.route("/<int:project_id>/batches")
class Batches(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, BatchSchema(many=True))
    def get(self, project_id: int) -> list[Batch]:
        """The project's batches, newest first"""
        project = owned_project(project_id)
        return db().scalars(select(Batch).where(Batch.project_id == project.id).order_by(Batch.id.desc())).all()

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(UploadSchema, location="files")
    @blp.response(202, BatchSchema)
    def post(self, form: dict[str, Any], project_id: int) -> Batch:
        """Upload a batch: a ZIP of images (optional manifest.csv/json/jsonl), or one large image to cut into tiles

        A ZIP makes an ``archive`` batch; a single JPEG, PNG or WebP image makes a ``tiles``
        batch, cut into ``tile_size`` tiles that overlap by ``overlap`` pixels (512 and 64
        by default); any other file (empty, a document, another format) is refused at once
        with a 422. A worker imports the batch: poll it to follow ``processed`` of
        ``total``, then see what was imported and which files were rejected, with the
        reason. The units appear all at once when the batch is done.
        """
        project = owned_project(project_id)
        upload = form["file"]
        name = (secure_filename(upload.filename or "") or "upload")[:255]  # the name column's length
        kind = upload_kind(name, upload.stream.read(HEAD_BYTES))  # refused (422) before anything is stored
        upload.stream.seek(0)
        uploads = state().settings.instance_dir / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        path = uploads / f"{uuid.uuid4().hex}.upload"
        upload.save(path)
        if kind is BatchKind.tiles:
            batch = Batch(project_id=project.id, name=name, kind=BatchKind.tiles, source_path=str(path),
                          options={"tile_size": form["tile_size"], "overlap": form["overlap"]})
        else:
            batch = Batch(project_id=project.id, name=name, kind=BatchKind.archive, source_path=str(path), options={})
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
        """A batch with its progress and import report"""
        project = owned_project(project_id)
        batch = db().get(Batch, batch_id)
        if batch is None or batch.project_id != project.id:
            abort(404, message=f"No batch {batch_id} in project {project_id}.")
        return batch
