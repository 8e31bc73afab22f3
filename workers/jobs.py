"""The RQ jobs. Each takes ids, opens its own session from the environment's settings and commits.

Failures propagate, so RQ retries them with backoff and keeps them in the failed-job
registry; a job run twice writes the same result (results are upserts keyed by unit).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import redis
from rq import get_current_job
from rq.job import Job
from sqlalchemy import or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from microtasks import importing, results, webhooks
from microtasks.answers import unit_need
from microtasks.config import Settings
from microtasks.db import session_factory
from microtasks.errors import ValidationError
from microtasks.models import Batch, BatchState, ConsensusResult, Project, Unit, UnitState, utcnow
from microtasks.serving import Dispatcher, change_need
from workers.connection import (
    DRAIN_FLAG,
    DUE_KEY,
    connect,
    enqueue_consensus,
    enqueue_import,
    enqueue_refit,
    hand_over_drain,
    import_job_id,
)
from workers.webhooks import enqueue_deliveries, requeue_lost_deliveries


@contextmanager
def job_session() -> Iterator[tuple[Settings, Session]]:
    settings = Settings.from_env()
    with session_factory(settings.database_url)() as session:
        yield settings, session


def _job_id() -> str | None:
    job = get_current_job()
    return job.id if job else None


#: Units a drain job takes from the set at a time, and at most in all before it hands over to a new job.
DRAIN_CHUNK = 200
DRAIN_MOST = 2000


def drain_consensus() -> dict:
    """Compute consensus for the units waiting in the due set (:func:`workers.connection.enqueue_consensus`).

    Each unit's answers are aggregated and its result upserted; adaptive redundancy may
    retire it or ask for more. A chunk is committed at once, then the serving cache, the
    webhooks and the projects' refits follow. When the database or Redis cannot be
    reached, the chunk goes back into the set and the job fails (RQ retries it); when a
    unit fails otherwise, the chunk is decided again unit by unit and the failing unit is
    logged and left out, so that one bad unit never stops the others. Units a killed job
    had taken are found by :func:`sweep`. After :data:`DRAIN_MOST` units a new job takes
    over, so that one job never holds a worker for long.
    """
    with job_session() as (settings, session):
        connection = connect(settings)
        connection.delete(DRAIN_FLAG)  # first: a unit added from now on queues the next drain job
        done, projects = 0, set()
        while done < DRAIN_MOST:
            members = connection.spop(DUE_KEY, DRAIN_CHUNK)
            if not members:
                break
            units = sorted({int(member.split(b":")[0]) for member in members})
            try:
                try:
                    changed, deliveries = _decide(session, units, projects)
                except UNREACHABLE:
                    raise
                except Exception:
                    session.rollback()
                    changed, deliveries = _decide_one_by_one(session, units, projects)
            except UNREACHABLE:
                session.rollback()
                connection.sadd(DUE_KEY, *members)
                raise
            dispatcher = Dispatcher(connection)
            for change in changed:
                dispatcher.set_need(*change)
            enqueue_deliveries(connection, deliveries)
            done += len(members)
        if done >= DRAIN_MOST:
            hand_over_drain(connection)
        for project_id in projects:
            project = session.get(Project, project_id)
            due = results.refit_due(session, project)
            if due is not None:
                enqueue_refit(connection, project_id, due)
        return {"units": done, "projects": sorted(projects)}


#: Failures that are not a unit's: the chunk waits in the set for the job's retry.
UNREACHABLE = (OperationalError, redis.RedisError)


def _decide_one_by_one(session: Session, unit_ids: list[int], projects: set[int]) -> tuple[list[tuple], list]:
    """:func:`_decide` each unit on its own; a unit that fails (not for an unreachable service) is logged and left out."""
    changed, deliveries = [], []
    for unit_id in unit_ids:
        try:
            one = _decide(session, [unit_id], projects)
        except UNREACHABLE:
            raise
        except Exception:
            session.rollback()
            logging.getLogger(__name__).exception("consensus for unit %d failed; left out", unit_id)
            continue
        changed += one[0]
        deliveries += one[1]
    return changed, deliveries


def _decide(session: Session, unit_ids: list[int], projects: set[int]) -> tuple[list[tuple], list]:
    """Decide units and commit: their need changes and webhook deliveries; their projects join ``projects``.

    Adaptive redundancy (:func:`microtasks.results.adaptive_need`) may retire a unit at once
    or ask for more answers.
    """
    changed = []
    decided = results.compute_consensus(session, unit_ids, job_id=_job_id())
    for outcome in decided:
        unit, project = outcome.unit, outcome.unit.project
        projects.add(project.id)
        need = results.adaptive_need(unit.answer_count, unit_need(project, unit),
                                     project.min_redundancy or project.redundancy, project.max_redundancy,
                                     project.confidence_threshold, outcome.confidence, outcome.stable)
        if need is not None:
            changed.append(change_need(session, unit.id, need))
    deliveries = webhooks.after_consensus(session, [outcome.unit for outcome in decided])
    session.commit()
    return changed, deliveries


#: A webhook delivery or an upload older than this whose job Redis does not know was lost with Redis.
LOST_AFTER = timedelta(minutes=2)


#: The sweep's warning when it queued anything again (the fault suite counts the units from it).
SWEEP_LOG = "queued again, their jobs lost: consensus of %d units, %d webhook deliveries, %d imports"


def sweep() -> dict:
    """Queue again the work whose job Redis lost: it restarted without its data, or went away
    between a commit and the queueing, or a drain job that had taken units was killed.

    Consensus for units that have all their answers but no consensus over them (units still
    waiting in the due set are left to the drain job); webhook deliveries not yet delivered,
    with attempts left; uploads not yet imported. Queued by each worker's maintenance round
    (:mod:`workers.worker`), once across all workers.
    """
    with job_session() as (settings, session):
        connection = connect(settings)
        lost = {"consensus": _sweep_consensus(session, connection),
                "webhook deliveries": requeue_lost_deliveries(session, connection, utcnow() - LOST_AFTER),
                "imports": _sweep_imports(session, connection)}
    if any(lost.values()):
        logging.getLogger(__name__).warning(SWEEP_LOG, *lost.values())
    return lost


#: Seconds the sweep waits before it looks again at units that seem lost: a drain job may have
#: taken them from the due set and not committed yet, or an answer's request not queued them yet.
RECHECK_SECONDS = 5


def _sweep_consensus(session: Session, connection: "redis.Redis") -> int:
    lost = _unqueued(session, connection)
    if lost:
        session.commit()  # the next look sees what was committed meanwhile
        time.sleep(RECHECK_SECONDS)
        lost = sorted(set(lost) & set(_unqueued(session, connection)))
    queued = enqueue_consensus(connection, lost)
    hand_over_drain(connection)  # units waiting for a drain job whose flag outlived it
    return queued


def _unqueued(session: Session, connection: "redis.Redis") -> list[tuple[int, int]]:
    """``(unit, answers)`` of the units with all their answers, no consensus over them and no place in the due set."""
    due = session.execute(
        select(Unit.id, Unit.answer_count).outerjoin(ConsensusResult, ConsensusResult.unit_id == Unit.id)
        .where(Unit.state == UnitState.retired, Unit.gold.is_(None), Unit.answer_count > 0,
               or_(ConsensusResult.id.is_(None), ConsensusResult.n_answers != Unit.answer_count))).all()
    unqueued = []
    for start in range(0, len(due), 5000):
        chunk = due[start:start + 5000]
        waiting = connection.smismember(DUE_KEY, [f"{unit_id}:{count}" for unit_id, count in chunk])
        unqueued += [(unit_id, count) for (unit_id, count), known in zip(chunk, waiting) if not known]
    return unqueued


def _sweep_imports(session: Session, connection: "redis.Redis") -> int:
    batches = session.scalars(select(Batch.id).where(
        Batch.state.in_([BatchState.pending, BatchState.processing]), Batch.created_at < utcnow() - LOST_AFTER)).all()
    lost = [batch_id for batch_id in batches if not Job.exists(import_job_id(batch_id), connection)]
    for batch_id in lost:
        enqueue_import(connection, batch_id)
    return len(lost)


def refit_project(project_id: int) -> dict:
    """Refit a project's label model on all its answers and gold, quarantining spam; rewrite retired units."""
    with job_session() as (settings, session):
        refit = results.refit_project(session, project_id, job_id=_job_id())
        session.commit()
        if refit.reopened:
            Dispatcher(connect(settings)).invalidate(project_id)
        return {"project_id": project_id, "answers": refit.answers, "quarantined": len(refit.quarantined),
                "reopened": len(refit.reopened)}


def import_batch(batch_id: int) -> dict:
    """Import an uploaded batch (a ZIP of images, or one image cut into tiles), showing progress on the batch.

    A broken file is reported while the rest imports. The batch row's ``processed`` and
    ``total`` are committed about every half second; the units are inserted only at the
    end, in the same transaction that marks the batch done, so a crash leaves none.
    """
    from microtasks.models import BatchKind

    with job_session() as (settings, session):
        batch = session.get(Batch, batch_id)
        if batch is None or batch.state is BatchState.done:
            return {"batch_id": batch_id, "skipped": True}
        # A retried job starts from scratch: units of an earlier, unfinished attempt were never committed.
        batch.state, batch.job_id, batch.processed = BatchState.processing, _job_id(), 0
        session.commit()
        source = Path(batch.source_path or "")
        last_commit = 0.0

        def progress(processed: int, total: int) -> None:
            nonlocal last_commit
            batch.processed, batch.total = processed, total
            if processed == 0 or time.monotonic() - last_commit >= 0.5:
                session.commit()  # only the batch row is dirty: units are added at the end
                last_commit = time.monotonic()

        try:
            if batch.kind is BatchKind.tiles:
                options = batch.options or {}
                report = importing.import_tiles(session, batch.project, batch, source, settings.media_dir,
                                                tile_size=options.get("tile_size", 512),
                                                overlap=options.get("overlap", 64), progress=progress)
            else:
                report = importing.import_batch(session, batch.project, batch, source, settings.media_dir,
                                                progress=progress)
        except ValidationError as error:
            session.rollback()
            batch.state, batch.error, batch.finished_at = BatchState.failed, error.message, utcnow()
            session.commit()
            source.unlink(missing_ok=True)
            return {"batch_id": batch_id, "error": error.message}
        batch.state, batch.finished_at = BatchState.done, utcnow()
        session.commit()
        Dispatcher(connect(settings)).invalidate(batch.project_id)
        source.unlink(missing_ok=True)
        return {"batch_id": batch_id, "imported": len(report.imported), "rejected": len(report.rejected)}

