"""Consensus in the running system: adaptive redundancy, refits of the label model, incremental updates."""

from __future__ import annotations

from sqlalchemy import func, select

from microtasks.models import Answer, ConsensusResult, ProjectModel, Unit, UnitState, VolunteerReliability
from tests.conftest import MARKING, TAGGING, answer, sign_in


LABELS = TAGGING["labels"]


def truth(unit_id):
    """The simulated true label of a unit."""
    return LABELS[unit_id % len(LABELS)]


def tags(unit_id):
    """The simulated true tags of a unit in a multi-label project."""
    return [LABELS[unit_id % len(LABELS)]] + (["bird"] if unit_id % 2 else [])


def serve_and_answer(client, project, headers, label):
    """Lease the next unit and answer it: ``label`` is a label or a list of tags, or a function of the unit id."""
    unit = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()["unit"]
    if unit is not None:
        given = label(unit["id"]) if callable(label) else label
        payload = {"labels": sorted(set(given))} if isinstance(given, list) else {"label": given}
        assert answer(client, headers, unit["id"], payload).status_code == 201
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
    for _ in range(3):
        headers = new_volunteer()
        while serve_and_answer(client, project, headers, truth) is not None:
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
    for headers in volunteers:
        for _ in range(20):
            serve_and_answer(client, project, headers, truth)
    run_jobs()
    for headers in volunteers:
        last = serve_and_answer(client, project, headers, truth)
    run_jobs()
    latest = session.scalars(select(ConsensusResult).order_by(ConsensusResult.computed_at.desc())).first()
    assert latest.algorithm == "bayesian_dawid_skene+incremental" and latest.result["label"] == truth(last["id"])


def test_a_multi_label_project_refits_and_decides_new_units_from_the_fit(client, make_project, new_volunteer,
                                                                        run_jobs, session):
    """Multi-label answers fit a per-tag model; later units are decided from its reliabilities."""
    project = make_project({**TAGGING, "multi_select": True}, n=21)
    volunteers = [new_volunteer() for _ in range(3)]
    for headers in volunteers:
        for _ in range(20):
            serve_and_answer(client, project, headers, tags)
    run_jobs()
    stored = session.get(ProjectModel, project["id"])
    assert (stored.algorithm, stored.model["kind"], stored.n_answers) == ("multilabel_dawid_skene", "tags", 60)
    assert [len(m) for m in session.scalars(select(VolunteerReliability.confusion))] == [2, 2, 2]
    assert set(session.scalars(select(ConsensusResult.algorithm))) == {"multilabel_dawid_skene"}
    for headers in volunteers:
        last = serve_and_answer(client, project, headers, tags)
    run_jobs()
    latest = session.scalars(select(ConsensusResult).order_by(ConsensusResult.computed_at.desc())).first()
    assert latest.algorithm == "multilabel_dawid_skene+incremental"
    assert sorted(latest.result["labels"]) == sorted(tags(last["id"]))


def test_a_multi_label_spammer_is_quarantined(client, owner, make_project, new_volunteer, run_jobs):
    """A volunteer who ticks the same tags on every unit is quarantined in a multi-label project too."""
    project = make_project({**TAGGING, "multi_select": True, "strategy": "breadth_first"}, n=20)
    for headers, given in ((new_volunteer(), tags), (new_volunteer(), tags), (new_volunteer(), ["cat", "dog"])):
        while serve_and_answer(client, project, headers, given) is not None:
            pass
    run_jobs()
    listed = client.get(f"/api/v1/projects/{project['id']}/quarantine", headers=owner["headers"]).get_json()
    assert len(listed) == 1 and "same answer ('cat;dog')" in listed[0]["reason"]


def test_a_spammer_is_quarantined_and_their_units_reopen(client, owner, make_project, new_volunteer, run_jobs,
                                                        session):
    """A volunteer who tags everything 'cat' stops counting; units they completed wait for others."""
    project = make_project({**TAGGING, "strategy": "breadth_first"}, n=20)
    spammer = new_volunteer()
    for headers, label in ((new_volunteer(), truth), (new_volunteer(), truth), (spammer, "cat")):
        while serve_and_answer(client, project, headers, label) is not None:
            pass
    run_jobs()
    listed = client.get(f"/api/v1/projects/{project['id']}/quarantine", headers=owner["headers"]).get_json()
    assert len(listed) == 1 and "same answer ('cat')" in listed[0]["reason"]
    assert session.scalar(select(func.count()).select_from(Unit).where(Unit.state == UnitState.open)) == 20
    assert serve_and_answer(client, project, new_volunteer(), truth) is not None  # the slots are free again


def test_a_quarantined_volunteers_new_answers_do_not_count_until_released(client, owner, make_project,
                                                                         new_volunteer, run_jobs, session):
    """After quarantine a volunteer's answers are stored uncounted; once released they count again."""
    project = make_project({**TAGGING, "strategy": "breadth_first"}, n=22)
    spammer = new_volunteer()
    for headers, label in ((new_volunteer(), truth), (new_volunteer(), truth)):
        for _ in range(20):
            serve_and_answer(client, project, headers, label)
    for _ in range(20):
        serve_and_answer(client, project, spammer, "cat")
    run_jobs()
    (entry,) = client.get(f"/api/v1/projects/{project['id']}/quarantine", headers=owner["headers"]).get_json()
    unit = serve_and_answer(client, project, spammer, "cat")
    assert latest_answer_counted(session, unit["id"]) is False
    released = client.post(f"/api/v1/projects/{project['id']}/quarantine/{entry['volunteer']}/release",
                           headers=owner["headers"])
    assert released.status_code == 200 and released.get_json()["released_at"]
    unit = serve_and_answer(client, project, spammer, "cat")
    assert latest_answer_counted(session, unit["id"]) is True


def latest_answer_counted(session, unit_id):
    session.expire_all()
    return session.scalars(select(Answer.counted).where(Answer.unit_id == unit_id).order_by(Answer.id.desc())).first()


def test_an_empty_tile_retires_once_enough_volunteers_see_nothing(client, make_project, new_volunteer, run_jobs,
                                                                   session):
    """With adaptive redundancy, a tile where the first volunteers mark nothing retires at the minimum."""
    from tests.conftest import MARKING

    project = make_project({**MARKING, "redundancy": 5, "min_redundancy": 2, "confidence_threshold": 0.9}, n=1)
    for _ in range(2):
        headers = new_volunteer()
        unit = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()["unit"]
        assert answer(client, headers, unit["id"], {"marks": []}).status_code == 201
    run_jobs()
    unit = session.scalars(select(Unit)).one()
    assert (unit.state, unit.answer_count) == (UnitState.retired, 2)


def test_the_owner_page_lists_quarantined_volunteers_and_releases_them(client, owner, make_project, new_volunteer,
                                                                     run_jobs, session):
    """The project page shows who is in quarantine and why; its Release button lets them count again."""
    from microtasks.models import Quarantine

    project = make_project({**TAGGING, "strategy": "breadth_first"}, n=20)
    for headers, label in ((new_volunteer(), truth), (new_volunteer(), truth), (new_volunteer(), "cat")):
        while serve_and_answer(client, project, headers, label) is not None:
            pass
    run_jobs()
    token = sign_in(client, owner)
    page = client.get(f"/owner/projects/{project['id']}").get_data(as_text=True)
    assert "Volunteers in quarantine" in page and "gives the same answer" in page
    (public_id,) = [entry["volunteer"] for entry in client.get(
        f"/api/v1/projects/{project['id']}/quarantine", headers=owner["headers"]).get_json()]
    reply = client.post(f"/owner/projects/{project['id']}/quarantine/{public_id}/release",
                        data={"csrf_token": token})
    assert reply.status_code == 302
    assert session.scalars(select(Quarantine.released_at)).one() is not None


def test_a_tile_whose_consensus_stops_changing_retires(client, make_project, new_volunteer, run_jobs, session):
    """Below the confidence threshold, a tile retires once a new answer leaves its consensus unchanged."""
    from tests.conftest import MARKING

    project = make_project({**MARKING, "redundancy": 6, "min_redundancy": 2, "confidence_threshold": 1.0}, n=1,
                           size=(200, 200))
    crater = [{"x": 100, "y": 100, "r": 20}]
    for marks in (crater, [], crater, crater, crater):
        headers = new_volunteer()
        unit = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()["unit"]
        if unit is None:
            break
        assert answer(client, headers, unit["id"], {"marks": marks}).status_code == 201
        run_jobs()
    result = session.scalars(select(ConsensusResult)).one()
    unit = session.scalars(select(Unit)).one()
    assert result.confidence < 1.0 and len(result.result["marks"]) == 1
    assert (unit.state, unit.answer_count) == (UnitState.retired, 4)  # the 4th answer changed nothing


def test_one_drain_job_computes_every_unit_that_became_due(client, make_project, new_volunteer, run_jobs, session,
                                                           redis_db):
    """Units completed by many answers wait together, and one job (not one per unit) decides them all."""
    from workers.connection import queue

    project = make_project({**TAGGING, "redundancy": 1}, n=6)
    for _ in range(6):
        serve_and_answer(client, project, new_volunteer(), "cat")
    consensus = queue(redis_db, "consensus")
    assert len(consensus.job_ids) == 1
    run_jobs()
    assert session.scalar(select(func.count()).select_from(ConsensusResult)) == 6
    assert [job_id.startswith("consensus-drain-") for job_id in consensus.finished_job_registry.get_job_ids()] == [True]


def test_a_unit_due_after_a_drain_took_the_last_ones_queues_the_next_drain(redis_db, run_jobs):
    """The drain job lets go of its flag before it takes units: a unit added later always gets a new job."""
    from workers.connection import DUE_KEY, enqueue_consensus, queue

    enqueue_consensus(redis_db, [(10**6, 1)])  # a unit that does not exist: the drain skips it
    enqueue_consensus(redis_db, [(10**6 + 1, 1)])  # a drain job is queued already: no second one
    assert queue(redis_db, "consensus").count == 1
    run_jobs()
    assert redis_db.scard(DUE_KEY) == 0
    enqueue_consensus(redis_db, [(10**6 + 2, 1)])
    assert queue(redis_db, "consensus").count == 1


def test_a_unit_whose_consensus_fails_does_not_stop_the_others(client, make_project, new_volunteer, run_jobs, session,
                                                              caplog):
    """A unit that cannot be decided (here, an answer damaged in the database) is logged and left out; the units
    drained with it are decided all the same, and the job itself succeeds."""
    from sqlalchemy import update

    project = make_project({**TAGGING, "redundancy": 1}, n=3)
    units = [serve_and_answer(client, project, new_volunteer(), "cat")["id"] for _ in range(3)]
    session.execute(update(Answer).where(Answer.unit_id == units[1]).values(payload={"damaged": True}))
    session.commit()
    run_jobs()  # fails the test if the job failed
    decided = set(session.scalars(select(ConsensusResult.unit_id)))
    assert decided == {units[0], units[2]}
    assert f"consensus for unit {units[1]} failed" in caplog.text


def test_one_drain_decides_units_of_several_projects_and_kinds_together(client, make_project, new_volunteer,
                                                                        run_jobs, session):
    """A drain chunk mixes projects: each unit is decided by its own project's method, in one transaction."""
    tagging = make_project({**TAGGING, "redundancy": 2}, n=2)
    marking = make_project({**MARKING, "redundancy": 2}, n=2, size=(200, 200))
    for label in ("dog", "dog"):
        serve_and_answer(client, tagging, new_volunteer(), label)
    for marks in ([{"x": 50, "y": 60, "r": 10}], [{"x": 52, "y": 61, "r": 11}]):
        headers = new_volunteer()
        unit = client.post(f"/api/v1/projects/{marking['id']}/next", headers=headers).get_json()["unit"]
        assert answer(client, headers, unit["id"], {"marks": marks}).status_code == 201
    run_jobs()
    results = {r.algorithm: r for r in session.scalars(select(ConsensusResult))}
    assert set(results) == {"majority_vote", "crater_clustering"}
    assert results["majority_vote"].result["label"] == "dog" and results["majority_vote"].confidence == 1.0
    assert [(m["x"], m["y"], m["support"]) for m in results["crater_clustering"].result["marks"]] == [(51, 60.5, 2)]


def test_a_long_lived_session_decides_from_the_latest_answers(client, make_project, new_volunteer, session):
    """A drain job keeps its session across chunks: a unit decided again sees the answers that came since."""
    from microtasks.results import compute_consensus

    project = make_project({**TAGGING, "redundancy": 2}, n=1)
    serve_and_answer(client, project, new_volunteer(), "cat")
    (first,) = compute_consensus(session, [session.scalars(select(Unit.id)).one()])
    session.commit()
    serve_and_answer(client, project, new_volunteer(), "dog")
    (again,) = compute_consensus(session, [first.unit.id])
    session.commit()
    assert (first.unit.answer_count, again.unit.answer_count) == (2, 2)  # the same object, read afresh
    assert session.scalars(select(ConsensusResult.n_answers)).one() == 2


def test_two_refits_of_a_project_at_once_both_succeed(client, make_project, new_volunteer, session_maker):
    """A refit that starts while another is uncommitted waits for it, then replaces its reliabilities."""
    import threading

    from microtasks.results import refit_project

    project = make_project(TAGGING, n=4)
    for _ in range(3):
        headers = new_volunteer()
        while serve_and_answer(client, project, headers, truth) is not None:
            pass
    failures = []

    def second() -> None:
        try:
            with session_maker() as other:
                refit_project(other, project["id"])
                other.commit()
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    with session_maker() as first:
        refit_project(first, project["id"])
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)  # the second refit is waiting for the first
        first.commit()
    thread.join(30)
    assert failures == []
    with session_maker() as session:
        assert session.scalar(select(func.count()).select_from(VolunteerReliability)) == 3
