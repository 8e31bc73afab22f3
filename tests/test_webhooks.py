"""Webhooks: signed events when a unit retires and when a project completes, retried until taken."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from microtasks.models import WebhookDelivery
from microtasks.webhooks import signature
from tests.conftest import TAGGING, answer
from workers.webhooks import deliver_webhook


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent and answers with ``statuses`` in turn."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        return [json.loads(r["body"])["event"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver listens on loopback
    server = Receiver()
    yield server
    server.close()


def finish(client, project, new_volunteer, run_jobs, label: str = "cat") -> None:  # type: ignore[no-untyped-def]
    """Three volunteers answer every unit; the workers run."""
    for _ in range(project["redundancy"]):
        headers = new_volunteer()
        while (unit := client.post(f"/api/v1/projects/{project['id']}/next", headers=headers)
               .get_json()["unit"]) is not None:
            answer(client, headers, unit["id"], {"label": label})
    run_jobs()


def test_a_retired_unit_posts_a_signed_event(client, make_project, new_volunteer, run_jobs, receiver):
    """The unit.retired event carries the consensus and a signature the project's secret verifies."""
    project = make_project({**TAGGING, "webhook_url": receiver.url, "redundancy": 2}, n=2)
    finish(client, project, new_volunteer, run_jobs)
    retired = [r for r in receiver.requests if json.loads(r["body"])["event"] == "unit.retired"]
    assert len(retired) == 2
    sent = retired[0]
    secret = project["webhook_secret"]
    stamp = sent["headers"]["X-Microtasks-Timestamp"]
    assert sent["headers"]["X-Microtasks-Signature"] == signature(secret, stamp, sent["body"])
    assert json.loads(sent["body"])["consensus"]["result"]["label"] == "cat"


def test_a_completed_project_is_announced_once(client, make_project, new_volunteer, run_jobs, receiver):
    """When the last unit retires, one project.completed event follows the unit events."""
    project = make_project({**TAGGING, "webhook_url": receiver.url, "redundancy": 2}, n=3)
    finish(client, project, new_volunteer, run_jobs)
    assert sorted(receiver.events()) == ["project.completed"] + ["unit.retired"] * 3


def test_a_failing_receiver_is_retried_until_it_takes_the_event(client, make_project, new_volunteer, run_jobs,
                                                                 receiver, session):
    """A 500 leaves the event undelivered for RQ to retry; the next attempt delivers it, once."""
    receiver.statuses = [500, 500, 500]  # the first unit event, the second, and the completion
    project = make_project({**TAGGING, "webhook_url": receiver.url, "redundancy": 1}, n=2)
    finish(client, project, new_volunteer, run_jobs)
    undelivered = session.scalars(select(WebhookDelivery).where(WebhookDelivery.delivered_at.is_(None))).all()
    assert [(d.attempts, d.status_code) for d in undelivered] == [(1, 500)] * 3
    for delivery in undelivered:
        assert deliver_webhook(delivery.id)["status"] == 204
    session.expire_all()
    assert all(d.delivered_at and d.attempts == 2 for d in session.scalars(select(WebhookDelivery)))
    assert deliver_webhook(undelivered[0].id) == {"delivery_id": undelivered[0].id, "skipped": True}


def test_failed_deliveries_are_scheduled_with_backoff(client, make_project, new_volunteer, run_jobs, receiver,
                                                      redis_db):
    """A failed attempt puts the job in RQ's scheduled registry, not the failed one."""
    from workers.connection import queue

    receiver.statuses = [503, 503]
    project = make_project({**TAGGING, "webhook_url": receiver.url, "redundancy": 1}, n=1)
    finish(client, project, new_volunteer, run_jobs)
    default = queue(redis_db, "default")
    assert len(default.scheduled_job_registry.get_job_ids()) == 2
    assert default.failed_job_registry.count == 0


def test_webhooks_to_private_addresses_are_refused_by_default(client, make_project, new_volunteer, run_jobs,
                                                             receiver, session, monkeypatch):
    """Without WEBHOOK_ALLOW_PRIVATE, a loopback URL is never called: the attempt records why."""
    monkeypatch.delenv("WEBHOOK_ALLOW_PRIVATE")
    project = make_project({**TAGGING, "webhook_url": receiver.url, "redundancy": 1}, n=1)
    finish(client, project, new_volunteer, run_jobs)
    assert receiver.requests == []
    errors = session.scalars(select(WebhookDelivery.last_error)).all()
    assert errors and all("private or local address" in error for error in errors)


def test_a_project_without_a_webhook_records_no_events(client, make_project, new_volunteer, run_jobs, session):
    """No URL, no deliveries; the project is still marked completed."""
    from microtasks.models import Project

    project = make_project({**TAGGING, "redundancy": 1}, n=1)
    finish(client, project, new_volunteer, run_jobs)
    assert session.scalars(select(WebhookDelivery)).all() == []
    assert session.get(Project, project["id"]).completed_at is not None
