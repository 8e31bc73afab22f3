"""Webhook events: what is sent when a unit retires and when a project completes, and how it is signed.

Each event is recorded once (its ``event_key`` is unique), then a worker posts it
(see ``workers/webhooks.py``) and retries with backoff until the receiver answers
2xx. A receiver checks a request by recomputing the signature over the timestamp
and the raw body with the project's webhook secret, and refuses old timestamps.

Example:
    >>> signature("secret", "1700000000", b'{"event": "unit.retired"}')
    'sha256=334f9404652cec91b7822dc5f193a1f8be21939e276a4f32bdf409025236804d'
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from microtasks.db import upsertable_insert
from microtasks.models import ConsensusResult, Project, Unit, UnitState, WebhookDelivery, utcnow

SIGNATURE_HEADER = "X-Microtasks-Signature"
TIMESTAMP_HEADER = "X-Microtasks-Timestamp"
EVENT_HEADER = "X-Microtasks-Event"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed by the project's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def body(delivery: WebhookDelivery) -> bytes:
    return json.dumps(delivery.payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _record(session: Session, project: Project, event: str, key: str, payload: dict[str, Any]) -> int | None:
    """Store an event once; the new delivery's id, or None when it was recorded before."""
    insert = upsertable_insert(session, WebhookDelivery.__table__)
    statement = insert.values(project_id=project.id, event=event, event_key=key[:120], url=project.webhook_url,
                              payload={"event": event, **payload}, attempts=0, created_at=utcnow())
    return session.scalar(statement.on_conflict_do_nothing(index_elements=["event_key"])
                          .returning(WebhookDelivery.id))


def after_consensus(session: Session, units: list[Unit]) -> list[int]:
    """Events due after units' consensus was written: ``unit.retired`` for each retired unit, and
    ``project.completed`` for a project whose last open unit was among them.

    Marks such projects completed (once, even with several workers). Returns the ids of
    the deliveries to post after the caller commits; none for projects without a webhook.
    """
    retired = [unit for unit in units if unit.state is UnitState.retired and unit.gold is None]
    hooked = [unit.id for unit in retired if unit.project.webhook_url]
    results = {result.unit_id: result for result in session.scalars(
        select(ConsensusResult).where(ConsensusResult.unit_id.in_(hooked)))} if hooked else {}
    deliveries = []
    for unit in retired:
        project = unit.project
        if not project.webhook_url:
            continue
        payload = {"project": {"id": project.id, "slug": project.slug},
                   "unit": {"id": unit.id, "name": unit.external_id, "data": unit.data},
                   "answers": unit.answer_count, "retired_at": utcnow().isoformat()}
        result = results.get(unit.id)
        if result is not None:
            payload["consensus"] = {"result": result.result, "confidence": result.confidence,
                                    "agreement": result.agreement, "algorithm": result.algorithm,
                                    "version": result.version}
        deliveries.append(_record(session, project, "unit.retired", f"unit.retired:{unit.id}:{unit.answer_count}",
                                  payload))
    for project in {unit.project for unit in retired}:
        deliveries.append(_completed(session, project))
    return [d for d in deliveries if d is not None]


def _completed(session: Session, project: Project) -> int | None:
    """Mark the project completed when it has no open unit left; the ``project.completed`` delivery's id, if any."""
    still_open = session.scalar(select(func.count()).select_from(Unit).where(
        Unit.project_id == project.id, Unit.state == UnitState.open, Unit.gold.is_(None)))
    if still_open:
        return None
    now = utcnow()
    won = session.execute(update(Project).where(Project.id == project.id, Project.completed_at.is_(None))
                          .values(completed_at=now)).rowcount
    if not (won and project.webhook_url):
        return None
    units = session.scalar(select(func.count()).select_from(Unit).where(Unit.project_id == project.id,
                                                                         Unit.gold.is_(None)))
    return _record(session, project, "project.completed", f"project.completed:{project.id}:{now.isoformat()}",
                   {"project": {"id": project.id, "slug": project.slug, "name": project.name},
                    "units": units, "completed_at": now.isoformat()})


class UnsafeDestination(ValueError):
    """A webhook URL that resolves to an address the workers must not call."""


def check_destination(url: str, allow_private: bool = False) -> None:
    """Refuse URLs that are not http(s), or whose host resolves to a private, loopback,
    link-local or reserved address (unless ``allow_private``): webhooks must not become a
    way to reach the machine's own services.

    Example:
        >>> check_destination("http://127.0.0.1:6379/")
        Traceback (most recent call last):
        ...
        microtasks.webhooks.UnsafeDestination: 127.0.0.1 is a private or local address
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination(f"{url!r} is not an http(s) URL")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as error:
        raise UnsafeDestination(f"{parts.hostname} does not resolve ({error.strerror})") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise UnsafeDestination(f"{address} is a private or local address")
