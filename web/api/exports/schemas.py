"""Schemas of the exports resource."""

from __future__ import annotations

from flask import url_for
from marshmallow import Schema, fields, validate

from microtasks.exporting import ARCHIVE_FORMATS, KINDS, STREAM_FORMATS
from microtasks.models import Export, ExportState
from web.api.schemas import UtcDateTime

_KIND = ("What to export: consensus results (with confidence and agreement), raw answers, volunteer "
         "reliability (pseudonymous ids) or gold performance.")


class ExportRequestSchema(Schema):
    kind = fields.String(load_default="consensus", validate=validate.OneOf(KINDS), metadata={"description": _KIND})
    format = fields.String(load_default="csv", validate=validate.OneOf(ARCHIVE_FORMATS), metadata={
        "description": "csv (flat), jsonl, parquet; geojson and coco for the marks of a marking project "
                       "(consensus or answers)."})


class StreamArgsSchema(Schema):
    kind = fields.String(load_default="consensus", validate=validate.OneOf(KINDS), metadata={"description": _KIND})
    format = fields.String(load_default="csv", validate=validate.OneOf(STREAM_FORMATS), metadata={
        "description": "csv (flat), jsonl (flat, typed) or json (one array; consensus and answers keep their "
                       "nested result or payload)."})


def _download_url(export: Export) -> str | None:
    if export.state is not ExportState.done:
        return None
    return url_for("exports.ExportDownload", project_id=export.project_id, export_id=export.id)


class ExportSchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True)
    kind = fields.String(dump_only=True)
    format = fields.String(dump_only=True)
    state = fields.Function(lambda export: export.state.value, dump_only=True,
                            metadata={"description": "pending, running, done or failed."})
    rows = fields.Integer(dump_only=True, metadata={
        "description": "Source records (results, answers or volunteers) exported so far."})
    total = fields.Integer(dump_only=True, metadata={"description": "Source records to export."})
    progress = fields.Function(lambda export: round(export.rows / export.total, 4) if export.total else (
        1.0 if export.state is ExportState.done else 0.0), dump_only=True,
        metadata={"description": "Share done, from 0 to 1."})
    provenance = fields.Dict(dump_only=True, metadata={
        "description": "Once done: algorithms and parameters, code version, time, counts and columns (also "
                       "provenance.json in the ZIP)."})
    error = fields.String(dump_only=True, allow_none=True)
    created_at = UtcDateTime(dump_only=True)
    finished_at = UtcDateTime(dump_only=True, allow_none=True)
    download_url = fields.Function(_download_url, dump_only=True, allow_none=True,
                                   metadata={"description": "The ZIP, once done."})
