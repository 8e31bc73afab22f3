"""Schemas of the batch API: uploads and their import reports."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from microtasks.models import BatchKind
from web.api.schemas import UtcDateTime


class BatchSchema(Schema):
    id = fields.Integer()
    project_id = fields.Integer()
    name = fields.String(metadata={"description": "The uploaded file's name."})
    kind = fields.Enum(BatchKind, by_value=True, metadata={
        "description": "archive: a ZIP of images; tiles: one large image cut into overlapping tiles."})
    options = fields.Dict(metadata={"description": "Import options, e.g. tile_size and overlap for tiles."})
    state = fields.Function(lambda batch: batch.state.value,
                            metadata={"description": "pending, processing, done or failed."})
    total = fields.Integer(metadata={"description": "Entries (or tiles) to process; known once processing starts."})
    processed = fields.Integer(metadata={"description": "Entries (or tiles) processed so far: the progress."})
    imported = fields.Integer(metadata={"description": "Units created (they appear all at once when done)."})
    rejected = fields.List(fields.Dict(), metadata={"description": "Files not imported: {name, reason} each."})
    error = fields.String(allow_none=True, metadata={"description": "Why the batch as a whole failed."})
    created_at = UtcDateTime()
    finished_at = UtcDateTime(allow_none=True)


class UploadSchema(Schema):
    """A multipart form: the file, and for a single image the tiling options."""

    file = Upload(required=True, metadata={
        "description": "A ZIP of JPEG/PNG/WebP images with an optional manifest.csv/json/jsonl, or one large "
                       "JPEG/PNG/WebP image to cut into overlapping tiles (one unit per tile)."})
    tile_size = fields.Integer(load_default=512, validate=validate.Range(min=64, max=4096), metadata={
        "description": "Tiles only: the side of a square tile, in pixels of the image."})
    overlap = fields.Integer(load_default=64, validate=validate.Range(min=0), metadata={
        "description": "Tiles only: pixels shared by neighbouring tiles (less than tile_size)."})

    @validates_schema
    def _overlap_within_tile(self, data: dict, **_: object) -> None:
        if data.get("overlap", 64) >= data.get("tile_size", 512):
            raise ValidationError("'overlap' must be less than 'tile_size'.", "overlap")
