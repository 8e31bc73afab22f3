"""The demo: two generated projects (tagging and crater marking), and simulated volunteers to fill them."""

from __future__ import annotations

import json
import secrets
import tempfile
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import select

from fixtures import demo as fixtures
from microtasks.answers import AnswerIn, submit_answers
from microtasks.config import Settings
from microtasks.db import session_factory
from microtasks.accounts import create_owner
from microtasks.importing import import_batch
from microtasks.models import Batch, BatchState, Project, Unit
from microtasks.projects import create_project
from microtasks.serving import Dispatcher
from microtasks.volunteers import create_volunteer
from workers.connection import after_answers, connect

DEMO_FILE = "demo.json"


def load_demo(settings: Settings) -> dict[str, str]:
    """Create the demo owner and projects once; return the owner's username, password and API key."""
    state_file = settings.instance_dir / DEMO_FILE
    if state_file.exists():
        saved = json.loads(state_file.read_text())
        return {k: saved[k] for k in ("username", "password", "api_key")}
    truth: dict[str, dict] = {}
    password = secrets.token_urlsafe(12)
    with session_factory(settings.database_url)() as session, tempfile.TemporaryDirectory() as tmp:
        owner, key = create_owner(session, "Demo owner", "demo", password)
        makers = ((fixtures.TAGGING_PROJECT, fixtures.make_tagging_archive),
                  (fixtures.CRATER_PROJECT, fixtures.make_crater_archive))
        for settings_dict, make_archive in makers:
            project = create_project(session, owner, settings_dict)
            archive = Path(tmp) / f"{project.slug}.zip"
            truth[project.slug] = make_archive(archive)
            batch = Batch(project_id=project.id, name=archive.name, state=BatchState.processing)
            session.add(batch)
            session.flush()
            import_batch(session, project, batch, archive, settings.media_dir)
            batch.state = BatchState.done
        session.commit()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps({"username": "demo", "password": password, "api_key": key, "truth": truth}))
    state_file.chmod(0o600)
    return {"username": "demo", "password": password, "api_key": key}


def demo_truth(settings: Settings, slug: str) -> dict | None:
    state_file = settings.instance_dir / DEMO_FILE
    if not state_file.exists():
        return None
    return json.loads(state_file.read_text())["truth"].get(slug)


def simulate_volunteers(settings: Settings, slug: str, volunteers: int = 3, seed: int = 0) -> int:
    """Simulated volunteers of varied skill answer the open units of a demo project, through the real path."""
    truth = demo_truth(settings, slug)
    if truth is None:
        raise ValueError(f"{slug!r} is not a demo project: no simulated truth for it.")
    rng = np.random.default_rng(seed)
    redis = connect(settings)
    answered = 0
    with session_factory(settings.database_url)() as session:
        project = session.scalars(select(Project).where(Project.slug == slug)).one()
        spec = fixtures.TAGGING_PROJECT if project.task_type.value == "tagging" else fixtures.CRATER_PROJECT
        dispatcher = Dispatcher(redis)
        for _ in range(volunteers):
            volunteer = create_volunteer(session)
            skill = float(rng.uniform(0.65, 0.95))
            while leases := dispatcher.lease(session, project.id, volunteer.id, count=5):
                session.commit()
                items = []
                for lease in leases:
                    unit = session.get(Unit, lease.unit_id)
                    payload = fixtures.simulate_answer(spec, truth[unit.external_id], rng, width=unit.width, height=unit.height,
                                                       skill=skill)
                    items.append(AnswerIn(unit.id, str(uuid.uuid4()), payload, int(rng.integers(2000, 20000))))
                outcomes = submit_answers(session, volunteer.id, items)
                session.commit()
                after_answers(redis, dispatcher, volunteer.id, outcomes)
                answered += len(items)
    return answered
