"""The export job: writes a project's export (a ZIP with its provenance) and reports progress on the row.

Like the jobs in :mod:`workers.jobs` it takes an id, opens its own sessions and commits;
a failure is recorded on the export and raised again, so RQ retries it with backoff and
keeps it in the failed-job registry.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from microtasks import exporting
from microtasks.config import Settings
from microtasks.db import session_factory
from microtasks.errors import ValidationError
from microtasks.models import Export, ExportState, Project, utcnow
from workers.connection import enqueue_unique
from workers.jobs import _job_id, job_session

#: Seconds at least between two progress commits (the last one, all done, is always committed).
PROGRESS_INTERVAL = 0.5


def exports_dir(settings: Settings) -> Path:
    """Where finished exports live: ``<instance>/exports/<export id>/<slug>-<kind>-<format>.zip``."""
    return settings.instance_dir / "exports"


def enqueue_export(connection: "redis.Redis", export_id: int) -> str:
    """Queue an export once; the job id is ``export-<id>``."""
    return enqueue_unique(connection, "default", "workers.exports.run_export", f"export-{export_id}", export_id)


def run_export(export_id: int) -> dict:
    """Write an export's ZIP into ``<instance>/exports/<id>/``, committing its progress as it goes."""
    with job_session() as (settings, session):
        export = session.get(Export, export_id)
        if export is None or export.state is ExportState.done:
            return {"export_id": export_id, "skipped": True}
        export.state, export.job_id, export.error = ExportState.running, _job_id(), None
        export.rows, export.total, export.finished_at = 0, 0, None
        session.commit()
        directory = exports_dir(settings) / str(export_id)
        shutil.rmtree(directory, ignore_errors=True)  # what an earlier, failed attempt left
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL or done >= total:
                export.rows, export.total = done, total
                session.commit()
                last = now

        # The rows are read on a session of their own: this one commits the progress meanwhile.
        with session_factory(settings.database_url)() as reader:
            project = reader.get(Project, export.project_id)
            try:
                if project is None:
                    raise ValidationError(f"Project {export.project_id} no longer exists.")
                provenance = exporting.write_export(reader, project, export.kind, export.format, directory,
                                                    progress)
            except ValidationError as error:
                export.state, export.error, export.finished_at = ExportState.failed, error.message, utcnow()
                session.commit()
                return {"export_id": export_id, "error": error.message}
            except Exception as error:  # recorded on the export, then raised again for RQ to retry
                session.rollback()
                export.state, export.error, export.finished_at = ExportState.failed, repr(error), utcnow()
                session.commit()
                raise
        export.state, export.finished_at = ExportState.done, utcnow()
        export.path = f"{export_id}/{provenance['archive']}"
        export.provenance = provenance
        export.rows = export.total = provenance["counts"]["records"]
        session.commit()
        return {"export_id": export_id, "rows": provenance["counts"]["rows"], "path": export.path}
