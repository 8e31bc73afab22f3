"""Serving benchmark (issue 3): simulated volunteers against gunicorn with PostgreSQL and Redis.

In one run it measures
1. the ceiling: the same server configuration answering a bare endpoint that makes one
   Redis round trip (``GET /api/v1/health``), with many connections and no pause;
2. the serving loop: simulated volunteers each doing next-units (a batch of ``--batch``),
   think, answer-all-at-once loops for ``--duration`` seconds;
and then checks the database: answers acknowledged against stored, units over their
redundancy, repeats to a volunteer.

Needs PostgreSQL and Redis on this machine (``DATABASE_URL``/``REDIS_URL`` default to
127.0.0.1); it uses a database ``microtasks_bench`` (created, and emptied each run) and
Redis database 14. Install its one extra dependency with ``pip install -e '.[bench]'``.

    python benchmarks/serving.py --volunteers 220 --batch 10 --duration 50 --web-workers 6 --threads 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
import redis
from sqlalchemy import create_engine, func, insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from microtasks.db import upgrade  # noqa: E402
from microtasks.models import Answer, Project, Unit  # noqa: E402
from microtasks.accounts import create_owner
from microtasks.projects import create_project  # noqa: E402


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "submit": [], "health": []})
    acked: set[str] = field(default_factory=set)
    #: (time, answers) of each acknowledged submit, to measure the rate once every volunteer has arrived.
    acks: list[tuple[float, int]] = field(default_factory=list)
    repeats: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by: the web server's processes, PostgreSQL, Redis, and this load generator."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"web (gunicorn)": 0.0, "postgresql": 0.0, "redis": 0.0, "load generator": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        fields_ = stat.rsplit(")", 1)[1].split()
        used = (int(fields_[11]) + int(fields_[12])) / tick
        pid, ppid = int(entry.name), int(fields_[1])
        if pid == server_pid or ppid == server_pid:
            totals["web (gunicorn)"] += used
        elif comm.startswith("postgres"):
            totals["postgresql"] += used
        elif comm.startswith("redis-server"):
            totals["redis"] += used
        elif pid == os.getpid():
            totals["load generator"] += used
    return totals


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def prepare_database(base_url: str, units: int, redundancy: int, strategy: str) -> tuple[str, int]:
    """Create (or empty) the benchmark database and seed one tagging project; returns its URL and project id."""
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.execute(text("SELECT 1 FROM pg_database WHERE datname = 'microtasks_bench'")).first():
            connection.execute(text("CREATE DATABASE microtasks_bench"))
    admin.dispose()
    url = base_url.rsplit("/", 1)[0] + "/microtasks_bench"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(url)
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        owner, _ = create_owner(session, "bench")
        project = create_project(session, owner, {"name": "bench", "task_type": "tagging",
                                                  "labels": ["a", "b", "c", "d"], "redundancy": redundancy,
                                                  "strategy": strategy, "published": True})
        session.flush()
        session.execute(insert(Unit), [{"project_id": project.id, "external_id": f"u{i}", "media": "bench.png",
                                        "width": 100, "height": 100, "data": {}} for i in range(units)])
        session.commit()
        project_id = project.id
    engine.dispose()
    return url, project_id


async def wait_up(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(base + "/api/v1/health") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("server did not start")


async def warm_up(base: str, project_id: int) -> None:
    """One next call, which loads the project's serving state into Redis (timed apart from the loop)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/api/v1/volunteers") as reply:
            token = (await reply.json())["token"]
        async with session.post(f"{base}/api/v1/projects/{project_id}/next",
                                headers={"X-Volunteer-Token": token}) as reply:
            await reply.read()


async def bare(base: str, connections: int, seconds: float, stats: Stats) -> int:
    """Hammer the one-Redis-round-trip endpoint; returns requests completed."""
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.get(base + "/api/v1/health") as reply:
                    await reply.read()
                    if reply.status != 200:
                        stats.error(f"health {reply.status}")
                stats.latencies["health"].append(time.perf_counter() - start)
                done += 1

        await asyncio.gather(*(loop() for _ in range(connections)))
    return done


async def volunteer(session: aiohttp.ClientSession, base: str, project_id: int, batch: int, think: float,
                    deadline: float, stats: Stats, rng: random.Random) -> None:
    async with session.post(base + "/api/v1/volunteers") as reply:
        token = (await reply.json())["token"]
    headers = {"X-Volunteer-Token": token}
    await asyncio.sleep(rng.uniform(0, batch * think))  # volunteers arrive spread out, not all at once
    answered: set[int] = set()
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            async with session.post(f"{base}/api/v1/projects/{project_id}/next?count={batch}",
                                    headers=headers) as reply:
                body = await reply.json()
        except aiohttp.ClientError as error:
            stats.error(f"next {type(error).__name__}")
            continue
        stats.latencies["next"].append(time.perf_counter() - start)
        if reply.status != 200:
            stats.error(f"next {reply.status}")
            await asyncio.sleep(1)
            continue
        units = body["units"]
        if not units:
            return
        stats.repeats += sum(unit["id"] in answered for unit in units)
        # Thinking: a volunteer spends about `think` seconds per unit.
        await asyncio.sleep(sum(rng.uniform(0.5, 1.5) * think for _ in units))
        answers = [{"unit_id": unit["id"], "answer_id": str(uuid.uuid4()), "payload": {"label": rng.choice("abcd")},
                    "duration_ms": 1000} for unit in units]
        for _attempt in range(5):  # a lost response is retried with the same answer ids
            start = time.perf_counter()
            try:
                async with session.post(base + "/api/v1/answers", json={"answers": answers}, headers=headers) as reply:
                    body = await reply.json()
            except aiohttp.ClientError as error:
                stats.error(f"submit {type(error).__name__}")
                continue
            stats.latencies["submit"].append(time.perf_counter() - start)
            break
        else:
            continue
        if reply.status != 200:
            stats.error(f"submit {reply.status}")
            continue
        stats.acks.append((time.perf_counter(), sum(r["status"] in (200, 201) for r in body["results"])))
        for result in body["results"]:
            if result["status"] in (200, 201):
                stats.acked.add(result["answer_id"])
                answered.add(result["unit_id"])
            else:
                stats.error(f"answer {result['status']}")


async def crowd(base: str, project_id: int, volunteers: int, batch: int, think: float, seconds: float,
                stats: Stats, behaviour: Callable[..., Awaitable[None]] = volunteer) -> tuple[float, float]:
    """Run the crowd; returns the whole run's length and the start of its steady part (all volunteers in).

    ``behaviour`` is one volunteer's loop, called as :func:`volunteer` is (benchmarks/faults.py
    gives one that keeps its answers until they are acknowledged).
    """
    rng = random.Random(1)
    start = time.perf_counter()
    deadline = start + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=volunteers)) as session:
        await asyncio.gather(*(behaviour(session, base, project_id, batch, think, deadline, stats,
                                         random.Random(rng.random())) for _ in range(volunteers)))
    return time.perf_counter() - start, start + 2 * batch * think


def check(url: str, project_id: int, redundancy: int, stats: Stats) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        stored = connection.scalar(select(func.count()).select_from(Answer))
        acked = list(stats.acked)
        found = 0
        for start in range(0, len(acked), 5000):
            found += connection.scalar(select(func.count()).select_from(Answer).where(
                Answer.answer_uuid.in_(acked[start:start + 5000])))
        per_unit = select(Answer.unit_id, func.count().label("n")).group_by(Answer.unit_id).subquery()
        over = connection.scalar(select(func.count()).select_from(per_unit).where(per_unit.c.n > redundancy))
        counted_over = connection.scalar(select(func.count()).select_from(Unit).where(
            Unit.project_id == project_id, Unit.answer_count > redundancy))
        retired = connection.scalar(select(func.count()).select_from(Unit).where(Unit.state == "retired"))
        assert connection.scalar(select(func.count()).select_from(Project)) == 1
    engine.dispose()
    return {"acknowledged": len(acked), "stored": stored, "lost": len(acked) - found, "units over redundancy": over,
            "units counted over redundancy": counted_over, "units retired": retired, "repeats": stats.repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volunteers", type=int, default=200, help="simulated volunteers at once")
    parser.add_argument("--batch", type=int, default=5, help="units leased per next call (answers per submit)")
    parser.add_argument("--think", type=float, default=0.6, help="mean seconds a volunteer spends per unit")
    parser.add_argument("--duration", type=float, default=60, help="seconds of the serving loop")
    parser.add_argument("--bare-seconds", type=float, default=15, help="seconds of the bare-endpoint ceiling")
    parser.add_argument("--bare-connections", type=int, default=16, help="connections for the ceiling")
    parser.add_argument("--units", type=int, default=40_000, help="units in the project")
    parser.add_argument("--redundancy", type=int, default=3, help="answers wanted per unit")
    parser.add_argument("--strategy", default="depth_first",
                        choices=["depth_first", "breadth_first", "random", "priority"], help="the project's strategy")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (sync, as the Procfile; gthread, gevent)")
    parser.add_argument("--port", type=int, default=5077, help="port for the server under test")
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the web workers with py-spy during the serving loop into this file")
    args = parser.parse_args()

    base_db = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    base_db = base_db.replace("postgresql://", "postgresql+psycopg://", 1)
    redis_url = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), db=14)
    redis_url.flushdb()
    kwargs = redis_url.connection_pool.connection_kwargs
    redis_url = f"redis://{kwargs['host']}:{kwargs['port']}/14"
    url, project_id = prepare_database(base_db, args.units, args.redundancy, args.strategy)
    env = dict(os.environ, DATABASE_URL=url, REDIS_URL=redis_url, SECRET_KEY="bench",
               MICROTASKS_RATELIMIT_VOLUNTEER="1000000/minute", MICROTASKS_RATELIMIT_ADDRESS="1000000/minute",
               MICROTASKS_INSTANCE_DIR="/tmp/microtasks-bench")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--worker-class", args.worker_class,
                               "--workers", str(args.web_workers), "--threads",
                               str(args.threads), "--keep-alive", "30", "--bind", f"127.0.0.1:{args.port}",
                               "--log-level", "warning",
                               "web.wsgi:app"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{args.port}"
    stats = Stats()
    try:
        asyncio.run(wait_up(base))
        started = time.perf_counter()
        asyncio.run(warm_up(base, project_id))
        load_seconds = time.perf_counter() - started
        bare_done = asyncio.run(bare(base, args.bare_connections, args.bare_seconds, stats))
        bare_rate = bare_done / args.bare_seconds
        profiler = None
        if args.profile:
            workers = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
            profiler = subprocess.Popen(["py-spy", "record", "--format", "raw", "-o", str(args.profile), "--duration",
                                         str(int(args.duration)), "--pid", workers[0], "--nonblocking"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_before = cpu_seconds(server.pid)
        elapsed, steady = asyncio.run(crowd(base, project_id, args.volunteers, args.batch, args.think, args.duration,
                                            stats))
        cpu_after = cpu_seconds(server.pid)
        if profiler:
            profiler.wait()
    finally:
        server.terminate()
        server.wait()
    result = check(url, project_id, args.redundancy, stats)
    end = max(t for t, _ in stats.acks)
    rate = sum(n for t, n in stats.acks if t >= steady) / (end - steady)
    print(f"\n## Serving benchmark: {args.volunteers} volunteers, batch {args.batch}, think {args.think}s/unit, "
          f"{args.duration:.0f}s, {args.strategy}; gunicorn {args.worker_class} {args.web_workers}x{args.threads} threads; PostgreSQL + Redis; 2 cores\n")
    print("| measure | value |\n|---|---|")
    print(f"| loading the project into Redis ({args.units} units), s | {load_seconds:.2f} |")
    print(f"| bare endpoint (1 Redis round trip), requests/s | {bare_rate:.0f} |")
    print(f"| bare endpoint p50 / p99 ms | {percentile(stats.latencies['health'], 50):.1f} / "
          f"{percentile(stats.latencies['health'], 99):.1f} |")
    print(f"| answers/s acknowledged (once all volunteers have arrived) | {rate:.0f} |")
    print(f"| answers/s as share of bare requests/s | {rate / bare_rate:.0%} |")
    for call in ("next", "submit"):
        values = stats.latencies[call]
        print(f"| {call}: calls, p50 / p95 / p99 ms | {len(values)}, {percentile(values, 50):.1f} / "
              f"{percentile(values, 95):.1f} / {percentile(values, 99):.1f} |")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    print(f"| errors | {stats.errors or 0} |")
    print("\nWhere the two cores went during the serving loop:\n")
    print("| process | CPU s | share of 2 cores | CPU ms per answer |\n|---|---|---|---|")
    for name in cpu_before:
        used = cpu_after[name] - cpu_before[name]
        print(f"| {name} | {used:.1f} | {used / (2 * elapsed):.0%} | {1000 * used / max(1, len(stats.acked)):.2f} |")
    if args.profile:
        print(f"\nprofile written to {args.profile}")


if __name__ == "__main__":
    main()
