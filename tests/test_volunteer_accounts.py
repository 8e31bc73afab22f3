"""Volunteers' optional accounts, their data (download and erase), and a project's qualification."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from microtasks.models import Answer, Project, Quarantine, Unit, Volunteer
from microtasks.quarantine import quarantine
from tests.conftest import TAGGING, answer, csrf_token, make_zip, png_bytes, sign_in

PASSWORD = "correct horse battery"
#: One answer fills a unit, so two devices answer different units.
SINGLE = {**TAGGING, "redundancy": 1}


def lease(client, project: dict[str, Any], headers: dict[str, str], count: int = 1):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/projects/{project['id']}/next?count={count}", headers=headers)


def answer_next(client, project: dict[str, Any], headers: dict[str, str], label: str = "cat") -> int:  # type: ignore
    """Lease the next unit and answer it; returns the unit's id."""
    unit = lease(client, project, headers).get_json()["unit"]
    assert answer(client, headers, unit["id"], {"label": label}).status_code == 201
    return unit["id"]


def sign_up(client, headers: dict[str, str], username: str = "ada"):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/volunteers/account", headers=headers,
                       json={"username": username, "password": PASSWORD})


def log_in(client, username: str = "ada", password: str = PASSWORD,  # type: ignore[no-untyped-def]
           headers: dict[str, str] | None = None):
    return client.post("/api/v1/volunteers/login", headers=headers or {},
                       json={"username": username, "password": password})


def me(client, headers: dict[str, str]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    reply = client.get("/api/v1/volunteers/me", headers=headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def token(reply) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"X-Volunteer-Token": reply.get_json()["token"]}


# -- accounts -----------------------------------------------------------------------------

def test_signing_up_keeps_the_anonymous_history(client, make_project, new_volunteer):
    """Answers given before signing up belong to the account: it is the same volunteer."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    answer_next(client, project, headers)
    before = me(client, headers)["id"]
    assert sign_up(client, headers).status_code == 201
    account = me(client, token(log_in(client)))
    assert (account["id"], account["username"], account["answers"]) == (before, "ada", 1)


def test_a_taken_username_is_a_409(client, new_volunteer):
    """Two volunteers cannot have one username."""
    assert sign_up(client, new_volunteer()).status_code == 201
    reply = sign_up(client, new_volunteer())
    assert reply.status_code == 409 and "username" in reply.get_json()["errors"]["json"]


def test_a_short_password_is_a_422(client, new_volunteer):
    """Volunteers' passwords follow the owners' rule: at least 10 characters."""
    reply = client.post("/api/v1/volunteers/account", headers=new_volunteer(),
                        json={"username": "ada", "password": "short"})
    assert reply.status_code == 422 and "password" in reply.get_json()["errors"]["json"]


def test_signing_in_on_a_second_device_merges_its_anonymous_answers(client, make_project, new_volunteer):
    """The second device's anonymous answers join the account when it signs in there."""
    project = make_project(SINGLE, n=3)
    first = new_volunteer()
    answer_next(client, project, first)
    sign_up(client, first)
    second = new_volunteer()
    answer_next(client, project, second)
    reply = log_in(client, headers=second)
    assert (reply.status_code, reply.get_json()["merged_answers"]) == (200, 1)
    assert me(client, token(reply))["answers"] == 2


def test_after_a_merge_the_account_is_not_served_a_unit_it_answered(client, make_project, new_volunteer):
    """The serving cache is rebuilt: units answered on the other device are never served to the account."""
    project = make_project({**TAGGING, "redundancy": 2, "strategy": "breadth_first"}, n=2)
    first = new_volunteer()
    answer_next(client, project, first)
    sign_up(client, first)
    second = new_volunteer()
    answer_next(client, project, second)
    account = token(log_in(client, headers=second))
    assert lease(client, project, account).get_json()["unit"] is None


def test_a_unit_answered_on_both_devices_stays_detached_and_nothing_is_lost(client, make_project, new_volunteer,
                                                                             session):
    """An anonymous answer to a unit the account also answered stays, detached; no answer is lost or doubled."""
    project = make_project(TAGGING, n=1)
    first = new_volunteer()
    unit_id = answer_next(client, project, first, "cat")
    sign_up(client, first)
    second = new_volunteer()
    answer_next(client, project, second, "dog")
    reply = log_in(client, headers=second).get_json()
    assert (reply["merged_answers"], reply["kept_apart"]) == (0, 1)
    rows = session.execute(select(Answer.payload, Volunteer.username).join(Volunteer)
                           .where(Answer.unit_id == unit_id).order_by(Answer.id)).all()
    assert [(payload["label"], name) for payload, name in rows] == [("cat", "ada"), ("dog", None)]
    assert session.get(Unit, unit_id).answer_count == 2


def test_a_wrong_password_is_a_401(client, new_volunteer):
    """Signing in with a wrong password is refused with a clear message."""
    sign_up(client, new_volunteer())
    reply = log_in(client, password="not the password")
    assert reply.status_code == 401 and "not known" in reply.get_json()["message"]


def test_an_unknown_username_is_a_401(client):
    """An unknown username gets the same 401 as a wrong password (no telling which names exist)."""
    reply = log_in(client, username="nobody")
    assert reply.status_code == 401 and "not known" in reply.get_json()["message"]


def test_signing_in_is_limited_per_address(settings, redis_db, session_maker):
    """Password guesses are limited per (hashed) address, like minting tokens."""
    from web import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "s", "SETTINGS": settings, "REDIS": redis_db,
                      "RATELIMIT_ADDRESS": "2/minute"})
    client = app.test_client()
    assert [log_in(client, "nobody").status_code for _ in range(3)] == [401, 401, 429]


# -- the data download and erasing ----------------------------------------------------------

def test_the_download_contains_the_answers(client, make_project, new_volunteer):
    """GET /volunteers/me/data is a JSON attachment with the volunteer's answers and payloads, and no hash."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    unit_id = answer_next(client, project, headers, "dog")
    sign_up(client, headers)
    reply = client.get("/api/v1/volunteers/me/data", headers=headers)
    assert reply.status_code == 200 and "attachment" in reply.headers["Content-Disposition"]
    data = json.loads(reply.get_data(as_text=True))
    assert data["volunteer"]["username"] == "ada" and "password_hash" not in json.dumps(data)
    assert [(a["unit_id"], a["payload"]) for a in data["answers"]] == [(unit_id, {"label": "dog"})]
    assert [a["unit_id"] for a in data["assignments"]] == [unit_id]


def test_erasing_keeps_the_answers_under_another_pseudonym(client, owner, make_project, new_volunteer):
    """After erasing, the answers are still in the owner's export, under a new pseudonymous id."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    answer_next(client, project, headers)
    old_id = me(client, headers)["id"]
    reply = client.delete("/api/v1/volunteers/me", headers=headers)
    assert reply.get_json() == {"erased": True, "answers_kept": 1}
    export = client.get(f"/api/v1/projects/{project['id']}/export?kind=answers&format=jsonl",
                        headers=owner["headers"]).get_data(as_text=True)
    (row,) = [json.loads(line) for line in export.splitlines()]
    assert row["volunteer"] not in (old_id, None) and row["label"] == "cat"


def test_an_erased_volunteers_token_gets_a_401_on_next(client, make_project, new_volunteer):
    """The token of an erased volunteer is refused when it asks for units."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    answer_next(client, project, headers)
    client.delete("/api/v1/volunteers/me", headers=headers)
    reply = lease(client, project, headers)
    assert reply.status_code == 401 and "no longer exists" in reply.get_json()["message"]


def test_an_erased_volunteers_token_gets_a_401_on_submit(client, make_project, new_volunteer, session):
    """An answer sent with the token of an erased volunteer is refused, and nothing is stored."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    unit_id = lease(client, project, headers).get_json()["unit"]["id"]
    client.delete("/api/v1/volunteers/me", headers=headers)
    reply = answer(client, headers, unit_id, {"label": "cat"})
    assert reply.status_code == 401 and "no longer exists" in reply.get_json()["message"]
    assert session.scalar(select(func.count()).select_from(Answer)) == 0


def test_an_erased_account_can_no_longer_sign_in(client, new_volunteer):
    """Erasing deletes the account with the person: its username and password are gone."""
    headers = new_volunteer()
    sign_up(client, headers)
    client.delete("/api/v1/volunteers/me", headers=headers)
    assert log_in(client).status_code == 401


# -- the account page ---------------------------------------------------------------------

def test_the_account_page_signs_up_the_browsers_volunteer(client, make_project):
    """The /me sign-up form (with its CSRF token) makes an account of the cookie's volunteer."""
    project = make_project(TAGGING, n=1)
    client.get(f"/p/{project['slug']}")  # the cookie's anonymous volunteer
    reply = client.post("/me/signup", data={"username": "ada", "password": PASSWORD, "confirm": PASSWORD,
                                            "csrf_token": csrf_token(client, "/me")})
    assert reply.status_code == 302
    assert me(client, {})["username"] == "ada"


def test_an_account_form_without_its_csrf_token_is_refused(client):
    """The account page's forms are CSRF-protected like the owner pages'."""
    reply = client.post("/me/login", data={"username": "ada", "password": PASSWORD})
    assert reply.status_code == 400


def test_signing_in_on_the_page_sets_the_accounts_cookie(client, new_volunteer):
    """After signing in on /me, the browser's cookie names the account."""
    sign_up(client, new_volunteer())
    reply = client.post("/me/login", data={"username": "ada", "password": PASSWORD,
                                           "csrf_token": csrf_token(client, "/me")})
    assert reply.status_code == 302 and me(client, {})["username"] == "ada"


def test_erasing_on_the_page_needs_the_confirmation(client, make_project, session):
    """Without the confirmation box the erase form only asks again; nothing is erased."""
    project = make_project(TAGGING, n=1)
    client.get(f"/p/{project['slug']}")
    reply = client.post("/me/erase", data={"csrf_token": csrf_token(client, "/me")})
    assert reply.status_code == 200 and "cannot be undone" in reply.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Volunteer)) == 1


def test_an_anonymous_volunteer_cannot_sign_out(client, make_project):
    """Signing out without an account would lose the history for good, so it is refused."""
    project = make_project(TAGGING, n=1)
    client.get(f"/p/{project['slug']}")
    assert client.post("/api/v1/volunteers/logout").status_code == 409


def test_signing_out_clears_the_cookie(client, new_volunteer):
    """An account's volunteer signs out of the pages: the cookie is cleared."""
    sign_up(client, new_volunteer())
    log_in(client)  # the pages' cookie now names the account
    assert client.post("/api/v1/volunteers/logout").status_code == 204
    assert client.get("/api/v1/volunteers/me").status_code == 401


# -- qualification ------------------------------------------------------------------------

@pytest.fixture()
def qualifying(client, owner, run_jobs):  # type: ignore[no-untyped-def]
    """A project asking for one passed gold unit, with two gold units (both dog) and three ordinary units."""
    project = client.post("/api/v1/projects", headers=owner["headers"],
                          json={**TAGGING, "qualification": 1, "gold_warmup_rate": 0.0, "gold_rate": 0.0}).get_json()
    files = {f"{name}.png": png_bytes(colour=(30 * i, 200 - 30 * i, 7)) for i, name in enumerate("abcde")}
    files["manifest.csv"] = b"file,gold\na.png,dog\nb.png,dog\nc.png,\nd.png,\ne.png,\n"
    client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                data={"file": (io.BytesIO(make_zip(files)), "b.zip")}, content_type="multipart/form-data")
    run_jobs()
    return project


def is_gold(session, unit_id: int) -> bool:  # type: ignore[no-untyped-def]
    return session.get(Unit, unit_id).gold is not None


def test_qualification_is_a_project_setting(client, owner, make_project):
    """PATCH sets the qualification (0 to 50) and the project shows it back."""
    project = make_project(TAGGING, n=1)
    url = f"/api/v1/projects/{project['id']}"
    assert client.patch(url, json={"qualification": 3}, headers=owner["headers"]).get_json()["qualification"] == 3
    assert client.patch(url, json={"qualification": 51}, headers=owner["headers"]).status_code == 422


def test_the_settings_page_sets_the_qualification(client, owner, make_project, session):
    """The owner's settings form has the qualification, and saving it stores it."""
    project = make_project(TAGGING, n=1)
    token = sign_in(client, owner)
    page = client.get(f"/owner/projects/{project['id']}/settings").get_data(as_text=True)
    assert 'name="qualification" type="number" value="0"' in page
    reply = client.post(f"/owner/projects/{project['id']}/settings", data={
        "csrf_token": token, "name": "Pets", "labels": "cat\ndog", "task_type": "tagging", "redundancy": "3",
        "languages": "en", "qualification": "2"})
    assert reply.status_code == 302 and session.get(Project, project["id"]).qualification == 2


def test_gold_is_served_first_while_qualifying(client, qualifying, new_volunteer, session):
    """A new volunteer's first unit is gold, though the project's gold rates are 0."""
    unit = lease(client, qualifying, new_volunteer()).get_json()["unit"]
    assert is_gold(session, unit["id"])


def test_the_owner_sees_a_qualifying_volunteer_in_the_quarantine_list(client, owner, qualifying, new_volunteer):
    """A volunteer's first serving lists them as qualifying, with the reason."""
    headers = new_volunteer()
    lease(client, qualifying, headers)
    listed = client.get(f"/api/v1/projects/{qualifying['id']}/quarantine", headers=owner["headers"]).get_json()
    assert [(e["volunteer"], e["reason"], e["released_at"]) for e in listed] == [
        (me(client, headers)["id"], "qualifying: pass 1 gold units", None)]


def test_failing_gold_keeps_the_answers_uncounted(client, qualifying, new_volunteer, session):
    """After a failed gold unit, the volunteer's answer to an ordinary unit is stored but not counted."""
    headers = new_volunteer()
    answer_next(client, qualifying, headers, "cat")  # the gold unit, wrong
    unit_id = answer_next(client, qualifying, headers, "cat")
    assert not is_gold(session, unit_id)
    stored = session.scalars(select(Answer).where(Answer.unit_id == unit_id)).one()
    assert (stored.counted, session.get(Unit, unit_id).answer_count) == (False, 0)


def test_failing_gold_keeps_the_volunteer_qualifying(client, qualifying, new_volunteer, session):
    """A failed gold answer leaves the qualifying entry in force."""
    answer_next(client, qualifying, new_volunteer(), "cat")
    entry = session.scalars(select(Quarantine)).one()
    assert entry.released_at is None and entry.reason.startswith("qualifying:")


def test_passing_the_gold_releases_the_qualification_and_later_answers_count(client, qualifying, new_volunteer,
                                                                             session):
    """Once the volunteer has passed the gold units asked for, their next answers count."""
    headers = new_volunteer()
    answer_next(client, qualifying, headers, "dog")  # the gold unit, right
    entry = session.scalars(select(Quarantine)).one()
    assert entry.released_at is not None and entry.reason == "qualified: passed 1 gold units"
    unit_id = answer_next(client, qualifying, headers, "cat")
    assert not is_gold(session, unit_id) and session.get(Unit, unit_id).answer_count == 1


def test_a_project_without_qualification_records_no_entry(client, make_project, new_volunteer, session):
    """Serving in a project that asks for no qualification leaves the quarantine empty."""
    project = make_project(TAGGING, n=1)
    answer_next(client, project, new_volunteer())
    assert session.scalar(select(func.count()).select_from(Quarantine)) == 0


def test_gold_passed_on_another_device_qualifies_the_account(client, qualifying, new_volunteer, session):
    """Signing in merges the device's passed gold, which ends the account's qualification there."""
    first = new_volunteer()
    lease(client, qualifying, first)  # the account starts qualifying
    sign_up(client, first)
    second = new_volunteer()
    answer_next(client, qualifying, second, "dog")
    log_in(client, headers=second)
    account = session.scalars(select(Volunteer).where(Volunteer.username == "ada")).one()
    entry = session.scalars(select(Quarantine).where(Quarantine.volunteer_id == account.id)).one()
    assert entry.released_at is not None


def test_a_passed_qualification_is_no_pass_for_spam(client, qualifying, new_volunteer, session):
    """The spam rules may still quarantine a volunteer whose qualification was released."""
    answer_next(client, qualifying, new_volunteer(), "dog")
    volunteer_id = session.scalars(select(Quarantine.volunteer_id)).one()
    quarantine(session, session.get(Project, qualifying["id"]), volunteer_id, "answers implausibly fast")
    session.commit()
    entry = session.scalars(select(Quarantine)).one()
    assert (entry.reason, entry.released_at) == ("answers implausibly fast", None)
