"""Soak (issue 8): a long steady load with the fault suite's checks, watching every process's memory.

The services are the fault suite's own (benchmarks/faults.py: a private PostgreSQL cluster,
redis-server, gunicorn and RQ workers started as ``microtasks worker``), and so are the
simulated volunteers, who keep their answers until acknowledged. Nothing is killed. Every
``--every`` seconds it samples the memory (RSS; PSS, which shares each page among the
processes that map it; USS, the pages only the process maps) of each long-lived process:
the gunicorn master and workers, the RQ workers (and their schedulers; the work horses
forked per job live for a job only), PostgreSQL, Redis, and this load generator. It prints,
per role, memory at the start and end, the maximum and the slope of the private memory,
then the fault suite's database checks.

Ten minutes at about 300 answers per second::

    python benchmarks/soak.py --duration 600

A one-minute check of the script itself: ``--duration 60 --warmup 20``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faults import Load, Services, children, final_checks, percentile, queue  # noqa: E402

#: "Flat": memory grows by less than this, by the least-squares slope of the run's second half.
FLAT_MB_PER_MIN = 1.0


def memory_kb(pid: int) -> tuple[int, int, int]:
    """``(RSS, PSS, USS)`` of a process in kB; zeros once it is gone.

    USS, the pages only this process maps, is what a leak grows; RSS and PSS also count
    shared pages, such as PostgreSQL's shared buffers, which every backend maps as it
    touches them (up to ``shared_buffers`` in all).
    """
    try:
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        rollup = {line.split(":")[0]: int(line.split()[1])
                  for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]}
    except (OSError, StopIteration, IndexError, ValueError):
        return 0, 0, 0
    return rss, rollup["Pss"], rollup["Private_Clean"] + rollup["Private_Dirty"]


def age_seconds(pid: int) -> float:
    """How long a process has been running."""
    try:
        started = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0
    return uptime - started / os.sysconf("SC_CLK_TCK")


def long_lived(services: Services, connection: redis.Redis) -> dict[str, list[int]]:
    """The processes to watch, by role. An RQ worker's children are its scheduler, running as long as
    the worker, and, while the worker has a job, the work horse forked for that job (its youngest
    child): the horses are left out."""
    roles = services.processes()
    busy = {worker.pid for worker in Worker.all(connection=connection) if worker.get_current_job_id()}
    horses = set()
    for worker in services.workers:
        kids = sorted(children(worker.pid), key=age_seconds)
        if worker.pid in busy and kids:
            horses.add(kids[0])
    roles["rq workers"] = [pid for pid in roles["rq workers"] if pid not in horses]
    return roles


@dataclass
class Samples:
    times: list[float] = field(default_factory=list)
    #: role -> list of (number of processes, RSS MB, PSS MB, USS MB), one per sample.
    roles: dict[str, list[tuple[int, float, float, float]]] = field(default_factory=dict)
    redis_used_mb: list[float] = field(default_factory=list)
    consensus_queued: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def take(self, services: Services, load: Load, start: float, connection: redis.Redis) -> None:
        self.times.append(time.perf_counter() - start)
        for role, pids in long_lived(services, connection).items():
            sizes = [memory_kb(pid) for pid in pids]
            self.roles.setdefault(role, []).append((sum(1 for rss, _, _ in sizes if rss),
                                                    *(sum(size[i] for size in sizes) / 1024 for i in range(3))))
        self.redis_used_mb.append(int(connection.info("memory")["used_memory"]) / 2 ** 20)
        self.consensus_queued.append(queue(connection, "consensus").count)
        self.acked.append(len(load.stats.acked))


def slope(times: list[float], values: list[float]) -> float:
    """Least-squares slope, per minute."""
    if len(times) < 2:
        return float("nan")
    mean_t, mean_v = sum(times) / len(times), sum(values) / len(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values)) / spread if spread else 0.0


def print_memory(samples: Samples, warmup: float) -> None:
    """Memory from the first sample after ``warmup`` seconds (the project loaded, every process started) on."""
    first = next((i for i, t in enumerate(samples.times) if t >= warmup), 0)
    times = samples.times[first:]
    half = len(times) // 2
    print(f"\nFrom {times[0]:.0f} s to {times[-1]:.0f} s ({len(times)} samples); flat: the second half's slope of "
          f"the private memory (USS) is under {FLAT_MB_PER_MIN:.0f} MB/min.\n")
    print("| process | processes | RSS MB start / end | PSS MB start / end | USS MB start / end / max "
          "| USS slope MB/min, all / second half | flat |\n|---|---|---|---|---|---|---|")
    for role, series in samples.roles.items():
        counts, rss, pss, uss = zip(*series[first:])
        late = slope(times[half:], list(uss[half:]))
        print(f"| {role} | {counts[0]} → {counts[-1]} | {rss[0]:.0f} / {rss[-1]:.0f} | {pss[0]:.0f} / {pss[-1]:.0f} | "
              f"{uss[0]:.0f} / {uss[-1]:.0f} / {max(uss):.0f} | {slope(times, list(uss)):+.2f} / {late:+.2f} | "
              f"{'yes' if late < FLAT_MB_PER_MIN else 'no'} |")
    used = samples.redis_used_mb[first:]
    late = slope(times[half:], used[half:])
    print(f"| redis used_memory (INFO) | | | | {used[0]:.1f} / {used[-1]:.1f} / {max(used):.1f} | "
          f"{slope(times, used):+.2f} / {late:+.2f} | {'yes' if late < FLAT_MB_PER_MIN else 'no'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--volunteers", type=int, default=220, help="simulated volunteers")
    parser.add_argument("--batch", type=int, default=10, help="units leased per next call (answers per submit)")
    parser.add_argument("--think", type=float, default=0.6, help="mean seconds a volunteer spends per unit")
    parser.add_argument("--units", type=int, default=120_000, help="units in the project")
    parser.add_argument("--redundancy", type=int, default=3, help="answers wanted per unit")
    parser.add_argument("--web-workers", type=int, default=6, help="gunicorn worker processes")
    parser.add_argument("--rq-workers", type=int, default=2, help="RQ worker processes")
    parser.add_argument("--every", type=float, default=10, help="seconds between memory samples")
    parser.add_argument("--warmup", type=float, default=60,
                        help="seconds left out of the memory figures at the start (loading, first connections)")
    parser.add_argument("--drain", type=float, default=120,
                        help="seconds the workers have, once the volunteers stop, to finish the consensus queue")
    parser.add_argument("--logs", type=Path, default=None, help="copy the services' logs into this folder")
    args = parser.parse_args()

    started = time.perf_counter()
    services = Services(args.web_workers, args.rq_workers, args.units, args.redundancy)
    samples = Samples()
    try:
        services.start()
        load = Load(services.base, services.project_id, args.volunteers, args.batch, args.think).start()
        start = time.perf_counter()
        connection = services.connection()
        while time.perf_counter() - start < args.duration:
            samples.take(services, load, start, connection)
            print(f"[{samples.times[-1]:4.0f} s] answers acknowledged {samples.acked[-1]}, consensus jobs queued "
                  f"{samples.consensus_queued[-1]}, Redis {samples.redis_used_mb[-1]:.0f} MB", flush=True)
            time.sleep(max(0.0, args.every - (time.perf_counter() - start - samples.times[-1])))
        samples.take(services, load, start, connection)
        load.finish(give_up_after=90)
        checks = final_checks(services, load, drain_timeout=args.drain)
        ok = all(ok for _, _, ok in checks)
    finally:
        services.close(args.logs)
    times, acked = samples.times, samples.acked
    ramp = next((i for i, n in enumerate(acked) if n), len(acked) - 1)  # from the first sample with answers
    rate = (acked[-1] - acked[ramp]) / (times[-1] - times[ramp]) if times[-1] > times[ramp] else float("nan")
    print(f"\n## Soak: {args.duration:.0f} s, {args.volunteers} volunteers, batch {args.batch}, think {args.think}s/unit; "
          f"gunicorn {args.web_workers} workers, {args.rq_workers} RQ workers; private PostgreSQL + Redis; "
          f"memory every {args.every:.0f} s; {time.perf_counter() - started:.0f} s in all\n")
    submit = load.stats.latencies["submit"]
    print(f"answers/s acknowledged (from the first sample with answers): {rate:.0f}; submit p50 / p99 ms: "
          f"{percentile(submit, 50):.0f} / {percentile(submit, 99):.0f}; consensus jobs queued at the end of the load: "
          f"{samples.consensus_queued[-1]}")
    print_memory(samples, args.warmup)
    print("\n| check | value | result |\n|---|---|---|")
    for name, value, good in checks:
        print(f"| {name} | {value} | {'ok' if good else 'FAILED'} |")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
