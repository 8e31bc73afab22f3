"""Who may call what: every route of the app, for every kind of caller.

:data:`ROUTES` gives, for each route and method of ``app.url_map``, the calls to make and
what each caller must get. A route missing from it fails the suite, so a new route needs
its policy written down here before it ships.

The callers are an anonymous visitor, a volunteer (by the API's token header, and by an
account's cookie from the /me pages), the project's owner (by API key, and by the owner
pages' session), another owner (key and session) and an administrator (key and session).
Every write carries its client's CSRF token: what is checked here is who gets in, not
CSRF (tests/test_hardening.py checks that).
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from sqlalchemy import select

from microtasks.accounts import create_api_key, create_owner
from microtasks.models import Batch, Owner, Quarantine, Unit
from microtasks.volunteers import create_volunteer
from tests.conftest import TAGGING, csrf_token, make_zip, png_bytes, sign_in

#: What a caller gets: in (2xx, 3xx, or a refusal of what was sent: 409, 422), out (401, 403, or
#: the owner pages' sign-in page), or a 404 that hides that the thing exists.
ALLOW, DENY, HIDE = "allow", "deny", "hide"
ACTORS = ("anonymous", "volunteer", "owner", "other owner", "admin")
PASSWORD = "correct horse battery"


def expect(anonymous: str, volunteer: str, owner: str, other: str, admin: str) -> dict[str, str]:
    return dict(zip(ACTORS, (anonymous, volunteer, owner, other, admin)))


PUBLIC = expect(ALLOW, ALLOW, ALLOW, ALLOW, ALLOW)
#: The volunteer API: a volunteer's token (or the pages' cookie) is the identity; owners have none.
VOLUNTEER = expect(DENY, DENY, DENY, DENY, DENY) | {"volunteer": ALLOW}
#: Any owner, about their own things (their project list, their keys).
ANY_OWNER = expect(DENY, DENY, ALLOW, ALLOW, ALLOW)
#: Owner A's project and what is in it: another owner gets 404; an administrator sees every project.
PROJECT = expect(DENY, DENY, ALLOW, HIDE, ALLOW)
#: Owner A's API key: nobody else's business, administrators included.
OWN_KEY = expect(DENY, DENY, ALLOW, HIDE, HIDE)
#: The volunteer page of an unpublished project: a preview for its owner and administrators only.
PREVIEW = expect(HIDE, HIDE, ALLOW, HIDE, ALLOW)
#: Public pages of an unpublished project do not exist yet.
NOT_YET = expect(HIDE, HIDE, HIDE, HIDE, HIDE)


@dataclass(frozen=True)
class Call:
    """One request to a route: what each caller must get, and what is sent.

    ``params`` overrides the URL's parameters (which default to :func:`world`'s objects);
    ``body`` builds the request's ``json``, ``data`` or ``query_string`` afresh for each call.
    """

    expected: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    body: Callable[[dict[str, Any]], dict[str, Any]] = lambda world: {}
    #: The call changes who the caller is (signs in or out, erases, hands out an identity): it gets a new client.
    fresh: bool = False


def _upload(name: str, data: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda world: {"data": {"file": (io.BytesIO(data), name)}, "content_type": "multipart/form-data"}


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


ROUTES: dict[tuple[str, str], tuple[Call, ...]] = {
    # -- public pages and files
    ("GET", "/"): (Call(PUBLIC),),
    ("GET", "/static/<path:filename>"): (Call(PUBLIC, {"filename": "css/app.css"}),),
    ("GET", "/media/<name>"): (Call(PUBLIC),),
    ("GET", "/api/docs"): (Call(PUBLIC),),
    ("GET", "/api/docs/assets/<path:name>"): (Call(PUBLIC, {"name": "swagger-ui.css"}),),
    ("GET", "/api/openapi.json"): (Call(PUBLIC),),
    ("GET", "/api/v1/health"): (Call(PUBLIC),),
    ("GET", "/p/<slug>"): (Call(PUBLIC, fresh=True), Call(PREVIEW, {"slug": "hidden"}, fresh=True)),
    ("GET", "/p/<slug>/about"): (Call(PUBLIC), Call(NOT_YET, {"slug": "hidden"})),
    ("GET", "/api/v1/projects/<slug>/summary"): (Call(PUBLIC), Call(NOT_YET, {"slug": "hidden"})),
    # -- the volunteer API
    ("POST", "/api/v1/volunteers"): (Call(PUBLIC),),
    ("POST", "/api/v1/projects/<int:project_id>/next"): (Call(VOLUNTEER),),
    ("POST", "/api/v1/units/<int:unit_id>/answers"): (Call(VOLUNTEER, body=lambda world: {"json": {
        "answer_id": str(uuid.uuid4()), "payload": {"label": "cat"}}}),),
    ("POST", "/api/v1/units/<int:unit_id>/skip"): (Call(VOLUNTEER),),
    ("POST", "/api/v1/answers"): (Call(VOLUNTEER, body=lambda world: {"json": {"answers": [
        {"unit_id": world["values"]["unit_id"], "answer_id": str(uuid.uuid4()), "payload": {"label": "dog"}}]}}),),
    ("POST", "/api/v1/volunteers/account"): (Call(VOLUNTEER, body=lambda world: {
        "json": {"username": _unique("v"), "password": PASSWORD}}),),
    ("POST", "/api/v1/volunteers/login"): (Call(PUBLIC, body=lambda world: {"json": {
        "username": world["account"], "password": PASSWORD}}, fresh=True),),
    ("POST", "/api/v1/volunteers/logout"): (Call(PUBLIC, fresh=True),),
    ("GET", "/api/v1/volunteers/me"): (Call(VOLUNTEER),),
    ("GET", "/api/v1/volunteers/me/data"): (Call(VOLUNTEER),),
    ("DELETE", "/api/v1/volunteers/me"): (Call(VOLUNTEER, fresh=True),),
    # -- the volunteer's own pages: about "this browser's volunteer", so open to anyone
    ("GET", "/me"): (Call(PUBLIC),),
    ("POST", "/me/signup"): (Call(PUBLIC, body=lambda world: {"data": {
        "username": _unique("m"), "password": PASSWORD, "confirm": PASSWORD}}, fresh=True),),
    ("POST", "/me/login"): (Call(PUBLIC, body=lambda world: {"data": {
        "username": world["account"], "password": PASSWORD}}, fresh=True),),
    ("POST", "/me/logout"): (Call(PUBLIC, fresh=True),),
    ("GET", "/me/erase"): (Call(PUBLIC),),
    ("POST", "/me/erase"): (Call(PUBLIC, body=lambda world: {"data": {"confirm": "1"}}, fresh=True),),
    # -- owners' accounts and keys
    ("GET", "/owner/login"): (Call(PUBLIC),),
    ("POST", "/owner/login"): (Call(PUBLIC, body=lambda world: {"data": {"api_key": world["key"]}}, fresh=True),),
    ("POST", "/owner/logout"): (Call(PUBLIC, fresh=True),),
    ("GET", "/owner/signup"): (Call(PUBLIC),),
    ("POST", "/owner/signup"): (Call(PUBLIC, body=lambda world: {"data": {
        "username": _unique("o"), "password": PASSWORD, "confirm": PASSWORD}}, fresh=True),),
    ("GET", "/owner/"): (Call(ANY_OWNER),),
    ("GET", "/owner/account"): (Call(ANY_OWNER),),
    ("POST", "/owner/account"): (Call(ANY_OWNER, body=lambda world: {"data": {"action": "new-key", "name": "x"}}),
                                 Call(OWN_KEY, body=lambda world: {"data": {"action": "revoke",
                                                                            "key_id": world["key_id"]}})),
    ("GET", "/api/v1/keys"): (Call(ANY_OWNER),),
    ("POST", "/api/v1/keys"): (Call(ANY_OWNER, body=lambda world: {"json": {"name": "script"}}),),
    ("DELETE", "/api/v1/keys/<int:key_id>"): (Call(OWN_KEY),),
    # -- projects: the owner pages
    ("GET", "/owner/projects/new"): (Call(ANY_OWNER),),
    ("POST", "/owner/projects/new"): (Call(ANY_OWNER, body=lambda world: {"data": {
        "name": _unique("New "), "task_type": "tagging", "labels": "yes\nno"}}),),
    ("GET", "/owner/projects/<int:project_id>"): (Call(PROJECT),),
    ("GET", "/owner/projects/<int:project_id>/settings"): (Call(PROJECT),),
    ("POST", "/owner/projects/<int:project_id>/settings"): (Call(PROJECT, body=lambda world: {"data": {
        "name": "Renamed", "labels": "cat\ndog\nbird", "published": "1"}}),),
    ("POST", "/owner/projects/<int:project_id>/publish"): (Call(PROJECT, body=lambda world: {
        "data": {"published": "1"}}),),
    ("POST", "/owner/projects/<int:project_id>/quarantine/<volunteer>/release"): (Call(PROJECT),),
    # Only a demo project has simulated volunteers: for any other, even its owner finds nothing.
    ("POST", "/owner/projects/<int:project_id>/simulate"): (Call(expect(DENY, DENY, HIDE, HIDE, HIDE)),),
    # -- projects: the owner API
    ("GET", "/api/v1/projects"): (Call(ANY_OWNER),),
    ("POST", "/api/v1/projects"): (Call(ANY_OWNER, body=lambda world: {"json": {
        **TAGGING, "name": _unique("New ")}}),),
    ("GET", "/api/v1/projects/<int:project_id>"): (Call(PROJECT),),
    ("PATCH", "/api/v1/projects/<int:project_id>"): (Call(PROJECT, body=lambda world: {
        "json": {"description": "Changed"}}),),
    ("POST", "/api/v1/projects/<int:project_id>/images"): (Call(PROJECT, body=_upload("x.png", png_bytes())),),
    ("GET", "/api/v1/projects/<int:project_id>/quarantine"): (Call(PROJECT),),
    ("POST", "/api/v1/projects/<int:project_id>/quarantine/<volunteer>/release"): (Call(PROJECT),),
    ("GET", "/api/v1/projects/<int:project_id>/stats"): (Call(PROJECT),),
    ("GET", "/api/v1/projects/<int:project_id>/batches"): (Call(PROJECT),),
    ("POST", "/api/v1/projects/<int:project_id>/batches"): (Call(PROJECT, body=_upload(
        "more.zip", make_zip({"more.png": png_bytes(colour="blue")}))),),
    ("GET", "/api/v1/projects/<int:project_id>/batches/<int:batch_id>"): (Call(PROJECT),),
    ("GET", "/api/v1/projects/<int:project_id>/export"): (Call(PROJECT, body=lambda world: {
        "query_string": {"kind": "answers", "format": "csv"}}),),
    ("GET", "/api/v1/projects/<int:project_id>/exports"): (Call(PROJECT),),
    ("POST", "/api/v1/projects/<int:project_id>/exports"): (Call(PROJECT, body=lambda world: {
        "json": {"kind": "answers", "format": "csv"}}),),
    ("GET", "/api/v1/projects/<int:project_id>/exports/<int:export_id>"): (Call(PROJECT),),
    ("GET", "/api/v1/projects/<int:project_id>/exports/<int:export_id>/download"): (Call(PROJECT),),
}


#: Each kind of caller, and how it says who it is.
CALLERS = (("anonymous", "nothing"), ("volunteer", "token"), ("volunteer", "account"), ("owner", "key"),
           ("owner", "session"), ("other owner", "key"), ("other owner", "session"), ("admin", "key"),
           ("admin", "session"))


def _outcome(response) -> str:  # type: ignore[no-untyped-def]
    status = response.status_code
    if status in (401, 403) or (status in (302, 303) and response.location.endswith("/owner/login")):
        return DENY
    if status == 404:
        return HIDE
    if status < 400 or status in (409, 422):
        return ALLOW
    return f"HTTP {status}: {response.get_data(as_text=True)[:300]}"


@pytest.fixture()
def world(app, client, owner, make_project, run_jobs, session_maker) -> dict[str, Any]:  # type: ignore
    """Owner A's published project with units, a batch, a finished export, a quarantined volunteer and a spare
    key; an unpublished project; another owner, an administrator and a volunteer's account; and
    ``new_caller``, which makes a caller its own client."""
    project = make_project(TAGGING, n=1)
    hidden = client.post("/api/v1/projects", headers=owner["headers"],
                         json={**TAGGING, "name": "Hidden", "slug": "hidden", "published": False})
    assert hidden.status_code == 201, hidden.get_json()
    export = client.post(f"/api/v1/projects/{project['id']}/exports", headers=owner["headers"],
                         json={"kind": "answers", "format": "csv"}).get_json()
    run_jobs()
    with session_maker() as session:
        unit = session.scalars(select(Unit).where(Unit.project_id == project["id"])).one()
        quarantined = create_volunteer(session)
        session.add(Quarantine(project_id=project["id"], volunteer_id=quarantined.id, reason="test"))
        spare, _ = create_api_key(session, session.get(Owner, owner["id"]), "spare")
        other_key = create_owner(session, "Other owner")[1]
        admin, admin_key = create_owner(session, "Admin")
        admin.is_admin = True
        session.commit()
        values = {"project_id": project["id"], "slug": project["slug"], "unit_id": unit.id, "name": unit.media,
                  "volunteer": quarantined.public_id, "key_id": spare.id, "export_id": export["id"],
                  "batch_id": session.scalars(select(Batch.id).where(Batch.project_id == project["id"])).one()}
    keys = {"owner": owner["key"], "other owner": other_key, "admin": admin_key}
    account = _unique("ada")
    made = client.post("/api/v1/volunteers/account", json={"username": account, "password": PASSWORD},
                       headers={"X-Volunteer-Token": client.post("/api/v1/volunteers").get_json()["token"]})
    assert made.status_code == 201, made.get_json()
    world: dict[str, Any] = {"values": values, "key": owner["key"], "key_id": spare.id, "account": account}

    def new_caller(actor: str, how: str) -> tuple[Any, dict[str, str]]:
        """A client of its own for the caller, and the headers it sends (always with its CSRF token)."""
        new = app.test_client()
        if how == "session":
            return new, {"X-CSRF-Token": sign_in(new, {"key": keys[actor]})}
        headers = {"X-CSRF-Token": csrf_token(new)}
        if how == "key":
            headers["X-API-Key"] = keys[actor]
        elif how == "token":
            headers["X-Volunteer-Token"] = new.post("/api/v1/volunteers").get_json()["token"]
        elif how == "account":
            signed_up = new.post("/me/signup", headers=headers,
                                 data={"username": _unique("ada"), "password": PASSWORD, "confirm": PASSWORD})
            assert signed_up.status_code == 302, signed_up.get_data(as_text=True)
        return new, headers

    world["new_caller"] = new_caller
    return world


def test_every_route_has_a_policy(app):
    """Each route and method of the app has an expected outcome for every caller, and no listed route is gone."""
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == set(ROUTES), "add the new route to ROUTES with who may call it (or drop a stale one)"
    assert all(set(call.expected) == set(ACTORS) for calls in ROUTES.values() for call in calls)


@pytest.mark.parametrize(("actor", "how"), CALLERS, ids=[f"{actor} by {how}" for actor, how in CALLERS])
def test_who_may_call_each_route(world, actor, how):
    """The caller gets in, is refused (401/403, or the sign-in page) or finds nothing (404) on every route, as
    ROUTES says."""
    caller = world["new_caller"](actor, how)
    wrong = []
    for (method, rule), calls in ROUTES.items():
        for call in calls:
            values = {**world["values"], **call.params}
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: str(values[match.group(1)]), rule)
            client, headers = world["new_caller"](actor, how) if call.fresh else caller
            response = client.open(path, method=method, headers=headers, **call.body(world))
            got = _outcome(response)
            response.close()  # a streamed export is not read
            if got != call.expected[actor]:
                wrong.append(f"{method} {path}: {got}, expected {call.expected[actor]}")
    assert not wrong, "\n".join(wrong)
