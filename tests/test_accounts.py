"""Owners' accounts: passwords, API keys, sign-in, CSRF, and owners kept apart."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from microtasks.accounts import create_owner
from microtasks.models import ApiKey, Owner
from tests.conftest import TAGGING, csrf_token, sign_in

PASSWORD = "a long enough password"


def signup(client, username: str = "team-a"):  # type: ignore[no-untyped-def]
    return client.post("/owner/signup", data={"name": "Team A", "username": username, "password": PASSWORD,
                                              "confirm": PASSWORD, "csrf_token": csrf_token(client)})


def test_passwords_are_stored_as_scrypt_hashes(client, session):
    """Signing up stores a salted scrypt hash, never the password."""
    assert signup(client).status_code == 302
    stored = session.scalars(select(Owner.password_hash)).one()
    assert stored.startswith("scrypt$") and PASSWORD not in stored


def test_signing_up_shows_the_first_api_key_once(client, session):
    """The new owner's first API key appears on the account page once, and works."""
    signup(client)
    page = client.get("/owner/account").get_data(as_text=True)
    key = page.split('<code id="new-key">')[1].split("</code>")[0]
    assert client.get("/api/v1/projects", headers={"X-API-Key": key}).status_code == 200
    assert key not in client.get("/owner/account").get_data(as_text=True)


def test_an_owner_signs_in_with_username_and_password(client, session):
    """The right password opens the owner pages; a wrong one is a 401."""
    signup(client)
    client.post("/owner/logout", data={"csrf_token": csrf_token(client, "/owner/")})
    wrong = client.post("/owner/login", data={"username": "team-a", "password": "not the password",
                                              "csrf_token": csrf_token(client)})
    assert wrong.status_code == 401
    right = client.post("/owner/login", data={"username": "team-a", "password": PASSWORD,
                                              "csrf_token": csrf_token(client)})
    assert right.status_code == 302 and client.get("/owner/").status_code == 200


def test_a_taken_username_is_refused(client):
    """A second sign-up with the same username says it is taken."""
    signup(client)
    client.post("/owner/logout", data={"csrf_token": csrf_token(client, "/owner/")})
    reply = signup(client)
    assert reply.status_code == 409 and "taken" in reply.get_data(as_text=True)


def test_api_keys_are_stored_as_hashes(client, owner, session):
    """Only the SHA-256 of a key is stored."""
    stored = session.scalars(select(ApiKey.key_hash)).one()
    assert stored == hashlib.sha256(owner["key"].encode()).hexdigest()


def test_a_new_key_is_shown_once_and_listed_without_it(client, owner):
    """POST /keys returns the key; the list shows its prefix and name, never the key."""
    made = client.post("/api/v1/keys", json={"name": "uploader"}, headers=owner["headers"]).get_json()
    assert made["key"].startswith(made["prefix"])
    listed = client.get("/api/v1/keys", headers=owner["headers"]).get_json()
    assert [k["name"] for k in listed] == ["first key", "uploader"] and all("key" not in k for k in listed)


def test_a_revoked_key_stops_working(client, owner):
    """After revoking, the key is refused at once."""
    made = client.post("/api/v1/keys", json={"name": "leaked"}, headers=owner["headers"]).get_json()
    assert client.delete(f"/api/v1/keys/{made['id']}", headers=owner["headers"]).status_code == 200
    assert client.get("/api/v1/projects", headers={"X-API-Key": made["key"]}).status_code == 401


def test_an_owner_cannot_revoke_another_owners_key(client, owner, session_maker):
    """Another owner's key id is a 404."""
    with session_maker() as session:
        other, _ = create_owner(session, "Other")
        session.commit()
        other_key = session.scalars(select(ApiKey.id).where(ApiKey.owner_id == other.id)).one()
    assert client.delete(f"/api/v1/keys/{other_key}", headers=owner["headers"]).status_code == 404


def test_using_a_key_records_when(client, owner, session):
    """A key's last use is recorded (to within minutes), so owners can spot unused keys."""
    client.get("/api/v1/projects", headers=owner["headers"])
    assert session.scalars(select(ApiKey.last_used_at)).one() is not None


def test_an_owner_page_form_without_the_csrf_token_is_refused(client, owner):
    """A form post with the session cookie but no CSRF token is a 400."""
    sign_in(client, owner)
    assert client.post("/owner/account", data={"action": "new-key", "name": "x"}).status_code == 400


def test_api_calls_on_the_pages_session_need_the_csrf_header(client, owner):
    """The pages' scripts must send X-CSRF-Token; with it the same call succeeds."""
    token = sign_in(client, owner)
    assert client.post("/api/v1/projects", json=TAGGING).status_code == 400
    assert client.post("/api/v1/projects", json=TAGGING, headers={"X-CSRF-Token": token}).status_code == 201


def test_another_owners_project_pages_are_not_found(client, owner, make_project, session_maker):
    """Another owner signed in gets 404 on a project's page and settings."""
    project = make_project(TAGGING, n=1)
    with session_maker() as session:
        _, other_key = create_owner(session, "Other")
        session.commit()
    sign_in(client, {"key": other_key})
    assert client.get(f"/owner/projects/{project['id']}").status_code == 404
    assert client.get(f"/owner/projects/{project['id']}/settings").status_code == 404


def test_an_admin_sees_every_project(client, owner, make_project, session_maker):
    """An administrator may open any owner's project page."""
    project = make_project(TAGGING, n=1)
    with session_maker() as session:
        admin, key = create_owner(session, "Admin")
        admin.is_admin = True
        session.commit()
    sign_in(client, {"key": key})
    assert client.get(f"/owner/projects/{project['id']}").status_code == 200
