"""Export benchmark (issue 6): 1M raw answers to CSV and Parquet, rows per second and peak memory.

It builds a tagging project with ``--answers`` answers (``--answers / 5`` units, 5 distinct
volunteers each out of 5,000, four labels), in SQLite by default (a file under
``--workdir``, kept between runs with ``--reuse``) and, with ``--database-url``, also in
PostgreSQL. Everything in that database's public schema is dropped first, so give it a
database of its own whose name contains "bench" (anything else is refused), e.g.
``createdb -h 127.0.0.1 -U postgres bench_export``. Rows go in with the driver's bulk
path (``executemany`` for SQLite, ``COPY`` for PostgreSQL).

Each export runs :func:`microtasks.exporting.write_export` (the ZIP with the data file and
provenance.json, as the worker writes it) in a fresh child process, which reports:

* seconds: wall time of ``write_export`` alone (imports and connecting excluded);
* rows/s: rows written / seconds;
* CPU s: CPU time of the export process over those seconds, all its threads (reading,
  formatting, compressing); the database server's own CPU (PostgreSQL) is not in it;
* peak RSS: the child's high-water mark (``VmHWM`` in ``/proc/self/status``) for the whole
  process: interpreter, SQLAlchemy, pyarrow and pandas (which pyarrow loads; a worker has
  them all loaded already) and the export together. The RSS just before the export starts,
  with those imports done, is shown too, so the export's own share is the difference.

    python benchmarks/export.py                       # SQLite, 1M answers, CSV and Parquet
    python benchmarks/export.py --database-url postgresql://postgres@127.0.0.1/bench_export
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Targets of the issue.
TARGET_ROWS_PER_SECOND = 200_000
TARGET_PEAK_MB = 200
LABELS = ["cat", "dog", "bird", "fish"]
VOLUNTEERS = 5_000
PER_UNIT = 5


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MB (VmRSS: now; VmHWM: the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _answers(n_units: int, unit_ids: list[int], volunteer_ids: list[int], sqlite: bool):  # type: ignore[no-untyped-def]
    """Answer rows: 5 distinct volunteers per unit, labels skewed, a few 'not sure'."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for u in range(n_units):
        unit_id = unit_ids[u]
        for k in range(PER_UNIT):
            i = u * PER_UNIT + k
            volunteer_id = volunteer_ids[(u * 7 + k * (VOLUNTEERS // PER_UNIT)) % VOLUNTEERS]
            label = LABELS[(u + (k == 4) * (i % 3)) % len(LABELS)]
            payload = '{"unsure": true}' if i % 97 == 0 else f'{{"label": "{label}"}}'
            created = start + timedelta(seconds=i // 10, microseconds=(i * 7919) % 1_000_000)
            yield (str(uuid.UUID(int=i + 1)), unit_id, volunteer_id, payload, 1000 + i % 9000, True, None,
                   created.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else created)


def build(url: str, n_answers: int) -> int:
    """Create the schema and the project with its answers; returns the project id."""
    from sqlalchemy import insert, select, text

    from microtasks.db import engine_for, session_factory, upgrade
    from microtasks.models import Base, Owner, Project, TaskType, Volunteer

    engine = engine_for(url)
    sqlite = engine.dialect.name == "sqlite"
    if not sqlite:
        if "bench" not in (engine.url.database or ""):
            raise SystemExit(f"Refusing to empty {engine.url.database!r}: use a database of its own whose name "
                             "contains 'bench'.")
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(url)
    n_units = n_answers // PER_UNIT
    started = time.perf_counter()
    with session_factory(url)() as session:
        owner = Owner(name="bench")
        session.add(owner)
        session.flush()
        project = Project(owner_id=owner.id, slug="bench-tags", name="Bench tags", task_type=TaskType.tagging,
                          labels=LABELS, redundancy=PER_UNIT)
        session.add(project)
        session.flush()
        session.execute(insert(Volunteer), [{"public_id": str(uuid.uuid4())} for _ in range(VOLUNTEERS)])
        project_id = project.id
        session.commit()
        volunteer_ids = list(session.scalars(select(Volunteer.id).order_by(Volunteer.id)))
    units_table = Base.metadata.tables["unit"]
    now = datetime.now(timezone.utc)
    unit_rows = [{"project_id": project_id, "external_id": f"img{u:06d}.jpg", "data": {}, "width": 640,
                  "height": 480, "state": "retired", "answer_count": PER_UNIT, "priority": 0, "created_at": now}
                 for u in range(n_units)]
    with engine.begin() as connection:
        connection.execute(insert(units_table), unit_rows)
        unit_ids = list(connection.scalars(select(units_table.c.id).where(units_table.c.project_id == project_id)
                                           .order_by(units_table.c.id)))
    del unit_rows
    columns = "answer_uuid, unit_id, volunteer_id, payload, duration_ms, counted, gold_score, created_at"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        rows = _answers(n_units, unit_ids, volunteer_ids, sqlite)
        if sqlite:
            cursor.executemany(f"INSERT INTO answer ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        else:
            with cursor.copy(f"COPY answer ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
        if not sqlite:
            cursor.execute("ANALYZE")
            raw.commit()
    finally:
        raw.close()
    print(f"  built {n_answers:,} answers in {time.perf_counter() - started:.1f} s", flush=True)
    return project_id


def existing(url: str, n_answers: int) -> int | None:
    """The project id when the database already holds the benchmark's answers."""
    from sqlalchemy import func, inspect, select

    from microtasks.db import engine_for, upgrade
    from microtasks.models import Answer, Project

    engine = engine_for(url)
    if "answer" not in inspect(engine).get_table_names():
        return None
    upgrade(url)  # the schema may have moved on since the data was built
    with engine.connect() as connection:
        project_id = connection.scalar(select(Project.id).where(Project.slug == "bench-tags"))
        count = connection.scalar(select(func.count()).select_from(Answer))
    return project_id if project_id is not None and count == n_answers else None


def child(url: str, project_id: int, fmt: str, out: Path) -> None:
    """Run one export and print its measurements as JSON (in a process of its own)."""
    import pandas  # noqa: F401  the worker has these loaded already (pyarrow imports pandas on first use)
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from microtasks import exporting
    from microtasks.db import session_factory
    from microtasks.models import Project

    with session_factory(url)() as session:
        project = session.get(Project, project_id)
        baseline = _status_mb("VmRSS")
        started, cpu = time.perf_counter(), time.process_time()
        record = exporting.write_export(session, project, "answers", fmt, out)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a child started by
    # a big parent (the one that just built a million answers) would report the parent's size.
    peak = _status_mb("VmHWM")
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": record["counts"]["rows"], "baseline_mb": baseline,
                      "peak_mb": peak, "zip_mb": (out / record["archive"]).stat().st_size / 2 ** 20}))


def measure(url: str, project_id: int, fmt: str, out: Path, arrow_pool: str) -> dict:
    env = dict(os.environ)
    if arrow_pool != "default":
        env["ARROW_DEFAULT_MEMORY_POOL"] = arrow_pool  # read when pyarrow loads, so it must be set from outside
    done = subprocess.run([sys.executable, __file__, "--child", "--database-url", url, "--project", str(project_id),
                           "--format", fmt, "--workdir", str(out)], capture_output=True, text=True, check=False,
                          env=env)
    if done.returncode != 0:
        raise SystemExit(f"export failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=1_000_000, help="answers to generate (5 per unit)")
    parser.add_argument("--database-url", action="append", default=[],
                        help="also run on this database (PostgreSQL: its tables are dropped first)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the default SQLite run")
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"], help="formats to export")
    parser.add_argument("--repeat", type=int, default=1, help="exports per format (the best is kept)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/microtasks-bench-export"),
                        help="folder for the SQLite file and the exports")
    parser.add_argument("--reuse", action="store_true", help="keep a database that already holds the answers")
    parser.add_argument("--arrow-pool", choices=["default", "system", "jemalloc", "mimalloc"], default="default",
                        help="Arrow's memory pool in the export process (ARROW_DEFAULT_MEMORY_POOL); default: "
                             "pyarrow's own choice (mimalloc)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--project", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--format", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from microtasks.config import normalise_database_url

    if args.child:
        child(normalise_database_url(args.database_url[0]), args.project, args.format, args.workdir)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    urls = ([] if args.no_sqlite else [f"sqlite:///{args.workdir / 'bench.db'}"]) + \
        [normalise_database_url(u) for u in args.database_url]
    results = []
    for url in urls:
        name = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
        print(f"{name}: {args.answers:,} answers", flush=True)
        project_id = existing(url, args.answers) if args.reuse else None
        if project_id is None:
            if url.startswith("sqlite"):
                Path(url.split("///", 1)[1]).unlink(missing_ok=True)
            project_id = build(url, args.answers)
        for fmt in args.formats:
            runs = [measure(url, project_id, fmt, args.workdir / "out", args.arrow_pool) for _ in range(args.repeat)]
            best = dict(min(runs, key=lambda r: r["seconds"]))
            best["peak_mb"] = max(r["peak_mb"] for r in runs)
            results.append((name, fmt, best))
            print(f"  {fmt}: {best['rows']:,} rows in {best['seconds']:.2f} s, peak RSS {best['peak_mb']:.0f} MB",
                  flush=True)
    print()
    print("| database | format | rows | seconds | rows/s | rows/s vs target | CPU s (export process) | "
          "RSS before | peak RSS | peak vs target | ZIP MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, fmt, r in results:
        rate = r["rows"] / r["seconds"]
        print(f"| {name} | {fmt} | {r['rows']:,} | {r['seconds']:.2f} | {rate:,.0f} | "
              f"{rate / TARGET_ROWS_PER_SECOND:.2f}x | {r['cpu']:.2f} | {r['baseline_mb']:.0f} MB | "
              f"{r['peak_mb']:.0f} MB | {r['peak_mb'] / TARGET_PEAK_MB:.2f}x | {r['zip_mb']:.1f} |")
    print(f"\nTargets: at least {TARGET_ROWS_PER_SECOND:,} rows/s, peak memory under {TARGET_PEAK_MB} MB. "
          f"Arrow memory pool: {args.arrow_pool}. Load average at the end: {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} cores).")


if __name__ == "__main__":
    main()
