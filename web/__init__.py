"""The Flask app: JSON API, volunteer pages and owner pages over the microtasks core."""

from __future__ import annotations

import gzip
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, request, send_from_directory
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

from microtasks.config import Settings
from microtasks.db import session_factory
from microtasks.serving import Dispatcher
from web.extensions import State, close_db, error_body, error_page, init_errors
from workers.connection import connect


def _key_list(value: str | list[str] | None) -> list[str]:
    """Earlier secret keys, from a list or a comma-separated string."""
    if isinstance(value, str):
        value = value.split(",")
    return [key.strip() for key in value or [] if key.strip()]


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


#: Seconds a client is asked to wait (``Retry-After``) while the database or Redis cannot be reached.
RETRY_AFTER = 5


def unavailable(error: Exception) -> Response:
    """503 with ``Retry-After`` while the database or Redis cannot be reached (a restart, a failover).

    The client sends the same request again after the pause; answers carry their ids, so a
    request that had committed before the failure stores nothing twice. A JSON body (the
    API's error shape) under ``/api/``, the error page in the visitor's language elsewhere.
    """
    current_app.logger.warning("%s %s: 503, %s unreachable: %s", request.method, request.path,
                               "Redis" if isinstance(error, (RedisConnectionError, RedisTimeoutError)) else "database",
                               str(error).splitlines()[0] if str(error) else type(error).__name__)
    message = f"The service is briefly unavailable; try again in {RETRY_AFTER} s."
    response = jsonify(error_body(503, message)) if request.path.startswith("/api/") else error_page(
        ServiceUnavailable())
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``MICROTASKS_*`` environment variables, then ``config``.

    Settings: ``DATABASE_URL``, ``REDIS_URL``, ``INSTANCE_DIR``, ``MEDIA_DIR`` (see
    :class:`microtasks.config.Settings`), ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS`` (earlier keys,
    comma-separated, still accepted for volunteer tokens and owner sessions while keys are
    rotated), ``MAX_CONTENT_LENGTH``, and
    ``TRUSTED_PROXIES``: how many reverse proxies stand in front of the app (0 by default). Behind
    them, each request's address, scheme and host are read from their ``X-Forwarded-For``,
    ``-Proto`` and ``-Host``, so rate limits see the volunteer's address and cookies are Secure over HTTPS.
    """
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=512 * 1024 * 1024, JSON_SORT_KEYS=False,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.config.from_prefixed_env("MICROTASKS")
    if config:
        app.config.update(config)
    settings: Settings = app.config.get("SETTINGS") or Settings.from_env()
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or _secret_key(settings)
    app.config["SECRET_KEY_FALLBACKS"] = _key_list(app.config.get("SECRET_KEY_FALLBACKS")
                                                   or os.environ.get("SECRET_KEY_FALLBACKS"))
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,  # type: ignore[method-assign]
                                x_host=proxies)
    redis = app.config.get("REDIS") or connect(settings)
    app.extensions["microtasks"] = State(settings=settings, sessions=session_factory(settings.database_url),
                                         redis=redis, dispatcher=Dispatcher(redis))
    app.teardown_appcontext(close_db)

    from web import api, i18n, limits, owner, volunteer, volunteer_account
    from web.api.volunteers.routes import blp as volunteers_blp
    from web.auth import SessionInterface, init_csrf

    api.init_app(app)
    init_errors(app)  # after the Api, whose own handler would otherwise drop our messages
    for unreachable in (OperationalError, PoolTimeoutError, RedisConnectionError, RedisTimeoutError):
        app.register_error_handler(unreachable, unavailable)
    init_csrf(app)
    app.session_interface = SessionInterface()
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
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
        return response

    app.after_request(compress)

    return app
