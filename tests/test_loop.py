"""The whole loop over HTTP: create, upload, serve, answer, consensus, export."""

from __future__ import annotations

import csv
import io

from tests.conftest import MARKING, TAGGING, answer


def test_tagging_loop_reaches_consensus_and_exports(client, owner, make_project, new_volunteer, run_jobs):
    """Three volunteers tag a unit; a worker decides by majority; the owner exports it."""
    project = make_project(TAGGING, n=1)
    labels = ["cat", "cat", "dog"]
    for label in labels:
        headers = new_volunteer()
        served = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()
        assert answer(client, headers, served["unit"]["id"], {"label": label}).status_code == 201
    assert run_jobs() == 1
    exported = client.get(f"/api/v1/projects/{project['id']}/export?kind=consensus&format=csv",
                          headers=owner["headers"])
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [(r["label"], r["confidence"], r["n_answers"]) for r in rows] == [("cat", "0.6666666666666666", "3")]


def test_the_demo_loads_and_simulated_volunteers_reach_consensus(settings, redis_db, session_maker, tmp_path,
                                                                 run_jobs):
    """The demo's two projects load, and simulated volunteers give every shape a consensus."""
    import os
    from dataclasses import replace

    from sqlalchemy import func, select

    from microtasks.models import ConsensusResult, Unit
    from web.demo import load_demo, simulate_volunteers

    demo = replace(settings, instance_dir=tmp_path, media_dir=tmp_path / "media", redis_url=os.environ["REDIS_URL"])
    assert load_demo(demo)["api_key"].startswith("mt_")
    assert simulate_volunteers(demo, "shapes", volunteers=3) == 72
    run_jobs()
    with session_maker() as session:
        units = session.scalar(select(func.count()).select_from(Unit))
        results = session.scalar(select(func.count()).select_from(ConsensusResult))
    assert (units, results) == (24 + 8, 24)
