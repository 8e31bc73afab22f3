"""Consensus drain (issue 8): units decided per second by one worker, and SQL statements per unit.

Builds projects whose units all have their answers (3 per unit, 300 volunteers), queues
every unit in the due set as the web does, and runs :func:`workers.jobs.drain_consensus`
in this process until the set is empty, counting the statements it sends. Three kinds of
project: single-label tagging decided by majority vote (no model fitted yet), the same
after a refit (decided from the volunteers' fitted reliabilities, as most units of a
running project are), and crater marking (each answer 0 to 4 circles). One CPU, the
database and an embedded Redis on this machine.

    python benchmarks/drain.py                                   # SQLite
    python benchmarks/drain.py --database-url postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABELS = ["cat", "dog", "bird", "fish"]
PER_UNIT = 3
VOLUNTEERS = 300


def build(url: str, kind: str, n_units: int, rng: np.random.Generator) -> int:
    """A project of ``kind`` with ``n_units`` units of 3 counted answers each; returns its id."""
    from sqlalchemy import insert, select

    from microtasks.db import session_factory
    from microtasks.models import Answer, MarkingTool, Owner, Project, TaskType, Unit, UnitState, Volunteer

    with session_factory(url)() as session:
        owner = Owner(name=f"bench {kind}")
        session.add(owner)
        session.flush()
        marking = kind == "marking"
        project = Project(owner_id=owner.id, slug=f"bench-{kind}-{uuid.uuid4().hex[:6]}", name=kind,
                          task_type=TaskType.marking if marking else TaskType.tagging,
                          marking_tool=MarkingTool.circle if marking else None,
                          labels=[] if marking else LABELS, redundancy=PER_UNIT)
        session.add(project)
        session.flush()
        volunteers = list(session.scalars(insert(Volunteer).returning(Volunteer.id),
                                          [{"public_id": str(uuid.uuid4())} for _ in range(VOLUNTEERS)]))
        skill = rng.uniform(0.55, 0.95, VOLUNTEERS)
        units = list(session.scalars(insert(Unit).returning(Unit.id), [
            {"project_id": project.id, "external_id": f"u{u}", "data": {}, "width": 250, "height": 250,
             "state": UnitState.retired, "answer_count": PER_UNIT} for u in range(n_units)]))
        rows = []
        for unit_id in units:
            truth = int(rng.integers(len(LABELS)))
            craters = [(rng.uniform(20, 230), rng.uniform(20, 230), rng.uniform(4, 20))
                       for _ in range(int(rng.integers(0, 4)))]
            for v in rng.choice(VOLUNTEERS, PER_UNIT, replace=False):
                if marking:
                    payload = {"marks": [{"x": round(x + rng.normal(0, 1), 1), "y": round(y + rng.normal(0, 1), 1),
                                          "r": round(r * rng.uniform(0.85, 1.15), 1)}
                                         for x, y, r in craters if rng.random() < skill[v]]}
                else:
                    right = rng.random() < skill[v]
                    payload = {"label": LABELS[truth if right else (truth + int(rng.integers(1, 4))) % 4]}
                rows.append({"answer_uuid": str(uuid.uuid4()), "unit_id": unit_id, "volunteer_id": volunteers[v],
                             "payload": payload, "duration_ms": 4000, "counted": True})
        session.execute(insert(Answer), rows)
        session.commit()
        return project.id


def drain(url: str, unit_ids: list[int], profile: bool) -> tuple[float, int]:
    """Queue the units and drain them; (seconds, statements)."""
    from sqlalchemy import event

    from microtasks.config import Settings
    from microtasks.db import engine_for
    from workers.connection import DUE_KEY, connect, enqueue_consensus
    from workers.jobs import drain_consensus

    connection = connect(Settings.from_env())
    connection.delete(DUE_KEY)
    enqueue_consensus(connection, [(unit_id, PER_UNIT) for unit_id in unit_ids])
    statements = 0

    def count(*_args: object) -> None:
        nonlocal statements
        statements += 1

    engine = engine_for(url)
    event.listen(engine, "before_cursor_execute", count)
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    while connection.scard(DUE_KEY):
        drain_consensus()
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    seconds = time.perf_counter() - start
    event.remove(engine, "before_cursor_execute", count)
    return seconds, statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL database whose name contains 'bench' (emptied); "
                        "default: SQLite in a temporary folder")
    parser.add_argument("--units", type=int, default=4000, help="units per project")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each drain")
    args = parser.parse_args()

    from sqlalchemy import text

    from microtasks.config import normalise_database_url
    from microtasks.db import engine_for, upgrade

    workdir = Path(tempfile.mkdtemp(prefix="microtasks-drain-"))
    url = normalise_database_url(args.database_url or f"sqlite:///{workdir / 'bench.db'}")
    os.environ.update(DATABASE_URL=url, INSTANCE_DIR=str(workdir))
    os.environ.pop("REDIS_URL", None)
    engine = engine_for(url)
    if engine.dialect.name != "sqlite":
        if "bench" not in (engine.url.database or ""):
            raise SystemExit(f"Refusing to empty {engine.url.database!r}: use a database whose name contains 'bench'.")
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(url)

    from sqlalchemy import func, select

    from microtasks import results
    from microtasks.db import session_factory
    from microtasks.models import ConsensusResult, Unit

    rng = np.random.default_rng(0)
    rows = []
    for kind in ("majority", "fitted", "marking"):
        project_id = build(url, kind, args.units, rng)
        with session_factory(url)() as session:
            if kind == "fitted":
                results.refit_project(session, project_id)
                session.commit()
            unit_ids = list(session.scalars(select(Unit.id).where(Unit.project_id == project_id)))
        seconds, statements = drain(url, unit_ids, args.profile)
        with session_factory(url)() as session:
            stored = session.scalar(select(func.count()).select_from(ConsensusResult).join(Unit).where(
                Unit.project_id == project_id, ConsensusResult.n_answers == PER_UNIT))
        rows.append((kind, len(unit_ids), seconds, statements, stored))

    print(f"\n#### Consensus drain, one process, {engine.dialect.name}, {args.units:,} units of {PER_UNIT} answers "
          f"per project\n")
    print("| project | units | results stored | seconds | units/s | ms/unit | statements/unit |")
    print("|---|---|---|---|---|---|---|")
    for kind, units, seconds, statements, stored in rows:
        print(f"| {kind} | {units:,} | {stored:,} | {seconds:.2f} | {units / seconds:,.0f} "
              f"| {seconds / units * 1000:.2f} | {statements / units:.2f} |")
    if any(stored != units for _, units, _, _, stored in rows):
        raise SystemExit("Some units were left without their consensus.")


if __name__ == "__main__":
    main()
