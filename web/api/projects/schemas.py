"""Schemas of the owner API: projects, batches, exports."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from microtasks.exporting import FORMATS, KINDS
from microtasks.models import MarkingTool, Strategy, TaskType


class ProgressSchema(Schema):
    units = fields.Integer()
    open = fields.Integer()
    retired = fields.Integer()
    answers = fields.Integer()
    results = fields.Integer()


class ProjectSchema(Schema):
    id = fields.Integer(dump_only=True)
    slug = fields.String(validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,79}$",
                                                  error="Use lower-case letters, digits and dashes."))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(load_default="", validate=validate.Length(max=10_000))
    instructions = fields.String(load_default="", validate=validate.Length(max=10_000))
    task_type = fields.Enum(TaskType, by_value=True, required=True)
    labels = fields.List(fields.String(validate=validate.Length(min=1, max=100)),
                         load_default=list, validate=validate.Length(max=50))
    multi_select = fields.Boolean(load_default=False)
    marking_tool = fields.Enum(MarkingTool, by_value=True, allow_none=True)
    redundancy = fields.Integer(load_default=3, validate=validate.Range(min=1, max=100))
    lease_seconds = fields.Integer(load_default=600, validate=validate.Range(min=30, max=86_400))
    max_redundancy = fields.Integer(load_default=10, validate=validate.Range(min=1, max=100))
    min_redundancy = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=100),
                                    metadata={"description": "Answers after which a confident unit may retire early."})
    confidence_threshold = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0.5, max=1),
                                        metadata={"description": "Consensus confidence that retires a unit early; "
                                                  "below it a full unit asks for more answers. Null: off."})
    strategy = fields.Enum(Strategy, by_value=True, load_default=Strategy.depth_first, metadata={
        "description": "Order of serving: finish started units first, spread evenly, random, or owner priority."})
    gold_warmup_rate = fields.Float(load_default=0.4, validate=validate.Range(min=0, max=1),
                                    metadata={"description": "Share of gold among a new volunteer's first units."})
    gold_warmup = fields.Integer(load_default=20, validate=validate.Range(min=0, max=10_000),
                                 metadata={"description": "How many first units use the warm-up gold rate."})
    gold_rate = fields.Float(load_default=0.1, validate=validate.Range(min=0, max=1),
                             metadata={"description": "Share of gold after the warm-up."})
    created_at = fields.DateTime(dump_only=True)
    progress = fields.Nested(ProgressSchema, dump_only=True)

    @validates_schema
    def _consistent(self, data: dict, **_: object) -> None:
        if data.get("task_type") is TaskType.marking and data.get("multi_select"):
            raise ValidationError("'multi_select' is only for tagging projects.", "multi_select")
        if data.get("redundancy", 3) > data.get("max_redundancy", 10):
            raise ValidationError("'max_redundancy' must be at least 'redundancy'.", "max_redundancy")


class BatchSchema(Schema):
    id = fields.Integer()
    project_id = fields.Integer()
    name = fields.String()
    state = fields.Function(lambda batch: batch.state.value)
    imported = fields.Integer()
    rejected = fields.List(fields.Dict(), metadata={"description": "Files not imported, with the reason."})
    error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)


class UploadSchema(Schema):
    file = Upload(required=True, metadata={"description": "A ZIP of images with an optional manifest."})


class ExportArgs(Schema):
    kind = fields.String(load_default="consensus", validate=validate.OneOf(KINDS))
    format = fields.String(load_default="csv", validate=validate.OneOf(FORMATS))


class QuarantineSchema(Schema):
    volunteer = fields.String(metadata={"description": "The volunteer's pseudonymous id."})
    reason = fields.String()
    created_at = fields.DateTime()
    released_at = fields.DateTime(allow_none=True)
