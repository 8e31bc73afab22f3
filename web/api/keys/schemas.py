"""Schemas of the API keys resource."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from web.api.schemas import UtcDateTime


class ApiKeySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String(load_default="", validate=validate.Length(max=100),
                         metadata={"description": "What the key is for, e.g. 'upload script'."})
    prefix = fields.String(dump_only=True, metadata={"description": "The key's first characters."})
    created_at = UtcDateTime(dump_only=True)
    last_used_at = UtcDateTime(dump_only=True, allow_none=True,
                               metadata={"description": "To within five minutes."})
    revoked_at = UtcDateTime(dump_only=True, allow_none=True)


class NewApiKeySchema(ApiKeySchema):
    key = fields.String(dump_only=True, metadata={"description": "The key itself: shown this once, never stored."})
