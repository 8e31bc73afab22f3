"""The ``microtasks`` command: demo, web server, worker, migrations, import and export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
from sqlalchemy import select

from microtasks.config import Settings
from microtasks.db import session_factory, upgrade
from microtasks.errors import MicrotasksError
from microtasks.models import Batch, BatchState, Project
from web.cli_research import aggregate, aggregate_marks, plan


def _settings() -> Settings:
    return Settings.from_env()


def _project(session, slug: str) -> Project:  # type: ignore[no-untyped-def]
    project = session.scalars(select(Project).where(Project.slug == slug)).first()
    if project is None:
        raise click.ClickException(f"No project with slug {slug!r}.")
    return project


@click.group(help="microtasks: a micro-volunteering engine. With no DATABASE_URL/REDIS_URL set it runs "
                  "on the embedded default (SQLite and an embedded Redis in ./instance).")
def cli() -> None:
    pass


@cli.command(help="Create or upgrade the database schema (Alembic migrations).")
def migrate() -> None:
    settings = _settings()
    upgrade(settings.database_url)
    click.echo("Database is up to date.")


@cli.command("create-owner", help="Create a project owner and print their API key (shown once).")
@click.argument("name")
def create_owner_command(name: str) -> None:
    from microtasks.projects import create_owner

    settings = _settings()
    upgrade(settings.database_url)
    with session_factory(settings.database_url)() as session:
        owner, key = create_owner(session, name)
        session.commit()
    click.echo(f"Owner {owner.id} ({name}) created. API key (keep it; it is not shown again):\n{key}")


@cli.command("create-project", help="Create a project from a JSON settings file (the API's project fields).")
@click.option("--owner-key", envvar="MICROTASKS_API_KEY", required=True, help="The owner's API key.")
@click.argument("settings_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def create_project_command(owner_key: str, settings_file: Path) -> None:
    from marshmallow import ValidationError as SchemaError

    from microtasks.projects import create_project, owner_for_key
    from web.api.projects.schemas import ProjectSchema

    try:
        data = json.loads(settings_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        line = getattr(error, "lineno", 1)
        raise click.ClickException(f"{settings_file}, line {line}: not valid JSON ({error}).") from None
    try:
        settings = ProjectSchema().load(data)
    except SchemaError as error:
        raise click.ClickException(f"{settings_file}: {json.dumps(error.messages)}") from None
    config = _settings()
    with session_factory(config.database_url)() as session:
        owner = owner_for_key(session, owner_key)
        if owner is None:
            raise click.ClickException("That API key is not known.")
        try:
            project = create_project(session, owner, settings)
        except MicrotasksError as error:
            raise click.ClickException(f"{settings_file}: {error.message}") from None
        session.commit()
        click.echo(f"Project {project.id} created: /p/{project.slug}")


@cli.command("import", help="Import a batch into a project from a ZIP or a folder of images "
                            "(with an optional manifest.csv/json/jsonl).")
@click.argument("slug")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def import_command(slug: str, path: Path) -> None:
    from microtasks.importing import import_batch
    from microtasks.serving import Dispatcher
    from workers.connection import connect

    settings = _settings()
    with session_factory(settings.database_url)() as session:
        project = _project(session, slug)
        batch = Batch(project_id=project.id, name=path.name, state=BatchState.processing)
        session.add(batch)
        session.flush()
        try:
            report = import_batch(session, project, batch, path, settings.media_dir)
        except MicrotasksError as error:
            session.rollback()
            raise click.ClickException(error.message) from None
        batch.state = BatchState.done
        session.commit()
        Dispatcher(connect(settings)).invalidate(project.id)
    for rejected in report.rejected:
        click.echo(f"rejected: {rejected['name']}: {rejected['reason']}", err=True)
    click.echo(f"Imported {len(report.imported)} units into {slug!r}; {len(report.rejected)} rejected.")
    if report.rejected and not report.imported:
        sys.exit(1)


@cli.command(help="Export a project's consensus results or raw answers as CSV or JSON.")
@click.argument("slug")
@click.option("--kind", type=click.Choice(["consensus", "answers"]), default="consensus", show_default=True,
              help="Consensus results or raw answers.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="Flat CSV or a JSON array.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write (standard output when omitted).")
def export(slug: str, kind: str, fmt: str, out: Path | None) -> None:
    from microtasks.exporting import stream

    settings = _settings()
    with session_factory(settings.database_url)() as session:
        project = _project(session, slug)
        handle = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
        try:
            for chunk in stream(session, project, kind, fmt):
                handle.write(chunk)
        finally:
            if out:
                handle.close()
    if out:
        click.echo(f"Wrote {out}.", err=True)


@cli.command(help="Refit a single-label project's consensus model on all its answers and gold now, "
                  "rewriting its retired units' results (a worker also does this as answers grow).")
@click.argument("slug")
def refit(slug: str) -> None:
    from microtasks.results import refit_project
    from microtasks.serving import Dispatcher
    from workers.connection import connect

    settings = _settings()
    with session_factory(settings.database_url)() as session:
        project = _project(session, slug)
        refit = refit_project(session, project.id)
        session.commit()
    if refit.reopened:
        Dispatcher(connect(settings)).invalidate(project.id)
    for volunteer_id, reason in refit.quarantined.items():
        click.echo(f"quarantined volunteer {volunteer_id}: {reason}")
    click.echo(f"Refitted {slug!r} on {refit.answers} answers." if refit.answers else
               f"Nothing to refit in {slug!r} (it needs single-label answers).")


@cli.command(help="Run an RQ worker for the consensus and import queues.")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
def worker(burst: bool) -> None:
    from rq import Worker
    from rq.serializers import JSONSerializer

    import workers.jobs  # noqa: F401  loaded once here, so each forked job starts warm
    from workers.connection import QUEUES, connect

    settings = _settings()
    connection = connect(settings)
    Worker(list(QUEUES), connection=connection, serializer=JSONSerializer).work(
        burst=burst, with_scheduler=True, logging_level="WARNING")


def _start_embedded_redis(settings: Settings) -> str:
    from workers.connection import embedded_redis, redis_url_of

    server = embedded_redis(settings.instance_dir)
    # Keep the server object alive for the lifetime of this process.
    _start_embedded_redis.server = server  # type: ignore[attr-defined]
    return redis_url_of(server)


def _serve(settings: Settings, host: str, port: int, workers: int, web_processes: int) -> None:
    """Run gunicorn and RQ workers as child processes until interrupted."""
    env = dict(os.environ, MICROTASKS_INSTANCE_DIR=str(settings.instance_dir),
               DATABASE_URL=settings.database_url)
    env["REDIS_URL"] = settings.redis_url or _start_embedded_redis(settings)
    children = [subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(web_processes), "--threads", "1", "--keep-alive", "30",
         "--bind", f"{host}:{port}", "--access-logfile", "-", "--log-level", "warning", "web.wsgi:app"],
        env=env)]
    for _ in range(workers):
        children.append(subprocess.Popen([sys.executable, "-m", "web.cli", "worker"], env=env))
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stop and all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


@cli.command(help="Serve the web app under gunicorn with RQ workers beside it (one command, one machine).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="RQ worker processes to start.")
@click.option("--web-processes", default=4, show_default=True, help="gunicorn worker processes.")
def serve(host: str, port: int, workers: int, web_processes: int) -> None:
    settings = _settings()
    upgrade(settings.database_url)
    click.echo(f"Serving on http://{host}:{port}/  (Ctrl-C stops)")
    _serve(settings, host, port, workers, web_processes)


@cli.command(help="Load the demo projects (first time only) and serve them with a worker.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="RQ worker processes to start.")
@click.option("--no-serve", is_flag=True, help="Only load the demo data, then exit.")
def demo(host: str, port: int, workers: int, no_serve: bool) -> None:
    from web.demo import load_demo

    settings = _settings()
    upgrade(settings.database_url)
    key = load_demo(settings)
    click.echo(f"Demo owner API key: {key}")
    if no_serve:
        return
    click.echo(f"\n  Open http://{host}:{port}/ to volunteer; http://{host}:{port}/owner/ for the owner "
               f"pages (API key above).\n")
    _serve(settings, host, port, workers, 3)


@cli.command(help="Demo only: simulated volunteers answer a demo project's open units, "
                  "so consensus appears without waiting for people.")
@click.argument("slug")
@click.option("--volunteers", default=3, show_default=True, help="How many simulated volunteers.")
@click.option("--seed", default=0, show_default=True, help="Random seed of the simulation.")
def simulate(slug: str, volunteers: int, seed: int) -> None:
    from web.demo import simulate_volunteers

    settings = _settings()
    answered = simulate_volunteers(settings, slug, volunteers, seed)
    click.echo(f"{volunteers} simulated volunteers gave {answered} answers to {slug!r}.")


cli.add_command(aggregate)
cli.add_command(aggregate_marks)
cli.add_command(plan)

if __name__ == "__main__":
    cli()
