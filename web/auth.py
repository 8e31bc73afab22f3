"""Who is asking: owners by API key (or the owner pages' session), volunteers by signed token."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from flask import abort, current_app, g, request, session
from itsdangerous import BadSignature, URLSafeSerializer

from microtasks.models import Owner, Volunteer
from microtasks.projects import owner_for_key
from microtasks.volunteers import create_volunteer
from web.extensions import db

VOLUNTEER_COOKIE = "mt_volunteer"
VOLUNTEER_HEADER = "X-Volunteer-Token"


def current_owner() -> Owner | None:
    key = request.headers.get("X-API-Key")
    if not key and request.headers.get("Authorization", "").startswith("Bearer "):
        key = request.headers["Authorization"][7:]
    if key:
        return owner_for_key(db(), key.strip())
    owner_id = session.get("owner_id")
    return db().get(Owner, owner_id) if owner_id else None


def owner_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        owner = current_owner()
        if owner is None:
            abort(401, description="An owner's API key is required (header X-API-Key).")
        g.owner = owner
        return view(*args, **kwargs)

    return wrapped


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="volunteer")


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
    """Pages give a new visitor an anonymous volunteer identity at once: no sign-up to start."""
    if current_volunteer_id(required=False) is None:
        volunteer = create_volunteer(db())
        db().commit()
        response.set_cookie(VOLUNTEER_COOKIE, volunteer_token(volunteer), max_age=5 * 365 * 86400,
                            httponly=True, samesite="Lax", secure=request.is_secure)
    return response
