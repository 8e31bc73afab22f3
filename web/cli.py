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

from microtasks import exporting
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
@click.option("--username", help="Sign-in name for the owner pages (asks for a password).")
@click.option("--password", envvar="MICROTASKS_OWNER_PASSWORD",
              help="The password (default: asked for, not echoed).")
@click.option("--admin", is_flag=True, help="An administrator, who sees every project.")
def create_owner_command(name: str, username: str | None, password: str | None, admin: bool) -> None:
    from microtasks.accounts import create_owner

    if username and not password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    upgrade(settings.database_url)
    with session_factory(settings.database_url)() as session:
        try:
            owner, key = create_owner(session, name, username, password)
        except MicrotasksError as error:
            raise click.ClickException(error.message) from None
        owner.is_admin = admin
        session.commit()
    click.echo(f"Owner {owner.id} ({name}) created. API key (keep it; it is not shown again):\n{key}")


@cli.command("create-project", help="Create a project from a JSON settings file (the API's project fields).")
@click.option("--owner-key", envvar="MICROTASKS_API_KEY", required=True, help="The owner's API key.")
@click.argument("settings_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def create_project_command(owner_key: str, settings_file: Path) -> None:
    from marshmallow import ValidationError as SchemaError

    from microtasks.accounts import owner_for_key
    from microtasks.projects import create_project
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


@cli.command("import", help="Import a batch into a project: a ZIP or a folder of images (with an optional "
                            "manifest.csv/json/jsonl), or one large JPEG/PNG/WebP image cut into overlapping tiles.")
@click.argument("slug")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--tile-size", default=512, show_default=True, type=click.IntRange(64, 4096),
              help="For a single image: the side of a square tile, in pixels.")
@click.option("--overlap", default=64, show_default=True, type=click.IntRange(min=0),
              help="For a single image: pixels shared by neighbouring tiles (less than the tile size).")
def import_command(slug: str, path: Path, tile_size: int, overlap: int) -> None:
    from contextlib import ExitStack

    from microtasks.importing import image_format, import_batch, import_tiles
    from microtasks.models import BatchKind, utcnow
    from microtasks.serving import Dispatcher
    from workers.connection import connect

    if overlap >= tile_size:
        raise click.BadParameter(f"must be less than the tile size ({tile_size}).", param_hint="'--overlap'")
    single_image = False
    if path.is_file():
        with path.open("rb") as handle:
            single_image = image_format(handle.read(16)) is not None
    settings = _settings()
    with session_factory(settings.database_url)() as session, ExitStack() as bars:
        project = _project(session, slug)
        batch = Batch(project_id=project.id, name=path.name, state=BatchState.processing,
                      kind=BatchKind.tiles if single_image else BatchKind.archive,
                      options={"tile_size": tile_size, "overlap": overlap} if single_image else {})
        session.add(batch)
        session.flush()
        bar = None

        def progress(processed: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = bars.enter_context(click.progressbar(
                    length=total, label=f"{'Tiling' if single_image else 'Importing'} {path.name}",
                    show_pos=True, file=sys.stderr))
            bar.update(processed - bar.pos)

        try:
            if single_image:
                report = import_tiles(session, project, batch, path, settings.media_dir, tile_size=tile_size,
                                      overlap=overlap, progress=progress)
            else:
                report = import_batch(session, project, batch, path, settings.media_dir, progress=progress)
        except MicrotasksError as error:
            session.rollback()
            raise click.ClickException(error.message) from None
        batch.state, batch.finished_at = BatchState.done, utcnow()
        session.commit()
        Dispatcher(connect(settings)).invalidate(project.id)
    for rejected in report.rejected:
        click.echo(f"rejected: {rejected['name']}: {rejected['reason']}", err=True)
    click.echo(f"Imported {len(report.imported)} units into {slug!r}; {len(report.rejected)} rejected.")
    if report.rejected and not report.imported:
        sys.exit(1)


class _ProgressBar:
    """A click progress bar on standard error, fed by an export's ``progress(done, total)``."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled = label, enabled
        self.bar = None
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        self.bar.length = max(total, done, 1)
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@cli.command(help="Export a project: consensus results, raw answers, volunteer reliability or gold performance. "
                  "Writes <slug>-<kind>-<format>.zip, the data file with its provenance.json (algorithms, "
                  "parameters, code version, time, counts); with --out, the data file alone. A progress bar "
                  "shows on standard error.")
@click.argument("slug")
@click.option("--kind", type=click.Choice(exporting.KINDS), default="consensus", show_default=True,
              help="Consensus results (with confidence and agreement), raw answers, volunteer reliability "
                   "(pseudonymous ids) or gold performance.")
@click.option("--format", "fmt", type=click.Choice(exporting.FORMATS), default="csv", show_default=True,
              help="Flat CSV, JSON Lines, Parquet; GeoJSON or COCO for the marks of a marking project; json (one "
                   "array, nested results kept) only with --out.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path, allow_dash=True), default=None,
              help="Write the data file alone to this file ('-': standard output); a name ending in .zip gets "
                   "the ZIP with provenance.json.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for the ZIP when --out is not given.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(slug: str, kind: str, fmt: str, out: Path | None, directory: Path, quiet: bool) -> None:
    settings = _settings()
    bar = _ProgressBar(f"Exporting {kind} as {fmt}", enabled=not quiet)
    with session_factory(settings.database_url)() as session:
        project = _project(session, slug)
        try:
            exporting.validate(project, kind, fmt)
            if str(out) == "-":
                if fmt == "parquet":
                    raise click.ClickException("Parquet is binary: give --out a file name.")
                for chunk in exporting.stream(session, project, kind, fmt, bar):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                return
            if out is not None and out.suffix != ".zip":
                with out.open("wb") as handle:
                    rows = exporting.write_data(session, project, kind, fmt, handle, bar).rows
                path = out
            else:
                if fmt == "json":
                    raise click.ClickException("json is for the data file alone: give --out (or choose jsonl).")
                path = out or directory / exporting.archive_name(project, kind, fmt)
                rows = exporting.write_archive(session, project, kind, fmt, path, bar)["counts"]["rows"]
        except MicrotasksError as error:
            raise click.ClickException(error.message) from None
        finally:
            bar.close()
    click.echo(f"Wrote {path} ({rows} rows).", err=True)


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
    import workers.jobs  # noqa: F401  loaded once here, so each forked job starts warm
    from workers.connection import connect
    from workers.worker import work

    work(connect(_settings()), burst=burst)


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
    demo_owner = load_demo(settings)
    click.echo(f"Demo owner: username {demo_owner['username']}, password {demo_owner['password']}, "
               f"API key {demo_owner['api_key']}")
    if no_serve:
        return
    click.echo(f"\n  Open http://{host}:{port}/ to volunteer; http://{host}:{port}/owner/ for the owner "
               f"pages (sign in as above).\n")
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
