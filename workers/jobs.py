"""The RQ jobs. Each takes ids, opens its own session from the environment's settings and commits.

Failures propagate, so RQ retries them with backoff and keeps them in the failed-job
registry; a job run twice writes the same result (results are upserts keyed by unit).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rq import get_current_job
from sqlalchemy.orm import Session

from microtasks import importing, results, webhooks
from microtasks.answers import unit_need
from microtasks.config import Settings
from microtasks.db import session_factory
from microtasks.errors import ValidationError
from microtasks.models import Batch, BatchState, Unit, utcnow
from microtasks.serving import Dispatcher, change_need
from workers.connection import connect, enqueue_refit
from workers.webhooks import enqueue_deliveries


@contextmanager
def job_session() -> Iterator[tuple[Settings, Session]]:
    settings = Settings.from_env()
    with session_factory(settings.database_url)() as session:
        yield settings, session


def _job_id() -> str | None:
    job = get_current_job()
    return job.id if job else None


def compute_consensus(unit_id: int) -> dict:
    """Aggregate a unit's answers and upsert its result; adaptive redundancy may retire it or ask for more."""
    with job_session() as (settings, session):
        result, stable = results.compute_consensus(session, unit_id, job_id=_job_id())
        unit = session.get(Unit, unit_id)
        project = unit.project
        need = results.adaptive_need(unit.answer_count, unit_need(project, unit),
                                     project.min_redundancy or project.redundancy, project.max_redundancy,
                                     project.confidence_threshold, result.confidence, stable)
        changed = change_need(session, unit_id, need) if need is not None else None
        deliveries = webhooks.after_consensus(session, unit_id)
        session.commit()
        connection = connect(settings)
        if changed is not None:
            Dispatcher(connection).set_need(*changed)
        enqueue_deliveries(connection, deliveries)
        due = results.refit_due(session, project)
        if due is not None:
            enqueue_refit(connection, project.id, due)
        return {"unit_id": unit_id, "confidence": result.confidence, "n_answers": result.n_answers,
                "need": changed[2] if changed else None}


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
    from time import monotonic

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
            if processed == 0 or monotonic() - last_commit >= 0.5:
                session.commit()  # only the batch row is dirty: units are added at the end
                last_commit = monotonic()

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

