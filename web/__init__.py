"""The Flask app: JSON API, volunteer pages and owner pages over the microtasks core."""

from __future__ import annotations

import gzip
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, request, send_from_directory

from microtasks.config import Settings
from microtasks.db import session_factory
from microtasks.serving import Dispatcher
from web.extensions import State, close_db, init_errors
from workers.connection import connect


def _secret_key(settings: Settings) -> str:
    """The instance's secret, made once and kept in the instance folder (set SECRET_KEY on several machines)."""
    path = settings.instance_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


#: Responses worth compressing: text. Images and archives are compressed already.
COMPRESSIBLE = frozenset({"text/html", "text/css", "text/javascript", "application/javascript", "application/json",
                          "image/svg+xml"})
#: Smaller bodies gain less than the gzip header costs.
COMPRESS_MIN_BYTES = 500


def compress(response: Response) -> Response:
    """Gzip a text response for a client that accepts gzip (issue 7: HTML, CSS and JS on slow networks).

    Static files are read and compressed; streamed bodies (exports), partial and not-modified
    responses, already encoded ones and ``Cache-Control: no-transform`` pass unchanged. The ETag
    becomes weak, as the compressed bytes differ (If-None-Match compares weakly, so 304s still work).
    """
    if response.mimetype not in COMPRESSIBLE:
        return response
    response.vary.add("Accept-Encoding")
    if (response.status_code != 200 or "Content-Encoding" in response.headers or response.cache_control.no_transform
            or (response.is_streamed and not response.direct_passthrough) or not request.accept_encodings["gzip"]):
        return response
    response.direct_passthrough = False  # a static file: read it to compress it
    data = response.get_data()
    if len(data) < COMPRESS_MIN_BYTES:
        return response
    response.set_data(gzip.compress(data, compresslevel=6, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    etag, weak = response.get_etag()
    if etag and not weak:
        response.set_etag(etag, weak=True)
    return response


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``MICROTASKS_*`` environment variables, then ``config``.

    Settings: ``DATABASE_URL``, ``REDIS_URL``, ``INSTANCE_DIR``, ``MEDIA_DIR`` (see
    :class:`microtasks.config.Settings`), ``SECRET_KEY``, ``MAX_CONTENT_LENGTH``.
    """
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=512 * 1024 * 1024, JSON_SORT_KEYS=False,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.config.from_prefixed_env("MICROTASKS")
    if config:
        app.config.update(config)
    settings: Settings = app.config.get("SETTINGS") or Settings.from_env()
    if not app.config.get("SECRET_KEY"):
        import os

        app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or _secret_key(settings)
    redis = app.config.get("REDIS") or connect(settings)
    app.extensions["microtasks"] = State(settings=settings, sessions=session_factory(settings.database_url),
                                         redis=redis, dispatcher=Dispatcher(redis))
    app.teardown_appcontext(close_db)

    from web import api, i18n, limits, owner, volunteer, volunteer_account
    from web.api.volunteers.routes import blp as volunteers_blp
    from web.auth import init_csrf

    api.init_app(app)
    init_errors(app)  # after the Api, whose own handler would otherwise drop our messages
    init_csrf(app)
    i18n.init_app(app, settings.instance_dir)
    app.register_blueprint(volunteer.bp)
    app.register_blueprint(owner.bp)
    app.register_blueprint(volunteer_account.bp)
    limits.init_app(app, (volunteers_blp,))

    @app.get("/media/<name>", endpoint="media")
    def media(name: str):  # type: ignore[no-untyped-def]
        response = send_from_directory(Path(settings.media_dir), name, max_age=365 * 86400)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    @app.after_request
    def security_headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
        return response

    app.after_request(compress)

    return app
