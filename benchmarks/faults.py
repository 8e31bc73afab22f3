"""Fault suite (issue 8): the serving loop under load while workers, Redis, PostgreSQL and web workers fail.

It starts services of its own and never touches the machine's: a PostgreSQL cluster
(``initdb`` into a temporary folder, run as the ``postgres`` user when run as root), a
``redis-server`` that keeps nothing on disk, gunicorn, and RQ workers started as
``microtasks worker``. Simulated volunteers from benchmarks/serving.py work meanwhile;
like the volunteer app's queue (web/static/js/queue.js) each keeps its answers, with their
answer ids, until the server acknowledges them, retrying after a 503 (after its
``Retry-After``), a 429 or a lost connection. One after another, it

1. kills an RQ worker with SIGKILL while it runs a consensus job (its work horse and
   scheduler too, as a crashed machine would) and starts a new one: RQ must run the
   abandoned job again;
2. restarts Redis, losing everything in it: serving state is rebuilt from the database
   and consensus jobs lost with the queues are found again;
3. restarts PostgreSQL (``pg_ctl stop -m immediate``, a crash): meanwhile the API answers
   503 with ``Retry-After`` and a JSON body;
4. kills a gunicorn web worker with SIGKILL: gunicorn starts another.

Then the volunteers stop, send what they still hold, the workers empty the consensus queue,
and it checks the database: every acknowledged answer stored exactly once, every unit with
all its answers has its consensus, no unit has more answers than it needs. It prints a
table per fault and one of checks, and exits non-zero when any check fails.

Needs the PostgreSQL server binaries (``/usr/lib/postgresql/*/bin``) and ``redis-server``,
and the bench extra (``pip install -e '.[bench]'``). In CI (about two and a half minutes)::

    python benchmarks/faults.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
import redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import ROOT, Stats, check, crowd, percentile, prepare_database, wait_up  # noqa: E402

from microtasks.models import Answer, ConsensusResult, Project, Unit  # noqa: E402
from microtasks.serving import prefix  # noqa: E402
from workers.connection import DUE_KEY, QUEUES, queue  # noqa: E402

LABELS = "abcd"
#: Seconds a restarted service stays down.
DOWN_SECONDS = 4.0
#: The Retry-After the volunteers honour at most, and their longest backoff (as web/static/js/queue.js).
MAX_WAIT = 60.0
#: The faults, in the order they are injected.
FAULTS = ("rq-worker", "redis", "postgres", "web-worker")


# -- the services under test ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def process_state(pid: int) -> str:
    """The state letter of a process (R running, S sleeping...), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


class Postgres:
    """A PostgreSQL cluster of our own in a temporary folder, on a free port."""

    def __init__(self, folder: Path) -> None:
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if not versions:
            raise SystemExit("needs the PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = Path(versions[-1]).parent
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        # As root, the cluster runs as the postgres user (PostgreSQL refuses to run as root).
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                   "-c fsync=off -c full_page_writes=off -c shared_buffers=128MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def pids(self) -> list[int]:
        try:
            master = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [master, *children(master)]

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass


class RedisServer:
    """A redis-server of our own that keeps nothing on disk, on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.folder / "redis.log").open("a") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.folder)], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []


class Services:
    """PostgreSQL, Redis, gunicorn and RQ workers for one run; everything started here is stopped on close."""

    def __init__(self, web_workers: int, rq_workers: int, units: int, redundancy: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="microtasks-faults-"))
        self.postgres = Postgres(self.folder)
        self.redis = RedisServer(self.folder)
        self.web: subprocess.Popen | None = None
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.web_workers = web_workers
        self.workers: list[subprocess.Popen] = []
        self.rq_workers = rq_workers
        self.units, self.redundancy = units, redundancy
        self.env: dict[str, str] = {}
        self.url = ""
        self.project_id = 0

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()
        self.url, self.project_id = prepare_database(self.postgres.url, self.units, self.redundancy, "depth_first")
        self.env = dict(os.environ, DATABASE_URL=self.url, REDIS_URL=self.redis.url, SECRET_KEY="faults",
                        MICROTASKS_RATELIMIT_VOLUNTEER="1000000/minute",
                        MICROTASKS_RATELIMIT_ADDRESS="1000000/minute",
                        MICROTASKS_INSTANCE_DIR=str(self.folder / "instance"), PYTHONUNBUFFERED="1")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(self.web_workers), "--threads", "1",
             "--keep-alive", "30", "--bind", f"127.0.0.1:{self.web_port}", "--log-level", "warning",
             "--error-logfile", str(self.folder / "gunicorn.log"), "web.wsgi:app"], env=self.env, cwd=ROOT)
        for _ in range(self.rq_workers):
            self.start_worker()
        asyncio.run(wait_up(self.base))

    def start_worker(self) -> subprocess.Popen:
        with (self.folder / "workers.log").open("a") as log:
            worker = subprocess.Popen([sys.executable, "-m", "web.cli", "worker"], env=self.env, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """SIGKILL a worker with its work horse and scheduler, as a crashed machine would leave them."""
        signal_all([worker.pid, *descendants(worker.pid)], signal.SIGKILL)
        worker.wait()
        self.workers.remove(worker)

    def web_worker_pids(self) -> list[int]:
        return children(self.web.pid) if self.web else []

    def connection(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def processes(self) -> dict[str, list[int]]:
        """Process ids by role (for memory sampling)."""
        rq_pids = []
        for worker in self.workers:
            if worker.poll() is None:
                rq_pids += [worker.pid, *descendants(worker.pid)]
        return {"gunicorn (master + workers)": [self.web.pid, *self.web_worker_pids()] if self.web else [],
                "rq workers": rq_pids, "postgresql": self.postgres.pids(), "redis": self.redis.pids(),
                "load generator": [os.getpid()]}

    def close(self, keep_logs: Path | None = None) -> None:
        for worker in list(self.workers):
            signal_all([worker.pid, *descendants(worker.pid)], signal.SIGKILL)
            worker.wait()
        if self.web and self.web.poll() is None:
            self.web.terminate()
            try:
                self.web.wait(15)
            except subprocess.TimeoutExpired:
                signal_all([self.web.pid, *self.web_worker_pids()], signal.SIGKILL)
                self.web.wait()
        self.redis.kill()
        self.postgres.close()
        if keep_logs:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for name, kept in (("workers.log", "workers.log"), ("gunicorn.log", "gunicorn.log"),
                               ("log", "postgresql.log"), ("redis.log", "redis.log")):
                if (self.folder / name).exists():
                    shutil.copy(self.folder / name, keep_logs / kept)
        shutil.rmtree(self.folder, ignore_errors=True)

    def logs(self) -> str:
        """The tail of the services' logs, for a failed run."""
        out = []
        for name in ("workers.log", "gunicorn.log", "log"):
            path = self.folder / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-40:]
                out.append(f"--- {name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)


# -- volunteers who keep their answers until acknowledged -----------------------------------


@dataclass
class FaultStats(Stats):
    #: Set to end the load: volunteers stop taking units and send what they hold.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Volunteers give up sending at this time (perf_counter); answers still held then are reported.
    give_up_at: float = float("inf")
    #: (time, what) of every failed call: "503", "503 without Retry-After", "ClientConnectorError", ...
    failures: list[tuple[float, str]] = field(default_factory=list)
    #: Answers the server refused one by one (409, 422...): the volunteer drops them, as the app does.
    refused: int = 0
    #: Answers still held when the volunteers gave up.
    unsent: int = 0

    def failed(self, what: str) -> None:
        self.failures.append((time.perf_counter(), what))
        self.error(what)


def truth(unit_id: int) -> str:
    """The simulated true label of a unit; volunteers give it nine times in ten (so no one looks like spam)."""
    return LABELS[unit_id % len(LABELS)]


async def call(session: aiohttp.ClientSession, method: str, url: str, stats: FaultStats, what: str,
               **kwargs: Any) -> tuple[int, Any, float]:
    """One API call: ``(status, JSON body or None, Retry-After seconds or 0)``; status 0 for a lost connection."""
    try:
        async with session.request(method, url, **kwargs) as reply:
            raw = await reply.read()
            status = reply.status
            retry_after = reply.headers.get("Retry-After")
            content_type = reply.headers.get("Content-Type", "")
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        stats.failed(f"{what}: {type(error).__name__}")
        return 0, None, 0.0
    body = None
    if content_type.startswith("application/json"):
        try:
            body = json.loads(raw)
        except ValueError:
            pass
    if status >= 400:
        label = f"{what}: {status}"
        if status in (429, 503) and not (retry_after or "").isdigit():
            label += " without Retry-After"
        if status >= 500 and (not isinstance(body, dict) or body.get("code") != status):
            label += " without a JSON body"
        stats.failed(label)
    return status, body, float(retry_after) if (retry_after or "").isdigit() else 0.0


def retryable(status: int) -> bool:
    """What the volunteer app's queue retries: lost connections, 429 and server errors."""
    return status == 0 or status == 429 or status >= 500


async def patient_volunteer(session: aiohttp.ClientSession, base: str, project_id: int, batch: int, think: float,
                            deadline: float, stats: FaultStats, rng: random.Random) -> None:
    """A volunteer whose answers wait, with their answer ids, until the server acknowledges them.

    As the volunteer app: answers are sent in batches of at most 20; after a 503 or 429 the
    next try waits for ``Retry-After``, after a lost connection for a backoff (2 s doubling
    to 60 s); meanwhile the volunteer carries on, skipping units whose answers are still
    waiting. A refused answer (409, 422) is dropped. Once ``stats.stop`` is set it takes no
    more units and sends what it holds until ``stats.give_up_at``.
    """
    token = None
    while token is None and time.perf_counter() < stats.give_up_at:
        status, body, wait = await call(session, "POST", base + "/api/v1/volunteers", stats, "volunteer")
        if status == 201:
            token = body["token"]
        else:
            await asyncio.sleep(wait or 1)
    if token is None:
        return
    headers = {"X-Volunteer-Token": token}
    await asyncio.sleep(rng.uniform(0, batch * think))  # volunteers arrive spread out, not all at once
    held: list[dict[str, Any]] = []  # answers not yet acknowledged, oldest first
    answered: set[int] = set()
    backoff, next_try, next_ask = 0.0, 0.0, 0.0

    async def send() -> None:
        nonlocal backoff, next_try
        if not held or time.perf_counter() < next_try:
            return
        sending = held[:20]
        start = time.perf_counter()
        status, body, wait = await call(session, "POST", base + "/api/v1/answers", stats, "submit",
                                        json={"answers": sending}, headers=headers)
        if status == 200:
            stats.latencies["submit"].append(time.perf_counter() - start)
            backoff = 0.0
            acked = 0
            for item, result in zip(sending, body["results"]):
                held.remove(item)
                if result["status"] in (200, 201):
                    stats.acked.add(result["answer_id"])
                    answered.add(result["unit_id"])
                    acked += 1
                else:
                    stats.refused += 1
                    stats.error(f"answer {result['status']}")
            stats.acks.append((time.perf_counter(), acked))
        elif retryable(status):
            backoff = min(MAX_WAIT, backoff * 2 if backoff else 2.0)
            next_try = time.perf_counter() + min(MAX_WAIT, wait or backoff)
        else:  # the whole request was refused: nothing of it can be stored
            stats.refused += len(sending)
            del held[:len(sending)]

    while not stats.stop.is_set() and time.perf_counter() < deadline:
        await send()
        if time.perf_counter() < next_ask:
            await asyncio.sleep(min(0.5, next_ask - time.perf_counter()))
            continue
        start = time.perf_counter()
        status, body, wait = await call(session, "POST", f"{base}/api/v1/projects/{project_id}/next?count={batch}",
                                        stats, "next", headers=headers)
        if status != 200:
            next_ask = time.perf_counter() + ((wait or 1.0) if retryable(status) else MAX_WAIT)
            continue
        stats.latencies["next"].append(time.perf_counter() - start)
        waiting = {item["unit_id"] for item in held}
        units = [unit for unit in body["units"] if unit["id"] not in waiting]
        if not body["units"]:
            break
        if not units:  # only units whose answers are still waiting: wait for the next try
            next_ask = time.perf_counter() + max(1.0, think)
            continue
        stats.repeats += sum(unit["id"] in answered for unit in units)
        await asyncio.sleep(sum(rng.uniform(0.5, 1.5) * think for _ in units))
        held += [{"unit_id": unit["id"], "answer_id": str(uuid.uuid4()),
                  "payload": {"label": truth(unit["id"]) if rng.random() < 0.9 else rng.choice(LABELS)},
                  "duration_ms": int(rng.uniform(1500, 4000))} for unit in units]
    while held and time.perf_counter() < stats.give_up_at:
        await send()
        if held:
            await asyncio.sleep(max(0.05, min(1.0, next_try - time.perf_counter())))
    stats.unsent += len(held)


class Load:
    """The crowd of patient volunteers, in a thread of its own, until :meth:`finish`."""

    def __init__(self, base: str, project_id: int, volunteers: int, batch: int, think: float) -> None:
        self.stats = FaultStats()
        self.thread = threading.Thread(target=lambda: asyncio.run(crowd(
            base, project_id, volunteers, batch, think, 10 ** 6, self.stats, behaviour=patient_volunteer)),
            daemon=True)

    def start(self) -> "Load":
        self.thread.start()
        return self

    def finish(self, give_up_after: float) -> float:
        """Stop the volunteers; wait until they have sent what they hold (or given up); returns the seconds."""
        started = time.perf_counter()
        self.stats.give_up_at = started + give_up_after
        self.stats.stop.set()
        self.thread.join(give_up_after + 60)
        return time.perf_counter() - started

    def acked_between(self, start: float, end: float) -> int:
        return sum(n for t, n in list(self.stats.acks) if start <= t < end)

    def longest_pause(self, start: float, end: float) -> float:
        """The longest time without an acknowledged answer between ``start`` and ``end``."""
        times = [start, *sorted(t for t, n in list(self.stats.acks) if start <= t < end and n), end]
        return max(b - a for a, b in zip(times, times[1:]))

    def failures_between(self, start: float, end: float) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t, what in list(self.stats.failures):
            if start <= t < end:
                counts[what] = counts.get(what, 0) + 1
        return counts


# -- the faults ---------------------------------------------------------------------------------


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         ) -> tuple[int, dict[str, str], Any]:
    """A blocking API call for the fault script itself: ``(status, headers, JSON body or None)``."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            status, reply_headers, raw = reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        status, reply_headers, raw = error.code, dict(error.headers), error.read()
    except OSError:
        return 0, {}, None
    try:
        return status, reply_headers, json.loads(raw)
    except ValueError:
        return status, reply_headers, None


def wait_until(condition: Callable[[], Any], timeout: float, every: float = 0.2) -> float | None:
    """Seconds until ``condition()`` is true, or None after ``timeout``."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            if condition():
                return time.perf_counter() - start
        except (redis.ConnectionError, OSError):
            pass
        time.sleep(every)
    return None


@dataclass
class Outcome:
    fault: str
    detail: str
    ok: bool
    start: float = 0.0
    end: float = 0.0


def acks_resume(load: Load, since: float, timeout: float = 60) -> float | None:
    """Seconds from ``since`` until answers are acknowledged again (20 of them)."""
    waited = wait_until(lambda: load.acked_between(since, time.perf_counter()) >= 20, timeout)
    return None if waited is None else time.perf_counter() - since


def kill_rq_worker(services: Services, load: Load, recover_timeout: float) -> Outcome:
    """SIGKILL a worker (and its work horse) in the middle of a consensus job; RQ must run the job again."""
    connection = services.connection()
    registry = StartedJobRegistry("consensus", connection=connection, serializer=JSONSerializer)
    ours = {worker.pid: worker for worker in services.workers}
    deadline = time.perf_counter() + 60
    victim, job_id = None, None
    while victim is None and time.perf_counter() < deadline:
        for candidate in registry.get_job_ids(cleanup=False):
            if not candidate.startswith("consensus-"):  # the sweep, whose job leaves nothing behind
                continue
            job = Job.fetch(candidate, connection=connection, serializer=JSONSerializer)
            pid = connection.hget(Worker.redis_worker_namespace_prefix + (job.worker_name or ""), "pid")
            worker = ours.get(int(pid)) if pid else None
            if worker is None:
                continue
            family = [worker.pid, *descendants(worker.pid)]
            signal_all(family, signal.SIGSTOP)  # freeze it, then make sure the job is still running
            if job.get_status(refresh=True) == JobStatus.STARTED:
                services.kill_worker(worker)
                victim, job_id = worker, candidate
                break
            signal_all(family, signal.SIGCONT)
        else:
            time.sleep(0.005)
    if victim is None:
        return Outcome("kill -9 an RQ worker mid-job", "no consensus job seen running within 60 s", False)
    killed_at = time.perf_counter()
    services.start_worker()
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    found = wait_until(lambda: job.get_status(refresh=True) != JobStatus.STARTED, recover_timeout, every=0.5)
    recovered = wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
                           recover_timeout - (time.perf_counter() - killed_at), every=0.5)
    status = job.get_status(refresh=True)
    done = time.perf_counter() - killed_at
    detail = (f"job {job_id} was running in worker pid {victim.pid}; "
              + (f"RQ found it abandoned {found:.0f} s after the kill and ran it again, finished after {done:.0f} s"
                 if recovered is not None else
                 f"not run again within {recover_timeout:.0f} s (status {status.value})"))
    return Outcome("kill -9 an RQ worker mid-job", detail, recovered is not None, killed_at)


def restart_redis(services: Services, load: Load) -> Outcome:
    """Kill Redis and start an empty one: serving state is rebuilt from the database, lost jobs are swept up.

    The workers are frozen first, one of them in the middle of a job, so that the job is
    half done and others wait in the queue when Redis goes.
    """
    connection = services.connection()
    running = queue(connection, "consensus").started_job_registry
    wait_until(lambda: running.get_job_count(cleanup=False) > 0, 30, every=0.002)
    families = [[worker.pid, *descendants(worker.pid)] for worker in services.workers]
    for family in families:
        signal_all(family, signal.SIGSTOP)
    wait_until(lambda: connection.scard(DUE_KEY) >= 10, 15)
    queued = sum(queue(connection, name).count for name in QUEUES) + connection.scard(DUE_KEY)
    start = time.perf_counter()
    services.redis.kill()
    for family in families:
        signal_all(family, signal.SIGCONT)
    time.sleep(DOWN_SECONDS)
    services.redis.start()
    connection = services.connection()
    rebuilt = wait_until(lambda: connection.exists(prefix(services.project_id) + "cfg"), 60)
    resumed = acks_resume(load, start)
    dead = [worker.pid for worker in services.workers if worker.poll() is not None]
    ok = rebuilt is not None and resumed is not None and not dead
    detail = (f"down {DOWN_SECONDS:.0f} s, {queued} queued jobs and waiting units lost with it; serving state "
              + (f"rebuilt {rebuilt:.1f} s after the restart" if rebuilt is not None else "not rebuilt")
              + (f", answers acknowledged again {resumed:.1f} s after the kill" if resumed is not None else
                 ", answers not acknowledged again")
              + (f"; RQ workers that exited: {dead}" if dead else
                 f"; every RQ worker kept running ({restarted_workers(services)} started again after losing Redis)"))
    return Outcome("restart Redis (nothing kept)", detail, ok, start)


def restarted_workers(services: Services) -> int:
    """How many times ``microtasks worker`` started its RQ worker again (from its log lines)."""
    path = services.folder / "workers.log"
    return path.read_text(errors="replace").count("; starting a new one") if path.exists() else 0


def restart_postgres(services: Services, load: Load) -> Outcome:
    """Crash PostgreSQL (immediate stop) and start it again; meanwhile the API must answer 503 + Retry-After."""
    status, _, body = http("POST", services.base + "/api/v1/volunteers")
    probe = {"X-Volunteer-Token": body["token"]} if status == 201 else {}
    calls = {"next": ("POST", f"/api/v1/projects/{services.project_id}/next", None),
             "answers": ("POST", "/api/v1/answers", {"answers": [{"unit_id": 1, "answer_id": str(uuid.uuid4()),
                                                                 "payload": {"label": "a"}}]}),
             "new volunteer": ("POST", "/api/v1/volunteers", None)}
    start = time.perf_counter()
    services.postgres.stop("immediate")
    seen = {}
    for name, (method, path, payload) in calls.items():
        status, headers, body = http(method, services.base + path, payload, probe)
        seen[name] = (status, headers.get("Retry-After"), isinstance(body, dict) and body.get("code") == status)
    time.sleep(max(0.0, DOWN_SECONDS - (time.perf_counter() - start)))
    services.postgres.start()
    up = time.perf_counter()
    resumed = acks_resume(load, start)
    good = all(status == 503 and (retry or "").isdigit() and is_json for status, retry, is_json in seen.values())
    answers = "; ".join(f"{name} {status}" + (f", Retry-After {retry}" if retry else ", no Retry-After")
                        + ("" if is_json else ", not the JSON error") for name, (status, retry, is_json) in seen.items())
    detail = (f"down {up - start:.0f} s; while down: {answers}"
              + (f"; answers acknowledged again {resumed:.1f} s after the crash" if resumed is not None else
                 "; answers not acknowledged again"))
    return Outcome("restart PostgreSQL (crash)", detail, good and resumed is not None, start)


def kill_web_worker(services: Services, load: Load) -> Outcome:
    """SIGKILL one gunicorn worker: the master starts another, volunteers retry what was in flight."""
    before = services.web_worker_pids()
    victim = before[0]
    # Wait until it is on the CPU, most likely in the middle of a request (idle, it sleeps in select).
    busy = wait_until(lambda: process_state(victim) == "R", 10, every=0.001) is not None
    start = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(lambda: len(set(services.web_worker_pids()) - set(before)) >= 1
                          and len(services.web_worker_pids()) == services.web_workers, 60)
    resumed = acks_resume(load, start)
    detail = (f"worker pid {victim} killed {'while running' if busy else 'while idle'}; "
              + (f"gunicorn started another in {replaced:.1f} s" if replaced is not None else "not replaced")
              + (f"; answers acknowledged again {resumed:.1f} s after the kill" if resumed is not None else
                 "; answers not acknowledged again"))
    return Outcome("kill -9 a gunicorn worker", detail, replaced is not None and resumed is not None, start)


# -- after the faults: drain and check ---------------------------------------------------------


def consensus_idle(connection: redis.Redis) -> bool:
    """No consensus job queued, running, or waiting for a retry (read without RQ's cleanups)."""
    consensus = queue(connection, "consensus")
    return not (connection.scard(DUE_KEY) or consensus.count
                or consensus.started_job_registry.get_job_count(cleanup=False)
                or consensus.scheduled_job_registry.get_job_count(cleanup=False))


def failed_jobs(connection: redis.Redis) -> int:
    return sum(queue(connection, name).failed_job_registry.get_job_count(cleanup=False) for name in QUEUES)


def requeued_by_sweep(services: Services) -> int:
    """Consensus jobs the workers' sweep queued again (from its log lines)."""
    path = services.folder / "workers.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    marker = "queued again, their jobs lost: consensus of "
    return sum(int(line.split(marker, 1)[1].split()[0]) for line in lines if marker in line)


def missing_consensus(url: str) -> int:
    """Units with all the answers they need but no consensus over exactly those answers."""
    engine = create_engine(url)
    with engine.connect() as connection:
        missing = connection.scalar(
            select(func.count()).select_from(Unit).join(Project, Project.id == Unit.project_id)
            .outerjoin(ConsensusResult, ConsensusResult.unit_id == Unit.id)
            .where(Unit.gold.is_(None),
                   Unit.answer_count >= func.coalesce(Unit.redundancy, Project.redundancy),
                   (ConsensusResult.id.is_(None)) | (ConsensusResult.n_answers != Unit.answer_count)))
    engine.dispose()
    return missing


def final_checks(services: Services, load: Load, drain_timeout: float) -> list[tuple[str, str, bool]]:
    """The database after the run, once the workers have drained the queues."""
    stats = load.stats
    connection = services.connection()
    drained = wait_until(lambda: consensus_idle(connection) and missing_consensus(services.url) == 0,
                         drain_timeout, every=1.0)
    waiting = {name: queue(connection, name).count for name in QUEUES}
    base = check(services.url, services.project_id, services.redundancy, stats)
    engine = create_engine(services.url)
    with engine.connect() as db:
        duplicates = db.scalar(select(func.count()).select_from(
            select(Answer.answer_uuid).group_by(Answer.answer_uuid).having(func.count() > 1).subquery()))
        full = db.scalar(select(func.count()).select_from(Unit).join(Project, Project.id == Unit.project_id).where(
            Unit.answer_count >= func.coalesce(Unit.redundancy, Project.redundancy)))
        per_unit = select(Answer.unit_id, func.count().label("n")).group_by(Answer.unit_id).subquery()
        over_max = db.scalar(select(func.count()).select_from(per_unit).join(Unit, Unit.id == per_unit.c.unit_id)
                             .join(Project, Project.id == Unit.project_id)
                             .where(per_unit.c.n > Project.max_redundancy))
        unacknowledged = db.scalar(select(func.count()).select_from(Answer)) - (base["acknowledged"] - base["lost"])
    engine.dispose()
    failed = failed_jobs(connection)
    missing = missing_consensus(services.url)
    server_errors = {what: n for what, n in stats.errors.items() if " 5" in what and ": 503" not in what}
    bad_503 = {what: n for what, n in stats.errors.items() if "503 without" in what}
    return [
        ("answers acknowledged", str(base["acknowledged"]), base["acknowledged"] > 0),
        ("acknowledged answers not stored", str(base["lost"]), base["lost"] == 0),
        ("answers stored more than once (same answer id)", str(duplicates), duplicates == 0),
        ("answers stored but never acknowledged", str(unacknowledged), True),
        ("answers still held by volunteers who gave up", str(stats.unsent), stats.unsent == 0),
        ("answers refused one by one (409/422)", str(stats.refused), stats.refused == 0),
        ("units with all their answers", str(full), full > 0),
        ("units whose consensus was lost and queued again by the workers' sweep", str(requeued_by_sweep(services)), True),
        ("... without their consensus, once the consensus queue is empty",
         f"{missing}" + (f" (empty {drained:.0f} s after the volunteers stopped)" if drained is not None else
                         f" (still busy {drain_timeout:.0f} s after the volunteers stopped)"),
         missing == 0 and drained is not None),
        ("jobs still queued then, by queue", json.dumps(waiting), True),
        ("units with more answers than their redundancy", str(base["units over redundancy"]),
         base["units over redundancy"] == 0),
        ("units with more counted answers than their redundancy", str(base["units counted over redundancy"]),
         base["units counted over redundancy"] == 0),
        ("units with more answers than max_redundancy", str(over_max), over_max == 0),
        ("units served twice to one volunteer", str(stats.repeats), stats.repeats == 0),
        ("jobs in RQ's failed registries", str(failed), failed == 0),
        ("server errors other than 503", json.dumps(server_errors) if server_errors else "0", not server_errors),
        ("503s without Retry-After or JSON body", json.dumps(bad_503) if bad_503 else "0", not bad_503),
    ]


def print_tables(title: str, outcomes: list[Outcome], load: Load, checks: list[tuple[str, str, bool]]) -> None:
    print(f"\n## {title}\n")
    print("| fault | what happened | longest pause in acknowledgements, s | answers acknowledged | failed calls "
          "| result |\n|---|---|---|---|---|---|")
    for outcome in outcomes:
        failures = load.failures_between(outcome.start, outcome.end)
        calls = ", ".join(f"{what} ×{n}" for what, n in sorted(failures.items())) or "none"
        print(f"| {outcome.fault} | {outcome.detail} | {load.longest_pause(outcome.start, outcome.end):.1f} | "
              f"{load.acked_between(outcome.start, outcome.end)} | {calls} | {'ok' if outcome.ok else 'FAILED'} |")
    print("\n| check | value | result |\n|---|---|---|")
    for name, value, ok in checks:
        print(f"| {name} | {value} | {'ok' if ok else 'FAILED'} |")
    submit = load.stats.latencies["submit"]
    print(f"\nsubmit latency p50 / p99 ms: {percentile(submit, 50):.0f} / {percentile(submit, 99):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI run: fewer volunteers and shorter pauses")
    parser.add_argument("--volunteers", type=int, default=None, help="simulated volunteers (default 12; 8 quick)")
    parser.add_argument("--batch", type=int, default=5, help="units leased per next call")
    parser.add_argument("--think", type=float, default=0.8, help="mean seconds a volunteer spends per unit")
    parser.add_argument("--units", type=int, default=20_000, help="units in the project")
    parser.add_argument("--redundancy", type=int, default=3, help="answers wanted per unit")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--rq-workers", type=int, default=2, help="RQ worker processes")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds of plain load before and between the faults (default 15; 5 quick)")
    parser.add_argument("--recover-timeout", type=float, default=180,
                        help="seconds RQ has to run an abandoned job again")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"which faults, in order, comma-separated (default: all of {','.join(FAULTS)})")
    parser.add_argument("--drain", type=float, default=150,
                        help="seconds the workers have, once the volunteers stop, to finish the consensus queue")
    parser.add_argument("--logs", type=Path, default=None, help="copy the services' logs into this folder")
    args = parser.parse_args()
    unknown = set(args.faults.split(",")) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    volunteers = args.volunteers or (8 if args.quick else 12)
    settle = args.settle if args.settle is not None else (5 if args.quick else 15)

    started = time.perf_counter()
    services = Services(args.web_workers, args.rq_workers, args.units, args.redundancy)
    outcomes: list[Outcome] = []
    try:
        services.start()
        load = Load(services.base, services.project_id, volunteers, args.batch, args.think).start()
        time.sleep(settle)
        faults: dict[str, Callable[[], Outcome]] = {
            "rq-worker": lambda: kill_rq_worker(services, load, args.recover_timeout),
            "redis": lambda: restart_redis(services, load),
            "postgres": lambda: restart_postgres(services, load),
            "web-worker": lambda: kill_web_worker(services, load),
        }
        for name in args.faults.split(","):
            begin = time.perf_counter()
            outcome = faults[name]()
            outcome.start = outcome.start or begin
            time.sleep(settle)
            outcome.end = time.perf_counter()
            outcomes.append(outcome)
            print(f"[{time.perf_counter() - started:5.0f} s] {outcome.fault}: {outcome.detail}", flush=True)
        load.finish(give_up_after=90)
        checks = final_checks(services, load, drain_timeout=args.drain)
        ok = all(o.ok for o in outcomes) and all(ok for _, _, ok in checks)
        if not ok:
            print(services.logs())
    finally:
        services.close(args.logs)
    title = (f"Fault suite: {volunteers} volunteers, batch {args.batch}, think {args.think}s/unit; gunicorn "
             f"{args.web_workers} workers, {args.rq_workers} RQ workers; private PostgreSQL + Redis; "
             f"{time.perf_counter() - started:.0f} s in all")
    print_tables(title, outcomes, load, checks)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
