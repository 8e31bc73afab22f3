"""The JSON API, described by OpenAPI through flask-smorest."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from web.api.projects.routes import blp as projects_blp
from web.api.volunteers.routes import blp as volunteers_blp

BLUEPRINTS = (projects_blp, volunteers_blp)


def init_app(app: Flask) -> Api:
    app.config.setdefault("API_TITLE", "microtasks")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.1.0")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = Api(app, spec_kwargs={"components": {"securitySchemes": {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "VolunteerToken": {"type": "apiKey", "in": "header", "name": "X-Volunteer-Token"},
    }}})
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint, url_prefix=f"/api/v1{blueprint.url_prefix or ''}")
    return api
