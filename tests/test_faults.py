"""Failures of the services around the app: an unreachable database or Redis, lost jobs, interrupted requests.

Each test checks one behaviour the fault suite (benchmarks/faults.py) relies on, cheaply,
on the real services; the suite itself kills and restarts them under load.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import uuid
from datetime import timedelta

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select

from microtasks.answers import submit_answer
from microtasks.models import Batch, ConsensusResult, WebhookDelivery, utcnow
from microtasks.serving import prefix
from tests.test_serving import answer, dispatcher, lease, project_with, volunteers  # noqa: F401  (fixtures too)
from workers.connection import queue
from workers.worker import Worker, enqueue_sweep


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_unavailable(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    body = response.get_json()
    assert (body["code"], body["status"]) == (503, "Service Unavailable")


def test_the_api_answers_503_with_retry_after_when_the_database_is_unreachable(settings, redis_db):
    """With the database down, a call that needs it gets 503, a Retry-After and the API's JSON error."""
    from web import create_app

    down = dataclasses.replace(settings, database_url=f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/none")
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "SETTINGS": down, "REDIS": redis_db})
    assert_unavailable(app.test_client().post("/api/v1/volunteers"))


def test_the_api_answers_503_with_retry_after_when_redis_is_unreachable(settings):
    """With Redis down, the health check (and every rate-limited call) gets 503 and a Retry-After."""
    from web import create_app

    gone = redis.Redis(host="127.0.0.1", port=closed_port(), retry=Retry(NoBackoff(), 0))  # fail at once
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "SETTINGS": settings, "REDIS": gone})
    client = app.test_client()
    assert_unavailable(client.get("/api/v1/health"))
    assert_unavailable(client.post("/api/v1/volunteers"))


def test_a_unit_whose_serving_was_not_committed_can_still_be_answered(session_maker, dispatcher, project_with):
    """A lease whose transaction failed after Redis recorded it is given again, and its answer is taken."""
    project_id = project_with(n=2)
    (volunteer_id,) = volunteers(session_maker, 1)
    with session_maker() as session:
        (lost,) = dispatcher.lease(session, project_id, volunteer_id)
        session.rollback()  # the database went away before the commit
    assert lease(session_maker, dispatcher, project_id, volunteer_id) == [lost.unit_id]
    with session_maker() as session:
        assert submit_answer(session, volunteer_id, lost.unit_id, str(uuid.uuid4()), {"label": "cat"}).created


def test_an_answer_committed_during_a_rebuild_is_not_served_again(session_maker, dispatcher, project_with, redis_db):
    """An answer whose cache update arrives while its project is rebuilt is applied once the rebuild is done."""
    project_id = project_with(n=2)
    (volunteer_id,) = volunteers(session_maker, 1)
    (unit_id,) = lease(session_maker, dispatcher, project_id, volunteer_id)
    # A rebuild in progress, which read the database before the answer: it will write the lease back.
    p = prefix(project_id)
    redis_db.set(p + "loading", "1", ex=60)
    redis_db.rename(p + "cfg", p + "cfg-rebuilding")
    answering = threading.Thread(target=answer, args=(session_maker, dispatcher, project_id, volunteer_id, unit_id))
    answering.start()
    time.sleep(0.3)
    redis_db.rename(p + "cfg-rebuilding", p + "cfg")
    redis_db.delete(p + "loading")
    answering.join(10)
    assert unit_id not in lease(session_maker, dispatcher, project_id, volunteer_id, count=2)


def test_the_sweep_queues_consensus_lost_with_redis(session_maker, dispatcher, project_with, redis_db, run_jobs,
                                                     session):
    """A unit that got all its answers while its consensus job was lost (Redis restarted) gets its consensus."""
    project_id = project_with(n=1, redundancy=2)
    for volunteer_id in volunteers(session_maker, 2):
        (unit_id,) = lease(session_maker, dispatcher, project_id, volunteer_id)
        answer(session_maker, dispatcher, project_id, volunteer_id, unit_id)
    redis_db.flushdb()  # the queued consensus job is lost
    enqueue_sweep(redis_db)
    run_jobs()
    assert session.scalars(select(ConsensusResult.n_answers).where(ConsensusResult.unit_id == unit_id)).one() == 2


def test_the_sweep_leaves_a_unit_whose_consensus_is_being_computed(session_maker, dispatcher, project_with,
                                                                     redis_db):
    """A unit out of the due set but not lost (a drain job took it and commits a moment later) is not queued
    again: the sweep looks twice, some seconds apart."""
    from microtasks.results import compute_consensus
    from workers.connection import DUE_KEY
    from workers.jobs import sweep

    project_id = project_with(n=1, redundancy=2)
    for volunteer_id in volunteers(session_maker, 2):
        (unit_id,) = lease(session_maker, dispatcher, project_id, volunteer_id)
        answer(session_maker, dispatcher, project_id, volunteer_id, unit_id)
    redis_db.delete(DUE_KEY)  # a drain job has taken it
    sweeping = threading.Thread(target=sweep)
    sweeping.start()
    time.sleep(1.5)  # the sweep's first look is done
    with session_maker() as session:
        compute_consensus(session, [unit_id])
        session.commit()
    sweeping.join(30)
    assert redis_db.scard(DUE_KEY) == 0


def test_the_sweep_queues_webhook_deliveries_lost_with_redis(session_maker, project_with, redis_db):
    """Undelivered events whose job Redis lost are queued again; delivered, recent or exhausted ones are not."""
    from workers.jobs import LOST_AFTER, sweep

    project_id = project_with(n=1)
    old = utcnow() - LOST_AFTER - timedelta(seconds=5)
    kinds = {"lost": dict(created_at=old), "delivered": dict(created_at=old, delivered_at=old),
             "recent": dict(created_at=utcnow()), "exhausted": dict(created_at=old, attempts=7)}
    with session_maker() as session:
        ids = {}
        for kind, values in kinds.items():
            delivery = WebhookDelivery(project_id=project_id, event="unit.retired", event_key=kind, payload={},
                                       url="https://example.org/hook", **{"attempts": 0, **values})
            session.add(delivery)
            session.flush()
            ids[kind] = delivery.id
        session.commit()
    sweep()
    assert queue(redis_db, "default").job_ids == [f"webhook-{ids['lost']}"]
    sweep()  # its job is known now
    assert queue(redis_db, "default").count == 1


def test_the_sweep_queues_an_upload_whose_import_was_lost_with_redis(session_maker, project_with, redis_db):
    """An upload still waiting for its import, whose job Redis lost, is queued for import again."""
    from workers.jobs import LOST_AFTER, sweep

    project_id = project_with(n=1)
    with session_maker() as session:
        batch = Batch(project_id=project_id, name="lost.zip", created_at=utcnow() - LOST_AFTER - timedelta(seconds=5))
        session.add(batch)
        session.commit()
    sweep()
    assert queue(redis_db, "imports").job_ids == [f"import-{batch.id}"]


def test_each_maintenance_round_of_a_worker_queues_the_sweep(redis_db):
    """Workers queue the sweep from their maintenance rounds, once however many workers there are."""
    for _ in range(2):
        Worker(["consensus"], connection=redis_db).run_maintenance_tasks()
    assert queue(redis_db, "consensus").job_ids == ["sweep"]
