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
