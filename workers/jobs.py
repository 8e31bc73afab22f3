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

from microtasks import importing, results
from microtasks.config import Settings
from microtasks.db import session_factory
from microtasks.errors import ValidationError
from microtasks.models import Batch, BatchState, utcnow
from microtasks.serving import Dispatcher
from workers.connection import connect


@contextmanager
def job_session() -> Iterator[tuple[Settings, Session]]:
    settings = Settings.from_env()
    with session_factory(settings.database_url)() as session:
        yield settings, session


def _job_id() -> str | None:
    job = get_current_job()
    return job.id if job else None


def compute_consensus(unit_id: int) -> dict:
    """Aggregate a unit's answers and upsert its consensus result."""
    with job_session() as (_, session):
        result = results.compute_consensus(session, unit_id, job_id=_job_id())
        session.commit()
        return {"unit_id": unit_id, "confidence": result.confidence, "n_answers": result.n_answers}


def import_batch(batch_id: int) -> dict:
    """Import an uploaded batch; a broken file is reported while the rest imports."""
    with job_session() as (settings, session):
        batch = session.get(Batch, batch_id)
        if batch is None or batch.state is BatchState.done:
            return {"batch_id": batch_id, "skipped": True}
        # A retried job starts from scratch: units of an earlier, unfinished attempt were never committed.
        batch.state, batch.job_id = BatchState.processing, _job_id()
        session.commit()
        source = Path(batch.source_path or "")
        try:
            report = importing.import_batch(session, batch.project, batch, source, settings.media_dir)
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

