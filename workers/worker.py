"""The RQ worker of a deployment: RQ's forking worker, tuned to recover from crashes and from a Redis that lost its data.

RQ finds a job whose worker died (SIGKILL, a lost machine) only when the job's entry in
the started-job registry has expired, 60 s after its last heartbeat, and then only at a
worker's next maintenance round; it then retries the job if it has retries left (ours
have three). By default the rounds are ten minutes apart, and the scheduler that runs
retries, which dies with a lost Redis connection, is restarted only by a round too. Here
the rounds are :data:`MAINTENANCE_SECONDS` apart and heartbeats :data:`HEARTBEAT_SECONDS`
apart, so an abandoned job runs again within about two minutes.

Jobs queued in Redis are lost when Redis restarts without its data. Each maintenance round
therefore queues :func:`workers.jobs.sweep` (once across all workers), which queues again
the consensus, webhook deliveries and imports that the database says are still to do.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import redis
import rq
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from workers.connection import QUEUES, queue

#: Seconds between a worker's maintenance rounds (RQ's default is 600).
MAINTENANCE_SECONDS = 30
#: Seconds between the heartbeats of a running job (RQ's default is 30); RQ adds 60 s of grace.
HEARTBEAT_SECONDS = 10
#: Seconds before a worker that quit on a lost Redis connection is started again.
RESTART_SECONDS = 2


def enqueue_sweep(connection: "redis.Redis") -> None:
    """Queue the sweep unless it is queued or running already."""
    try:
        queue(connection, "consensus").enqueue(
            "workers.jobs.sweep", job_id="sweep", unique=True, result_ttl=0, failure_ttl=600,
            retry=rq.Retry(max=2, interval=[10, 30]))
    except DuplicateJobError:
        pass


class Worker(rq.Worker):
    """RQ's worker with frequent maintenance rounds, each of which also queues the sweep."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", MAINTENANCE_SECONDS)
        kwargs.setdefault("job_monitoring_interval", HEARTBEAT_SECONDS)
        # An idle worker waits for a job this long less 15 s, then runs its maintenance if due: without
        # this it would wait 405 s, and a job abandoned while the queues are quiet would wait as long.
        kwargs.setdefault("worker_ttl", MAINTENANCE_SECONDS + 15)
        kwargs.setdefault("serializer", JSONSerializer)
        super().__init__(*args, **kwargs)
        #: True once asked to stop (SIGINT, SIGTERM), as opposed to quitting on an error.
        self.stop_asked = False

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        enqueue_sweep(self.connection)

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)


def work(connection: "redis.Redis", burst: bool = False) -> None:
    """Run a worker on :data:`~workers.connection.QUEUES` until it is asked to stop.

    RQ's worker quits when Redis goes away in the middle of a job (a restart, a failover);
    it is started again here, under a new name, as soon as Redis answers.
    """
    while True:
        worker = Worker(list(QUEUES), connection=connection)
        reason = "an error, logged above"
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        except (redis.ConnectionError, redis.TimeoutError) as error:  # raised while it was quitting
            reason = f"lost Redis: {error}"
            if worker.pubsub_thread:  # its command channel; unsubscribing needs Redis
                worker.pubsub_thread.stop()
                worker.pubsub.close()
        if burst or worker.stop_asked:
            return
        worker.log.warning("Worker %s quit (%s); starting a new one", worker.name, reason)
        for signum in (signal.SIGINT, signal.SIGTERM):  # RQ's handlers belong to the worker that quit
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        time.sleep(RESTART_SECONDS)
        while True:
            try:
                connection.ping()
                break
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(RESTART_SECONDS)
