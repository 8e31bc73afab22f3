"""Schemas of the owner API: projects and exports (batch schemas are in web.api.batches)."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from microtasks.models import MarkingTool, Strategy, TaskType
from web.api.schemas import UtcDateTime


class ProgressSchema(Schema):
    units = fields.Integer()
    open = fields.Integer()
    retired = fields.Integer()
    answers = fields.Integer()
    results = fields.Integer()


MEDIA_NAME = validate.Regexp(r"^[0-9a-f]{64}(\.[a-z0-9]+)+$", error="Not a stored image; upload it first.")


class GuideEntrySchema(Schema):
    label = fields.String(required=True, validate=validate.Length(min=1, max=100))
    text = fields.String(load_default="", validate=validate.Length(max=2000))
    image = fields.String(load_default=None, allow_none=True, validate=MEDIA_NAME,
                          metadata={"description": "An example image (a stored media name)."})


class TutorialStepSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    text = fields.String(load_default="", validate=validate.Length(max=2000))
    image = fields.String(load_default=None, allow_none=True, validate=MEDIA_NAME)


class TranslationSchema(Schema):
    name = fields.String(validate=validate.Length(max=200))
    description = fields.String(validate=validate.Length(max=10_000))
    instructions = fields.String(validate=validate.Length(max=10_000))
    labels = fields.Dict(keys=fields.String(), values=fields.String(validate=validate.Length(min=1, max=100)),
                         metadata={"description": "Each label's name in this language."})
    field_guide = fields.List(fields.Nested(GuideEntrySchema), validate=validate.Length(max=50))
    tutorial = fields.List(fields.Nested(TutorialStepSchema), validate=validate.Length(max=20))


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
    max_redundancy = fields.Integer(load_default=None, validate=validate.Range(min=1, max=100), metadata={
        "description": "The most answers a unit may ask for when its volunteers disagree (default: the larger "
                       "of 10 and the redundancy)."})
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
    qualification = fields.Integer(load_default=0, validate=validate.Range(min=0, max=50), metadata={
        "description": "Gold units a volunteer must pass (score at least 0.5) before their answers count; they are "
                       "served gold first, and listed in the quarantine as qualifying until then. 0: none. "
                       "Applies to volunteers who start after it is set; give the project more gold units than this."})
    field_guide = fields.List(fields.Nested(GuideEntrySchema), load_default=list, validate=validate.Length(max=50),
                              metadata={"description": "Help and an example image per label, for volunteers."})
    tutorial = fields.List(fields.Nested(TutorialStepSchema), load_default=list, validate=validate.Length(max=20),
                           metadata={"description": "Steps shown on a volunteer's first visit."})
    languages = fields.List(fields.String(validate=validate.Length(min=2, max=20)), load_default=lambda: ["en"],
                            validate=validate.Length(min=1, max=10),
                            metadata={"description": "Languages the texts are given in; the first is the default."})
    translations = fields.Dict(keys=fields.String(), values=fields.Nested(TranslationSchema), load_default=dict,
                               metadata={"description": "Texts in the other languages, by language code."})
    topics = fields.List(fields.String(validate=validate.Length(min=1, max=40)), load_default=list,
                         validate=validate.Length(max=10),
                         metadata={"description": "Topics volunteers can find the project by."})
    webhook_url = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"}, require_tld=False,
                             metadata={"description": "Receives unit.retired and project.completed events."})
    webhook_secret = fields.String(dump_only=True, allow_none=True, metadata={
        "description": "Key of the HMAC-SHA256 signature in each webhook's X-Microtasks-Signature header "
                       "(null without a webhook_url)."})
    published = fields.Boolean(load_default=False, metadata={
        "description": "Volunteers are served only once the project is published (preview the first units first)."})
    created_at = UtcDateTime(dump_only=True)
    progress = fields.Nested(ProgressSchema, dump_only=True)



class ProjectUpdateSchema(ProjectSchema):
    """A project's changes: any of its fields."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(partial=True, **kwargs)  # type: ignore[arg-type]


class QuarantineSchema(Schema):
    volunteer = fields.String(metadata={"description": "The volunteer's pseudonymous id."})
    reason = fields.String()
    created_at = UtcDateTime()
    released_at = UtcDateTime(allow_none=True)


class ImageUploadSchema(Schema):
    file = Upload(required=True, metadata={"description": "A JPEG, PNG or WebP image."})


class StoredImageSchema(Schema):
    media = fields.String(metadata={"description": "The stored image's name, for `image` in the field guide "
                                                   "and tutorial."})
    url = fields.String()
    width = fields.Integer()
    height = fields.Integer()
