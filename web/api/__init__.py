"""The JSON API, described by OpenAPI through flask-smorest."""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

from flask import Flask, abort, make_response, render_template, request, send_from_directory
from flask_smorest import Api
from werkzeug.routing import IntegerConverter

from microtasks.importing import load_json
from web.api.batches.routes import blp as batches_blp
from web.api.exports.routes import blp as exports_blp
from web.api.keys.routes import blp as keys_blp
from web.api.projects.routes import blp as projects_blp
from web.api.schemas import MAX_ID
from web.api.stats.routes import blp as stats_blp
from web.api.volunteers.routes import blp as volunteers_blp

BLUEPRINTS = (batches_blp, exports_blp, keys_blp, projects_blp, stats_blp, volunteers_blp)


class RowIdConverter(IntegerConverter):
    """``<int:...>`` in our URLs names a row: a number past :data:`MAX_ID` names none (404), never looked up.

    The database could not even compare such a number with its id columns (an error, not "no such row").
    """

    def __init__(self, map: object, fixed_digits: int = 0, min: int | None = None, max: int | None = MAX_ID,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)  # type: ignore[arg-type]


def init_app(app: Flask) -> Api:
    app.config.setdefault("API_TITLE", "microtasks")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.1.0")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.url_map.converters["int"] = RowIdConverter  # for every page's and call's URLs: set before any is added
    api = Api(app, spec_kwargs={"components": {"securitySchemes": {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "VolunteerToken": {"type": "apiKey", "in": "header", "name": "X-Volunteer-Token"},
    }}})
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint, url_prefix=f"/api/v1{blueprint.url_prefix or ''}")
    app.before_request(refuse_unstorable_input)
    _docs_page(app)
    return api


def refuse_unstorable_input() -> None:
    """An API call carrying what no database stores, or JSON beyond JSON, is a 400 before any view reads it.

    A NUL character in the path, the query or a form field; and a JSON body that
    :func:`microtasks.importing.load_json` refuses: ``NaN``, a NUL or half a surrogate
    pair in a text, nesting too deep for the parser. Malformed JSON is left to the view's
    parser, which answers 400 in its own words.
    """
    if not request.path.startswith("/api/"):
        return
    texts = chain([request.path], *request.args.items(multi=True))
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        texts = chain(texts, *request.form.items(multi=True))
    if any("\0" in text for text in texts):
        abort(400, description="A NUL character in the request; no text may contain one.")
    if request.is_json:
        try:
            load_json(request.get_data(cache=True))
        except json.JSONDecodeError:
            return
        except ValueError as error:
            abort(400, description=f"Invalid JSON body: {error}.")


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
