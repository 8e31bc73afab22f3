"""Per-app state (database sessions, Redis), the JSON error shape, and the error pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, current_app, g, jsonify, request
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from microtasks.config import Settings
from microtasks.errors import MicrotasksError
from microtasks.serving import Dispatcher


@dataclass
class State:
    settings: Settings
    sessions: sessionmaker[Session]
    redis: "redis.Redis"
    dispatcher: Dispatcher


def state() -> State:
    return current_app.extensions["microtasks"]


def db() -> Session:
    """The request's session; the view commits, teardown closes (rolling back what was not committed)."""
    if "db" not in g:
        g.db = state().sessions()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one error shape of the API, the same as flask-smorest's own."""
    from http import HTTPStatus

    body: dict[str, Any] = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    return body


def init_errors(app: Flask) -> None:
    @app.errorhandler(MicrotasksError)
    def domain_error(error: MicrotasksError):  # type: ignore[no-untyped-def]
        return jsonify(error_body(error.status, error.message, {"json": error.errors} if error.errors else None)), \
            error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        if not request.path.startswith("/api/"):
            return error_page(error)
        code = error.code or 500
        data = getattr(error, "data", {}) or {}
        message = data.get("message") or error.description or ""
        response = jsonify(error_body(code, message, data.get("messages") or data.get("errors")))
        for name, value in (error.get_headers() if hasattr(error, "get_headers") else []):
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response, code


def error_page(error: HTTPException):  # type: ignore[no-untyped-def]
    """A page's error, in the visitor's language, with the error's own headers (Retry-After, Allow)."""
    from flask import render_template
    from flask_babel import gettext as _
    from flask_wtf.csrf import CSRFError

    code = error.code or 500
    says = {
        400: _("This request could not be understood."),
        403: _("You may not open this page."),
        404: _("There is no page here. The link may be old, or the project may have ended."),
        405: _("This page cannot be used that way."),
        413: _("That is too big to send."),
        429: _("Too many requests at once. Wait a moment and try again."),
        503: _("The service is busy or restarting. Try again in a moment."),
    }
    if isinstance(error, CSRFError):
        message = _("This form has expired. Go back, reload the page and try again.")
    else:
        message = says.get(code) or _("Something went wrong on our side. Try again in a moment.")
    response = current_app.make_response((render_template("error.html", code=code, message=message), code))
    for name, value in error.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response
