"""Schemas of a project's statistics (owners) and public summary (anyone)."""

from __future__ import annotations

from marshmallow import Schema, fields


class UnitStatesSchema(Schema):
    open = fields.Integer(metadata={"description": "Open units with no counted answer and no live lease."})
    in_progress = fields.Integer(metadata={"description": "Open units with counted answers or a live lease."})
    retired = fields.Integer()
    total = fields.Integer(metadata={"description": "Open, in progress and retired (gold units apart)."})
    gold = fields.Integer(metadata={"description": "Gold units (known answers, never retired)."})


class AnswerTotalsSchema(Schema):
    total = fields.Integer()
    counted = fields.Integer()
    last_hour = fields.Integer(metadata={"description": "Counted answers in the last hour."})
    last_24h = fields.Integer(metadata={"description": "Answers in the last 24 hours."})


class AnswersHourSchema(Schema):
    hour = fields.String(metadata={"description": "Start of the UTC hour (ISO 8601)."})
    answers = fields.Integer()
    counted = fields.Integer()


class HistogramBinSchema(Schema):
    low = fields.Float(metadata={"description": "Lower edge, included."})
    high = fields.Float(metadata={"description": "Upper edge, excluded (included for the last bin)."})
    count = fields.Integer()


class HistogramSchema(Schema):
    results = fields.Integer(metadata={"description": "Consensus results with a value."})
    mean = fields.Float(allow_none=True)
    histogram = fields.List(fields.Nested(HistogramBinSchema), metadata={"description": "Ten equal bins over [0, 1]."})


class VolunteersHourSchema(Schema):
    hour = fields.String()
    volunteers = fields.Integer()


class VolunteerBinSchema(Schema):
    bin = fields.String(metadata={"description": "Answers per volunteer: 1, 2-5, 6-20, 21-100 or >100."})
    volunteers = fields.Integer()


class VolunteerActivitySchema(Schema):
    total = fields.Integer()
    last_24h = fields.Integer()
    active_per_hour = fields.List(fields.Nested(VolunteersHourSchema))
    answers_per_volunteer = fields.List(fields.Nested(VolunteerBinSchema))
    quarantined = fields.Integer(metadata={"description": "Volunteers in quarantine now."})


class EtaSchema(Schema):
    answers_needed = fields.Integer(metadata={"description": "Answers the open units still need."})
    answers_per_hour = fields.Float(allow_none=True, metadata={"description": "Recent rate of counted answers."})
    rate_window = fields.String(allow_none=True, metadata={"description": "1h, 24h, or null with no rate."})
    seconds = fields.Float(allow_none=True, metadata={"description": "Time left at that rate; null with no rate."})
    finish_at = fields.String(allow_none=True)


class GoldHourSchema(Schema):
    hour = fields.String()
    answers = fields.Integer()
    mean_score = fields.Float(allow_none=True)


class GoldStatsSchema(Schema):
    answers = fields.Integer()
    mean_score = fields.Float(allow_none=True)
    pass_rate = fields.Float(allow_none=True, metadata={"description": "Share of gold answers scoring 0.5 or more."})
    score_per_hour = fields.List(fields.Nested(GoldHourSchema))


class ProjectStatsSchema(Schema):
    generated_at = fields.String()
    units = fields.Nested(UnitStatesSchema)
    answers = fields.Nested(AnswerTotalsSchema)
    answers_per_hour = fields.List(fields.Nested(AnswersHourSchema), metadata={
        "description": "The last 48 UTC hours, oldest first."})
    confidence = fields.Nested(HistogramSchema)
    agreement = fields.Nested(HistogramSchema)
    volunteers = fields.Nested(VolunteerActivitySchema)
    eta = fields.Nested(EtaSchema)
    gold = fields.Nested(GoldStatsSchema)


class ConsensusMethodSchema(Schema):
    name = fields.String()
    description = fields.String()


class LabelCountSchema(Schema):
    label = fields.String()
    units = fields.Integer()


class MarksSummarySchema(Schema):
    total = fields.Integer()
    units_with_marks = fields.Integer()
    units_without_marks = fields.Integer()


class PublicSummarySchema(Schema):
    name = fields.String()
    slug = fields.String()
    description = fields.String()
    task_type = fields.String()
    units = fields.Nested(UnitStatesSchema)
    percent_complete = fields.Float()
    answers = fields.Integer()
    volunteers = fields.Integer()
    results = fields.Integer()
    mean_confidence = fields.Float(allow_none=True)
    methods = fields.List(fields.Nested(ConsensusMethodSchema))
    labels = fields.List(fields.Nested(LabelCountSchema), allow_none=True, metadata={
        "description": "Tagging: units per consensus label."})
    marks = fields.Nested(MarksSummarySchema, allow_none=True, metadata={
        "description": "Marking: consensus marks in all, units with and without any."})
