"""Owner API: your API keys (make one per program; revoke one that leaked)."""

from __future__ import annotations

from typing import Any

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from microtasks.accounts import api_keys, create_api_key, revoke_api_key
from microtasks.models import ApiKey
from web.api.keys.schemas import ApiKeySchema, NewApiKeySchema
from web.auth import owner_required
from web.extensions import db

blp = Blueprint("keys", __name__, url_prefix="/keys", description="Your API keys (owners).")


@blp.route("")
class Keys(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, ApiKeySchema(many=True))
    def get(self) -> list[ApiKey]:
        """List your API keys (never the keys themselves)"""
        return api_keys(db(), g.owner)

    @blp.doc(security=[{"ApiKey": []}])
    @blp.arguments(ApiKeySchema)
    @blp.response(201, NewApiKeySchema)
    def post(self, data: dict[str, Any]) -> ApiKey:
        """Make a new API key; the response shows it once"""
        row, key = create_api_key(db(), g.owner, data["name"])
        db().commit()
        row.key = key  # type: ignore[attr-defined]  # for this response only
        return row


@blp.route("/<int:key_id>")
class KeyById(MethodView):
    decorators = [owner_required]

    @blp.doc(security=[{"ApiKey": []}])
    @blp.response(200, ApiKeySchema)
    def delete(self, key_id: int) -> ApiKey:
        """Revoke an API key: it stops working at once"""
        row = revoke_api_key(db(), g.owner, key_id)
        db().commit()
        return row
