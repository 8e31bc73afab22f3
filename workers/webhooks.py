"""Posting webhook events: signed, with a timeout, retried with backoff by RQ until the receiver says 2xx."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import datetime

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job
from sqlalchemy import select
from sqlalchemy.orm import Session

from microtasks.models import Project, WebhookDelivery, utcnow
from microtasks.webhooks import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, UnsafeDestination, body, \
    check_destination, signature
from workers.connection import queue

#: Seconds to wait for a receiver.
TIMEOUT = 10
#: The job that posts one delivery.
DELIVER = "workers.webhooks.deliver_webhook"
#: Waits between attempts: 10 s, 1 min, 5 min, 30 min, 2 h, 6 h; then the job stays in the failed registry.
BACKOFF = [10, 60, 300, 1800, 7200, 21600]


class DeliveryFailed(Exception):
    """The receiver did not take the event; RQ tries again later."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None  # a redirect could lead to an address check_destination refused


_opener = urllib.request.build_opener(_NoRedirects)


def _job(delivery_id: int) -> dict:
    return {"job_id": f"webhook-{delivery_id}", "retry": Retry(max=len(BACKOFF), interval=BACKOFF),
            "result_ttl": 3600, "failure_ttl": 30 * 86400}


def enqueue_deliveries(connection: "redis.Redis", delivery_ids: list[int]) -> None:
    jobs = [Queue.prepare_data(DELIVER, (delivery_id,), **_job(delivery_id)) for delivery_id in delivery_ids]
    if jobs:
        queue(connection, "default").enqueue_many(jobs)


def requeue_lost_deliveries(session: Session, connection: "redis.Redis", before: datetime) -> int:
    """Queue again the deliveries recorded before ``before``, not delivered, with attempts left, whose job
    Redis does not know (lost with Redis); returns how many."""
    waiting = session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.delivered_at.is_(None), WebhookDelivery.attempts <= len(BACKOFF),
        WebhookDelivery.created_at < before)).all()
    pipe = connection.pipeline(transaction=False)
    for delivery_id in waiting:
        pipe.exists(Job.key_for(_job(delivery_id)["job_id"]))
    lost = [delivery_id for delivery_id, known in zip(waiting, pipe.execute()) if not known]
    webhooks = queue(connection, "default")
    for delivery_id in lost:
        try:
            webhooks.enqueue(DELIVER, delivery_id, unique=True, **_job(delivery_id))
        except DuplicateJobError:  # queued meanwhile by its drain job
            pass
    return len(lost)


def deliver_webhook(delivery_id: int) -> dict:
    """POST one recorded event to its project's webhook; raise (so RQ retries) unless it answers 2xx."""
    from workers.jobs import job_session

    with job_session() as (settings, session):
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.delivered_at is not None:
            return {"delivery_id": delivery_id, "skipped": True}
        project = session.get(Project, delivery.project_id)
        payload = body(delivery)
        stamp = str(int(time.time()))
        request = urllib.request.Request(delivery.url, data=payload, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "microtasks-webhook/1",
            EVENT_HEADER: delivery.event, TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: signature(project.webhook_secret or "", stamp, payload)})
        delivery.attempts += 1
        error = status = None
        try:
            check_destination(delivery.url, settings.webhook_allow_private)
            with _opener.open(request, timeout=TIMEOUT) as response:
                status = response.status
        except urllib.error.HTTPError as failure:
            status, error = failure.code, f"HTTP {failure.code}"
        except (urllib.error.URLError, UnsafeDestination, OSError) as failure:
            error = str(getattr(failure, "reason", failure))
        delivery.status_code, delivery.last_error = status, error
        if error is None and status is not None and 200 <= status < 300:
            delivery.delivered_at = utcnow()
        session.commit()
        if delivery.delivered_at is None:
            raise DeliveryFailed(f"webhook {delivery_id} to {delivery.url}: {error or f'HTTP {status}'}")
        return {"delivery_id": delivery_id, "status": status, "attempts": delivery.attempts}
