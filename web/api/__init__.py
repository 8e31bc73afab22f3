"""The JSON API, described by OpenAPI through flask-smorest."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, make_response, render_template, send_from_directory
from flask_smorest import Api

from web.api.batches.routes import blp as batches_blp
from web.api.exports.routes import blp as exports_blp
from web.api.keys.routes import blp as keys_blp
from web.api.projects.routes import blp as projects_blp
from web.api.stats.routes import blp as stats_blp
from web.api.volunteers.routes import blp as volunteers_blp

BLUEPRINTS = (batches_blp, exports_blp, keys_blp, projects_blp, stats_blp, volunteers_blp)


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
    _docs_page(app)
    return api


def _docs_page(app: Flask) -> None:
    """An interactive page over the OpenAPI document: Swagger UI, served from this machine (no CDN).

    flask-swagger-ui carries the Swagger UI files; its own page is not used, as it
    configures Swagger UI with an inline script, which our Content-Security-Policy forbids.
    """
    import flask_swagger_ui

    swagger_ui_path = Path(flask_swagger_ui.__file__).parent / "dist"  # only its Swagger UI 5 files

    @app.get("/api/docs", endpoint="api_docs")
    def docs():  # type: ignore[no-untyped-def]
        response = make_response(render_template("api_docs.html"))
        # Swagger UI sets style attributes in its markup; nothing else on the page is inline.
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
        return response

    @app.get("/api/docs/assets/<path:name>", endpoint="api_docs_assets")
    def assets(name: str):  # type: ignore[no-untyped-def]
        return send_from_directory(swagger_ui_path, name, max_age=86400)
