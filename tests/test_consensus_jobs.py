"""Consensus in the running system: adaptive redundancy, refits of the label model, incremental updates."""

from __future__ import annotations

from sqlalchemy import func, select

from microtasks.models import ConsensusResult, ProjectModel, Unit, UnitState, VolunteerReliability
from tests.conftest import TAGGING, answer


def serve_and_answer(client, project, headers, label):
    unit = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()["unit"]
    if unit is not None:
        assert answer(client, headers, unit["id"], {"label": label}).status_code == 201
    return unit


def test_a_confident_unit_retires_before_its_redundancy(client, make_project, new_volunteer, run_jobs, session):
    """With adaptive redundancy, two agreeing answers retire a unit that would otherwise want five."""
    project = make_project({**TAGGING, "redundancy": 5, "min_redundancy": 2, "confidence_threshold": 0.6}, n=1)
    for _ in range(2):
        serve_and_answer(client, project, new_volunteer(), "cat")
    run_jobs()
    unit = session.scalars(select(Unit)).one()
    assert (unit.state, unit.answer_count, unit.redundancy) == (UnitState.retired, 2, 2)
    assert serve_and_answer(client, project, new_volunteer(), "cat") is None


def test_a_disputed_unit_asks_for_another_answer(client, make_project, new_volunteer, run_jobs, session):
    """A full unit whose volunteers disagree is reopened for one more answer, up to the maximum."""
    project = make_project({**TAGGING, "redundancy": 2, "max_redundancy": 3, "confidence_threshold": 0.9}, n=1)
    serve_and_answer(client, project, new_volunteer(), "cat")
    serve_and_answer(client, project, new_volunteer(), "dog")
    run_jobs()
    assert session.scalars(select(Unit.redundancy)).one() == 3
    assert serve_and_answer(client, project, new_volunteer(), "cat") is not None
    run_jobs()
    session.expire_all()
    unit = session.scalars(select(Unit)).one()
    assert (unit.state, unit.answer_count, unit.redundancy) == (UnitState.retired, 3, 3)


def test_enough_answers_refit_the_label_model(client, make_project, new_volunteer, run_jobs, session):
    """After 50 counted answers a refit stores every volunteer's reliability and rewrites the results."""
    project = make_project(TAGGING, n=20)
    for label in ("cat", "cat", "dog"):
        headers = new_volunteer()
        while serve_and_answer(client, project, headers, label) is not None:
            pass
    run_jobs()
    assert session.get(ProjectModel, project["id"]).n_answers == 60
    assert session.scalar(select(func.count()).select_from(VolunteerReliability)) == 3
    algorithms = set(session.scalars(select(ConsensusResult.algorithm)))
    assert algorithms == {"bayesian_dawid_skene"}


def test_after_a_refit_new_units_are_decided_incrementally(client, make_project, new_volunteer, run_jobs, session):
    """Once a model is fitted, a newly completed unit is decided from the fitted reliabilities."""
    project = make_project(TAGGING, n=21)
    volunteers = [new_volunteer() for _ in range(3)]
    for headers, label in zip(volunteers, ("cat", "cat", "dog")):
        for _ in range(20):
            serve_and_answer(client, project, headers, label)
    run_jobs()
    for headers, label in zip(volunteers, ("cat", "cat", "dog")):
        serve_and_answer(client, project, headers, label)
    run_jobs()
    latest = session.scalars(select(ConsensusResult).order_by(ConsensusResult.computed_at.desc())).first()
    assert latest.algorithm == "bayesian_dawid_skene+incremental" and latest.result["label"] == "cat"
