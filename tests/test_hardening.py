"""Web hardening: CSRF, cookies, headers and the CSP, escaping of owners' texts, secrets, hashes and addresses."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import select

from microtasks.models import ApiKey, Base, Owner, Volunteer
from tests.conftest import TAGGING, answer, csrf_token, make_zip, png_bytes, sign_in
from web.auth import owner_required

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
#: What a hostile owner writes into every text of a project.
PAYLOADS = ('<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "'><svg onload=alert(1)>",
            '</textarea><script>alert(1)</script>', '</script><script>alert(2)</script>')
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


# -- helpers: a hostile project, every page of the app, and everything stored ----------------

def _fill(rule: str, values: dict[str, Any]) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: str(values.get(match.group(1), "x")), rule)


class _Scan(HTMLParser):
    """What in a page could run script (script elements that are not JSON data, event handler attributes,
    ``javascript:`` addresses), and the fields of each form that posts."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.forms: list[list[str]] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and "src" not in found and found.get("type") != "application/json":
            self.scripts.append(self.get_starttag_text() or tag)
        for name, value in attrs:
            if name.startswith("on") or (name in ("href", "src", "action", "formaction")
                                         and (value or "").strip().lower().startswith("javascript:")):
                self.scripts.append(self.get_starttag_text() or tag)
        if tag == "form":
            self._in_form = (found.get("method") or "get").lower() == "post"
            if self._in_form:
                self.forms.append([])
        elif tag in ("input", "button", "textarea", "select") and self._in_form and found.get("name"):
            self.forms[-1].append(found["name"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _scan(html: str) -> _Scan:
    scan = _Scan()
    scan.feed(html)
    return scan


def _hostile(client, headers: dict[str, str], slug: str, published: bool) -> dict[str, Any]:  # type: ignore
    """A project with the payloads in every text an owner gives, and a batch whose manifest carries them too."""
    guide = [{"label": payload, "text": payload} for payload in PAYLOADS]
    steps = [{"title": payload, "text": payload} for payload in PAYLOADS]
    texts = " ".join(PAYLOADS)
    settings = {**TAGGING, "slug": slug, "name": texts, "description": texts, "instructions": texts,
                "labels": list(PAYLOADS), "field_guide": guide, "tutorial": steps, "topics": list(PAYLOADS),
                "languages": ["en", "ar"], "published": published,
                "translations": {"ar": {"name": texts, "description": texts, "instructions": texts,
                                        "labels": {payload: payload for payload in PAYLOADS},
                                        "field_guide": guide, "tutorial": steps}}}
    created = client.post("/api/v1/projects", json=settings, headers=headers)
    assert created.status_code == 201, created.get_json()
    project = created.get_json()
    manifest = "\n".join(json.dumps({"file": f"{i}.png", "name": payload, "note": payload})
                         for i, payload in enumerate(PAYLOADS))
    files = {f"{i}.png": png_bytes(colour=(i * 40, 0, 0)) for i in range(len(PAYLOADS))}
    upload = client.post(f"/api/v1/projects/{project['id']}/batches", headers=headers,
                         data={"file": (io.BytesIO(make_zip({**files, "manifest.jsonl": manifest.encode()})), "b.zip")},
                         content_type="multipart/form-data")
    assert upload.status_code == 202, upload.get_json()
    return project


@pytest.fixture()
def site(app, run_jobs) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A hostile owner (their name a payload too) with a published and a draft project, a volunteer who answered
    in the published one, and an anonymous visitor: each with a client of its own."""
    owner = app.test_client()
    signed_up = owner.post("/owner/signup", data={"name": PAYLOADS[1], "username": "mallory", "password": PASSWORD,
                                                  "confirm": PASSWORD, "csrf_token": csrf_token(owner)})
    assert signed_up.status_code == 302
    headers = {"X-CSRF-Token": csrf_token(owner, "/owner/")}  # the pages' session, as the pages' scripts use it
    published = _hostile(owner, headers, "hostile", True)
    draft = _hostile(owner, headers, "draft", False)
    run_jobs()
    volunteer = app.test_client()
    volunteer.get("/p/hostile")  # the pages' cookie is the volunteer's identity
    unit = volunteer.post(f"/api/v1/projects/{published['id']}/next").get_json()["unit"]
    assert answer(volunteer, {}, unit["id"], {"label": PAYLOADS[0]}).status_code == 201
    values = [{"project_id": project["id"], "slug": project["slug"]} for project in (published, draft)]
    return {"owner": owner, "volunteer": volunteer, "anonymous": app.test_client(), "values": values,
            "extra": [f"/?topic={quote(PAYLOADS[0])}", f"/p/{quote(PAYLOADS[1])}", f"/p/{quote(PAYLOADS[2])}/about"]}


def _pages(app, site: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:  # type: ignore[no-untyped-def]
    """Every HTML response to a GET of each route but the JSON API's (in English and Arabic) for the owner, the
    volunteer and the anonymous visitor: ``(caller, path, response)``."""
    paths = {_fill(rule.rule, values) for rule in app.url_map.iter_rules()
             if "GET" in rule.methods and not rule.rule.startswith("/api/v1/") for values in site["values"]}
    paths |= set(site["extra"])
    for caller in ("owner", "volunteer", "anonymous"):
        for path in sorted(paths):
            for lang in ("en", "ar"):
                response = site[caller].get(f"{path}{'&' if '?' in path else '?'}lang={lang}")
                if response.mimetype == "text/html":
                    yield caller, f"{path} ({lang})", response
                response.close()


def _stored_text(session_maker) -> str:  # type: ignore[no-untyped-def]
    """Every value of every row of every table, as text."""
    with session_maker() as session:
        return "\n".join(repr(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in session.execute(table.select()))


def _redis_text(redis) -> str:  # type: ignore[no-untyped-def]
    """Every key and value in Redis, as text (zlib-compressed values, such as RQ's job data, uncompressed)."""
    def readable(value: Any) -> str:
        if isinstance(value, bytes):
            try:
                value = zlib.decompress(value)
            except zlib.error:
                pass
        return repr(value)

    read = {"string": redis.get, "hash": lambda key: list(redis.hgetall(key).items()),
            "list": lambda key: redis.lrange(key, 0, -1), "set": redis.smembers,
            "zset": lambda key: redis.zrange(key, 0, -1, withscores=True), "stream": redis.xrange}
    parts = []
    for key in redis.scan_iter():
        value = read[redis.type(key).decode()](key)
        items = value if isinstance(value, (list, set)) else [value]
        parts.append(readable(key) + " " + " ".join(readable(part) for item in items
                                                    for part in (item if isinstance(item, tuple) else (item,))))
    return "\n".join(parts)


# -- CSRF ----------------------------------------------------------------------------------

def test_owner_and_account_forms_refuse_a_post_without_the_sessions_csrf_token(app, client, owner, make_project):
    """Every form POST of the owner and /me pages is a 400 without the token or with another session's token,
    and changes nothing (the owner is still signed in)."""
    project = make_project(TAGGING, n=1)
    sign_in(client, owner)
    client.get(f"/p/{project['slug']}")  # a volunteer's cookie too
    foreign = csrf_token(app.test_client())
    rules = [rule for rule in app.url_map.iter_rules()
             if "POST" in rule.methods and rule.endpoint.partition(".")[0] in ("owner", "volunteer_account")]
    assert len(rules) >= 13
    for rule in rules:
        path = _fill(rule.rule, {"project_id": project["id"]})
        for data in ({"api_key": owner["key"], "action": "new-key", "confirm": "1", "published": "0"},
                     {"api_key": owner["key"], "csrf_token": foreign}):
            assert client.post(path, data=data).status_code == 400, path  # the pages' "this form has expired"
    assert client.get("/owner/").status_code == 200


def test_api_writes_on_the_owner_pages_session_need_the_csrf_token(app, client, owner, make_project):
    """Each write of the owner API is a 400 on the strength of the pages' session alone: only the pages' scripts,
    which send X-CSRF-Token, may use it; an API key needs no token."""
    project = make_project(TAGGING, n=1)
    token = sign_in(client, owner)
    writes = [(method, _fill(rule.rule, {"project_id": project["id"], "key_id": 1}))
              for rule in app.url_map.iter_rules()
              if owner_required in getattr(getattr(app.view_functions[rule.endpoint], "view_class", None),
                                           "decorators", ())
              for method in sorted(rule.methods & UNSAFE)]
    assert len(writes) >= 8
    for method, path in writes:
        refused = client.open(path, method=method, json={})
        assert refused.status_code == 400 and "CSRF" in refused.get_json()["message"], (method, path)
    assert client.post("/api/v1/keys", json={}, headers={"X-CSRF-Token": token}).status_code == 201


def test_every_form_that_posts_carries_the_csrf_token(app, site):
    """Each POST form on every page (owner, volunteer, anonymous) has the session's csrf_token field."""
    forms = [(caller, path, fields) for caller, path, response in _pages(app, site)
             for fields in _scan(response.get_data(as_text=True)).forms]
    assert len({path for _, path, _ in forms}) >= 8
    assert [(caller, path) for caller, path, fields in forms if "csrf_token" not in fields] == []


# -- cookies ---------------------------------------------------------------------------------

def _cookie(response, name: str) -> str:  # type: ignore[no-untyped-def]
    found = [header for header in response.headers.getlist("Set-Cookie") if header.startswith(f"{name}=")]
    assert found, response.headers.getlist("Set-Cookie")
    return found[0]


def test_the_session_cookie_is_httponly_and_samesite_lax(client):
    """The owner pages' session cookie cannot be read by scripts nor sent by other sites' forms."""
    cookie = _cookie(client.get("/owner/login"), "session")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP (development) keeps working


def test_cookies_are_secure_over_https(client, make_project):
    """Over HTTPS the session and volunteer cookies are Secure."""
    project = make_project(TAGGING, n=1)
    login = client.get("/owner/login", base_url="https://microtasks.example")
    task = client.get(f"/p/{project['slug']}", base_url="https://microtasks.example")
    assert "Secure" in _cookie(login, "session") and "Secure" in _cookie(task, "mt_volunteer")


def test_over_https_browsers_are_told_to_keep_to_https(client):
    """Responses over HTTPS carry Strict-Transport-Security; over plain HTTP (development) they do not."""
    assert client.get("/", base_url="https://microtasks.example").headers["Strict-Transport-Security"] == \
        "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/").headers


def test_behind_a_trusted_proxy_the_forwarded_scheme_makes_cookies_secure(settings, redis_db, session_maker):
    """With TRUSTED_PROXIES=1 the proxy's X-Forwarded-Proto counts; without it, that header is ignored."""
    from web import create_app

    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    for proxies, secure in ((1, True), (0, False)):
        app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "SETTINGS": settings, "REDIS": redis_db,
                          "TRUSTED_PROXIES": proxies})
        cookie = _cookie(app.test_client().get("/owner/login", headers=https), "session")
        assert ("Secure" in cookie) is secure


# -- headers, CSP and inline scripts --------------------------------------------------------------

def test_every_response_carries_the_security_headers(client):
    """Pages, API answers, errors and static files all carry nosniff, DENY, the referrer policy and the CSP."""
    for path in ("/", "/owner/login", "/me", "/api/docs", "/api/v1/health", "/api/openapi.json",
                 "/static/css/app.css", "/no-such-page", "/api/v1/no-such-thing", "/api/v1/volunteers/me"):
        headers = client.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["Referrer-Policy"] == "same-origin", path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path


def test_the_csp_of_every_page_allows_no_inline_script(app, site):
    """No page's Content-Security-Policy lets inline or eval'd script run (script-src, or default-src)."""
    pages = 0
    for caller, path, response in _pages(app, site):
        header = response.headers["Content-Security-Policy"]
        policy = {name: sources for name, *sources in (part.split() for part in header.split(";") if part.strip())}
        scripts = policy.get("script-src", policy.get("default-src", ["*"]))
        assert scripts == ["'self'"], (caller, path, scripts)
        pages += 1
    assert pages >= 30


def test_no_page_has_inline_script(app, site):
    """Rendered pages hold scripts only by src (and JSON data blocks): no inline code, event handler
    attribute or javascript: address, even with an owner's hostile texts in them."""
    found = {(caller, path): scan.scripts for caller, path, response in _pages(app, site)
             if (scan := _scan(response.get_data(as_text=True))).scripts}
    assert found == {}


# -- escaping owners' texts ---------------------------------------------------------------------

def test_owners_texts_are_escaped_on_every_page(app, site):
    """Payloads in a project's name, description, instructions, labels, field guide, tutorial, translations,
    topics, unit names and metadata (and in the owner's name and the URL) never appear unescaped."""
    seen = set()
    for caller, path, response in _pages(app, site):
        page = response.get_data(as_text=True)
        assert [payload for payload in PAYLOADS if payload in page] == [], (caller, path)
        seen |= {(caller, path.partition("?")[0].partition(" ")[0])}
    for where in (("anonymous", "/"), ("volunteer", "/p/hostile"), ("volunteer", "/p/hostile/about"),
                  ("volunteer", "/me"), ("owner", "/owner/"), ("owner", "/owner/account"),
                  ("owner", f"/owner/projects/{site['values'][1]['project_id']}"),
                  ("owner", f"/owner/projects/{site['values'][0]['project_id']}/settings")):
        assert where in seen


# -- secrets, hashes and addresses -------------------------------------------------------------------

def test_the_secret_key_comes_from_the_environment(settings, redis_db, tmp_path, monkeypatch):
    """SECRET_KEY in the environment is the app's secret; nothing is written to the instance folder."""
    from web import create_app

    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    app = create_app({"SETTINGS": dataclasses.replace(settings, instance_dir=tmp_path), "REDIS": redis_db})
    assert app.secret_key == "from-the-environment" and not (tmp_path / "secret_key").exists()


def test_without_one_a_random_secret_key_is_kept_in_the_instance_folder(settings, redis_db, tmp_path, monkeypatch):
    """Each instance generates its own long random secret once, readable by its user only."""
    from web import create_app

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("MICROTASKS_SECRET_KEY", raising=False)
    keys = []
    for name in ("one", "two", "one"):
        app = create_app({"SETTINGS": dataclasses.replace(settings, instance_dir=tmp_path / name), "REDIS": redis_db})
        path = tmp_path / name / "secret_key"
        assert app.secret_key == path.read_text().strip() and path.stat().st_mode & 0o777 == 0o600
        keys.append(app.secret_key)
    assert keys[0] == keys[2] != keys[1] and len(keys[0]) >= 43


@pytest.fixture()
def app_with(settings, redis_db):  # type: ignore[no-untyped-def]
    """An app on the same database and Redis with the given SECRET_KEY and SECRET_KEY_FALLBACKS."""
    from web import create_app

    def make(key: str, fallbacks: str = ""):  # type: ignore[no-untyped-def]
        return create_app({"TESTING": True, "SECRET_KEY": key, "SECRET_KEY_FALLBACKS": fallbacks,
                           "SETTINGS": settings, "REDIS": redis_db})

    return make


def test_rotating_the_secret_key_keeps_volunteers_and_owners_signed_in(app_with, owner):
    """With the old key among SECRET_KEY_FALLBACKS, tokens and sessions it signed still work; without, they end."""
    before = app_with("old key").test_client()
    token = {"X-Volunteer-Token": before.post("/api/v1/volunteers").get_json()["token"]}
    sign_in(before, owner)
    session_cookie = before.get_cookie("session").value
    rotated, forgotten = app_with("new key", "older key, old key").test_client(), app_with("new key").test_client()
    for client in (rotated, forgotten):
        client.set_cookie("session", session_cookie)
    assert rotated.get("/api/v1/volunteers/me", headers=token).status_code == 200
    assert rotated.get("/owner/").status_code == 200
    assert forgotten.get("/api/v1/volunteers/me", headers=token).status_code == 401
    assert forgotten.get("/owner/").status_code == 302  # back to the sign-in page


def test_a_page_signs_a_volunteer_cookie_of_a_rotated_key_anew(app_with, make_project):
    """The task page re-signs a cookie that only a fallback key verifies: the volunteer is kept once the old key
    is dropped. A cookie of the current key is left as it is."""
    project = make_project(TAGGING, n=1)
    before = app_with("old key").test_client()
    before.get(f"/p/{project['slug']}")
    old_cookie = before.get_cookie("mt_volunteer").value
    me = before.get("/api/v1/volunteers/me").get_json()["id"]
    rotated = app_with("new key", "old key").test_client()
    rotated.set_cookie("mt_volunteer", old_cookie)
    rotated.get(f"/p/{project['slug']}")
    new_cookie = rotated.get_cookie("mt_volunteer").value
    assert new_cookie != old_cookie
    assert rotated.get(f"/p/{project['slug']}").headers.get("Set-Cookie") is None  # signed anew once only
    forgotten = app_with("new key").test_client()
    forgotten.set_cookie("mt_volunteer", new_cookie)
    assert forgotten.get("/api/v1/volunteers/me").get_json()["id"] == me


def test_an_app_gets_its_volunteer_token_signed_anew_from_me(app_with):
    """GET /volunteers/me with a token answers with the token signed by the current key, which outlives the old
    key; a call on the pages' cookie never shows the token to a script."""
    before = app_with("old key").test_client()
    created = before.post("/api/v1/volunteers").get_json()
    rotated = app_with("new key", "old key").test_client()
    renewed = rotated.get("/api/v1/volunteers/me", headers={"X-Volunteer-Token": created["token"]}).get_json()
    forgotten = app_with("new key").test_client()
    me = forgotten.get("/api/v1/volunteers/me", headers={"X-Volunteer-Token": renewed["token"]})
    assert me.status_code == 200 and me.get_json()["id"] == created["id"]
    rotated.set_cookie("mt_volunteer", created["token"])
    assert "token" not in rotated.get("/api/v1/volunteers/me").get_json()


def test_no_secret_key_is_written_in_the_code():
    """No file of the app assigns a literal to SECRET_KEY (tests and benchmarks set their own, for their runs)."""
    literal = re.compile(r"""(?i)secret_?key['"]?\]?\s*[:=,]\s*[rbf]?['"]""")
    sources = [path for folder in ("microtasks", "web", "workers", "fixtures")
               for path in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 20
    assert [str(path) for path in sources if literal.search(path.read_text())] == []


def test_api_keys_and_passwords_are_stored_only_as_hashes(client, session_maker):
    """No API key or password is anywhere in the database: keys as SHA-256, passwords as salted scrypt."""
    owner_password, volunteer_password = "owner pass phrase 1", "volunteer pass phrase 2"
    client.post("/owner/signup", data={"name": "Ann", "username": "ann", "password": owner_password,
                                       "confirm": owner_password, "csrf_token": csrf_token(client)})
    key = client.post("/api/v1/keys", json={"name": "script"},
                      headers={"X-CSRF-Token": csrf_token(client, "/owner/")}).get_json()["key"]
    volunteer = {"X-Volunteer-Token": client.post("/api/v1/volunteers").get_json()["token"]}
    assert client.post("/api/v1/volunteers/account", headers=volunteer,
                       json={"username": "vic", "password": volunteer_password}).status_code == 201
    stored = _stored_text(session_maker)
    assert [secret for secret in (key, key[3:], owner_password, volunteer_password) if secret in stored] == []
    with session_maker() as session:
        assert session.scalars(select(ApiKey.key_hash).where(ApiKey.prefix == key[:10])).one() == \
            hashlib.sha256(key.encode()).hexdigest()
        hashes = [session.scalars(select(Owner.password_hash).where(Owner.username == "ann")).one(),
                  session.scalars(select(Volunteer.password_hash).where(Volunteer.username == "vic")).one()]
    assert all(stored_hash.startswith("scrypt$") for stored_hash in hashes)


@pytest.mark.parametrize("address", ["203.0.113.77", "2001:db8::77"])
def test_raw_addresses_are_never_stored(app, owner, make_project, run_jobs, session_maker, redis_db, address):
    """After a volunteer's and an owner's visits from one address, neither the database nor Redis (rate limit
    keys included) holds that address."""
    project = make_project(TAGGING, n=2)
    visitor = app.test_client()
    visitor.environ_base["REMOTE_ADDR"] = address
    visitor.get("/")
    visitor.get(f"/p/{project['slug']}")
    unit = visitor.post(f"/api/v1/projects/{project['id']}/next").get_json()["unit"]
    assert answer(visitor, {}, unit["id"], {"label": "cat"}).status_code == 201
    token = {"X-Volunteer-Token": visitor.post("/api/v1/volunteers").get_json()["token"]}
    visitor.post("/api/v1/volunteers/account", headers=token, json={"username": "ip-test", "password": PASSWORD})
    visitor.post("/api/v1/volunteers/login", json={"username": "ip-test", "password": "wrong password"})
    visitor.post("/me/signup", data={"username": "ip-page", "password": PASSWORD, "confirm": PASSWORD,
                                     "csrf_token": csrf_token(visitor, "/me")})
    visitor.post("/owner/login", data={"api_key": "mt_wrong", "csrf_token": csrf_token(visitor)})
    sign_in(visitor, owner)
    visitor.get(f"/owner/projects/{project['id']}")
    run_jobs()
    assert any(b"mt-limits" in key for key in redis_db.scan_iter())  # the limiter did count this address
    assert address not in _stored_text(session_maker)
    assert address not in _redis_text(redis_db)
