"""Who is asking: owners by API key (or the owner pages' session), volunteers by signed token.

Requests that change something on the strength of the owner pages' session cookie
must carry the session's CSRF token (Flask-WTF): a form field ``csrf_token`` on the
pages, an ``X-CSRF-Token`` header on API calls made by the pages' scripts. Requests
that carry an API key need none: no browser sends the key by itself.
"""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from flask import Flask, abort, current_app, g, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature, URLSafeSerializer

from microtasks.models import Owner, Project, Volunteer
from microtasks.accounts import owner_for_key
from microtasks.errors import NotFound
from microtasks.volunteers import create_volunteer
from web.extensions import db

VOLUNTEER_COOKIE = "mt_volunteer"
VOLUNTEER_HEADER = "X-Volunteer-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

csrf = CSRFProtect()


def _api_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if not key and request.headers.get("Authorization", "").startswith("Bearer "):
        key = request.headers["Authorization"][7:]
    return key.strip() if key else None


def current_owner() -> Owner | None:
    if "owner" in g:
        return g.owner
    key = _api_key()
    if key:
        owner = owner_for_key(db(), key)
        if owner is not None:
            db().commit()  # the key's last use
    else:
        owner_id = session.get("owner_id")
        owner = db().get(Owner, owner_id) if owner_id else None
    g.owner = owner
    return owner


def manages(owner: Owner | None, project: Project) -> bool:
    """Whether ``owner`` may see and change ``project``: their own, or any for an administrator."""
    return owner is not None and (project.owner_id == owner.id or owner.is_admin)


def owned_project(project_id: int) -> Project:
    """The project, for an owner who :func:`manages` it; for anyone else a 404, as if it did not exist."""
    project = db().get(Project, project_id)
    if project is None or not manages(current_owner(), project):
        raise NotFound(f"No project {project_id}.")
    return project


def init_csrf(app: Flask) -> None:
    """Check the CSRF token on owner and volunteer-account pages' forms, and on API calls authenticated by the
    owner pages' session."""
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid as long as the session
    csrf.init_app(app)

    @app.before_request
    def check_csrf() -> None:
        if request.method not in SAFE_METHODS and request.blueprint in ("owner", "volunteer_account"):
            csrf.protect()


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, whose cookie is also Secure whenever the request came over HTTPS.

    Behind a proxy that ends TLS, a request counts as HTTPS once ``TRUSTED_PROXIES`` lets the
    app believe the proxy's ``X-Forwarded-Proto`` (see :func:`web.create_app`).
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def owner_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_owner() is None:
            abort(401, description="An owner's API key is required (header X-API-Key), "
                                   "or a signed-in owner's session.")
        if _api_key() is None and request.method not in SAFE_METHODS:
            csrf.protect()  # the pages' session: the call must come from our own pages
        return view(*args, **kwargs)

    return wrapped


def _signer() -> URLSafeSerializer:
    """Signs with ``SECRET_KEY``; also accepts tokens signed with one of ``SECRET_KEY_FALLBACKS``."""
    return URLSafeSerializer([*current_app.config["SECRET_KEY_FALLBACKS"], current_app.secret_key], salt="volunteer")


def volunteer_token(volunteer: Volunteer) -> str:
    """A signed token naming the volunteer; it needs no database look-up to check."""
    return _signer().dumps([volunteer.id, volunteer.public_id])


def volunteer_id_from_token(token: str) -> int | None:
    try:
        value = _signer().loads(token)
    except BadSignature:
        return None
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], int):
        return value[0]
    return None


def current_volunteer_id(required: bool = True) -> int | None:
    """The id of the volunteer named by the request's token (header for API clients, cookie for pages)."""
    token = request.headers.get(VOLUNTEER_HEADER) or request.cookies.get(VOLUNTEER_COOKIE)
    if not token:
        if required:
            abort(401, description=f"A volunteer token is required (header {VOLUNTEER_HEADER}); "
                                   "get one from POST /api/v1/volunteers.")
        return None
    volunteer_id = volunteer_id_from_token(token)
    if volunteer_id is None and required:
        abort(401, description="The volunteer token is invalid or was tampered with; get a new one.")
    return volunteer_id


def ensure_volunteer_cookie(response: Any) -> Any:
    """Pages give a new visitor an anonymous volunteer identity at once: no sign-up to start.

    A cookie naming an erased volunteer (erased on another device) is replaced too: the
    page costs one look-up more, the API's hot path none. A cookie signed with a key that
    has since been rotated into ``SECRET_KEY_FALLBACKS`` is signed anew with ``SECRET_KEY``,
    so the volunteer stays who they are after that key is dropped.
    """
    volunteer_id = current_volunteer_id(required=False)
    volunteer = db().get(Volunteer, volunteer_id) if volunteer_id is not None else None
    if volunteer is None:
        volunteer = create_volunteer(db())
        db().commit()
    if request.cookies.get(VOLUNTEER_COOKIE) != volunteer_token(volunteer):  # a token is the same each time
        set_volunteer_cookie(response, volunteer)
    return response


def set_volunteer_cookie(response: Any, volunteer: Volunteer) -> Any:
    """The pages' identity: the volunteer's token in an HttpOnly cookie."""
    response.set_cookie(VOLUNTEER_COOKIE, volunteer_token(volunteer), max_age=5 * 365 * 86400,
                        httponly=True, samesite="Lax", secure=request.is_secure)
    return response


def clear_volunteer_cookie(response: Any) -> Any:
    response.delete_cookie(VOLUNTEER_COOKIE, httponly=True, samesite="Lax", secure=request.is_secure)
    return response
