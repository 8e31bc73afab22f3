"""The serving engine under real concurrency: leases, redundancy, retries, gold, strategies, Redis loss."""

from __future__ import annotations

import io
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from microtasks.answers import submit_answer
from microtasks.models import Answer, Strategy, Unit, UnitState
from microtasks.accounts import create_owner
from microtasks.projects import create_project
from microtasks.serving import Dispatcher
from microtasks.volunteers import create_volunteer
from tests.conftest import make_zip, png_bytes
from workers.connection import after_answers


@pytest.fixture()
def dispatcher(redis_db):
    return Dispatcher(redis_db)


@pytest.fixture()
def project_with(session_maker, settings):
    """Create a tagging project with ``n`` units directly in the database; returns its id."""

    def make(n: int = 1, redundancy: int = 3, strategy: str = "depth_first", gold: int = 0, **extra) -> int:
        from microtasks.importing import import_batch
        from microtasks.models import Batch

        with session_maker() as session:
            owner, _ = create_owner(session, "o")
            project = create_project(session, owner, {"name": f"p-{uuid.uuid4().hex[:8]}", "task_type": "tagging",
                                                      "labels": ["cat", "dog"], "redundancy": redundancy,
                                                      "published": True})
            project.strategy = Strategy(strategy)
            for key, value in extra.items():
                setattr(project, key, value)
            batch = Batch(project_id=project.id, name="b")
            session.add(batch)
            session.flush()
            manifest = "file,gold\n" + "".join(f"u{i}.png,{'cat' if i < gold else ''}\n" for i in range(n))
            files = {f"u{i}.png": png_bytes(8, 8, colour=(i % 250, 0, 0)) for i in range(n)}
            archive = settings.instance_dir / f"{uuid.uuid4().hex}.zip"
            archive.write_bytes(make_zip({**files, "manifest.csv": manifest.encode()}))
            import_batch(session, project, batch, archive, settings.media_dir)
            session.commit()
            return project.id

    return make


def lease(session_maker, dispatcher, project_id, volunteer_id, count=1, now=None):
    with session_maker() as session:
        leases = dispatcher.lease(session, project_id, volunteer_id, count, now=now)
        session.commit()
        return [x.unit_id for x in leases]


def volunteers(session_maker, n):
    with session_maker() as session:
        ids = [create_volunteer(session).id for _ in range(n)]
        session.commit()
        return ids


def answer(session_maker, dispatcher, project_id, volunteer_id, unit_id, label="cat", answer_id=None):
    with session_maker() as session:
        outcome = submit_answer(session, volunteer_id, unit_id, answer_id or str(uuid.uuid4()), {"label": label})
        session.commit()
        after_answers(redis_of(dispatcher), dispatcher, volunteer_id, [outcome])
        return outcome


def redis_of(dispatcher):
    return dispatcher.redis


def test_racing_volunteers_never_over_assign_the_last_slots(session_maker, dispatcher, project_with):
    """Forty threads race for a one-unit project that needs three answers: exactly three get it."""
    project_id = project_with(n=1, redundancy=3)
    ids = volunteers(session_maker, 40)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda v: lease(session_maker, dispatcher, project_id, v), ids))
    assert sum(len(units) for units in got) == 3


def test_racing_answers_count_no_more_than_the_need(session_maker, dispatcher, project_with):
    """Answers arriving on expired leases race: all are stored, exactly the need is counted."""
    project_id = project_with(n=1, redundancy=2, lease_seconds=30)
    ids = volunteers(session_maker, 6)
    start = time.time()
    for i, volunteer_id in enumerate(ids):  # each pair of leases expires before the next pair is served
        assert lease(session_maker, dispatcher, project_id, volunteer_id, now=start + (i // 2) * 31)
    with ThreadPoolExecutor(6) as pool:
        unit_id = unit_of(session_maker, project_id)
        list(pool.map(lambda v: answer(session_maker, dispatcher, project_id, v, unit_id), ids))
    with session_maker() as session:
        stored = session.scalar(select(func.count()).select_from(Answer))
        counted = session.scalar(select(func.count()).select_from(Answer).where(Answer.counted))
        unit = session.scalars(select(Unit)).one()
    assert (stored, counted, unit.answer_count, unit.state) == (6, 2, 2, UnitState.retired)


def unit_of(session_maker, project_id):
    with session_maker() as session:
        return session.scalars(select(Unit.id).where(Unit.project_id == project_id)).first()


def test_concurrent_retries_of_one_answer_store_it_once(session_maker, dispatcher, project_with):
    """Eight threads resubmit the same answer id at once: one answer is stored, all get it back."""
    project_id = project_with(n=1)
    (volunteer_id,) = volunteers(session_maker, 1)
    (unit_id,) = lease(session_maker, dispatcher, project_id, volunteer_id)
    answer_id = str(uuid.uuid4())
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: answer(session_maker, dispatcher, project_id, volunteer_id, unit_id,
                                                  answer_id=answer_id), range(8)))
    assert sum(o.created for o in outcomes) == 1
    assert {o.answer_id for o in outcomes} == {answer_id}
    with session_maker() as session:
        assert session.scalar(select(Unit.answer_count)) == 1


def test_an_expired_lease_frees_its_slot(session_maker, dispatcher, project_with):
    """When a lease runs out unanswered, its slot goes to another volunteer."""
    project_id = project_with(n=1, redundancy=1, lease_seconds=60)
    first, second = volunteers(session_maker, 2)
    now = time.time()
    assert lease(session_maker, dispatcher, project_id, first, now=now)
    assert lease(session_maker, dispatcher, project_id, second, now=now + 30) == []
    assert lease(session_maker, dispatcher, project_id, second, now=now + 61)


def test_a_late_answer_is_stored_and_credited_but_not_counted(session_maker, dispatcher, project_with):
    """An answer on an expired lease whose slot was answered by another is stored, not counted."""
    project_id = project_with(n=1, redundancy=1, lease_seconds=60)
    late, prompt = volunteers(session_maker, 2)
    now = time.time()
    (unit_id,) = lease(session_maker, dispatcher, project_id, late, now=now)
    lease(session_maker, dispatcher, project_id, prompt, now=now + 61)
    assert answer(session_maker, dispatcher, project_id, prompt, unit_id).completed_unit
    outcome = answer(session_maker, dispatcher, project_id, late, unit_id)
    assert outcome.created and not outcome.counted


def test_redis_flushed_mid_run_rebuilds_from_the_database(session_maker, dispatcher, project_with, redis_db):
    """After Redis is flushed: no volunteer sees a unit twice, and live leases still hold their slots."""
    project_id = project_with(n=2, redundancy=3)
    a, b, c, d, e = volunteers(session_maker, 5)
    (first,) = lease(session_maker, dispatcher, project_id, a)
    answer(session_maker, dispatcher, project_id, a, first)
    assert lease(session_maker, dispatcher, project_id, b) == [first]  # depth-first: finish the started unit
    redis_db.flushdb()
    (second,) = lease(session_maker, dispatcher, project_id, a, count=5)  # a has seen the first unit
    assert second != first
    assert lease(session_maker, dispatcher, project_id, c, count=5) == [first, second]
    assert lease(session_maker, dispatcher, project_id, d, count=5) == [second]
    assert lease(session_maker, dispatcher, project_id, e, count=5) == []  # b's lease survived the flush


def test_reloading_returns_the_live_lease(session_maker, dispatcher, project_with):
    """Asking again before answering returns the unit already leased, spending no slot."""
    project_id = project_with(n=3)
    (volunteer_id,) = volunteers(session_maker, 1)
    first = lease(session_maker, dispatcher, project_id, volunteer_id)
    assert lease(session_maker, dispatcher, project_id, volunteer_id) == first


@pytest.mark.parametrize(("strategy", "distinct"), [("depth_first", 1), ("breadth_first", 3)])
def test_strategies_order_units(session_maker, dispatcher, project_with, strategy, distinct):
    """Depth-first gives three volunteers the same unit; breadth-first spreads them over three."""
    project_id = project_with(n=3, redundancy=3, strategy=strategy)
    firsts = [lease(session_maker, dispatcher, project_id, v)[0] for v in volunteers(session_maker, 3)]
    assert len(set(firsts)) == distinct


def test_priority_serves_the_owners_first_choice(session_maker, dispatcher, project_with):
    """Under the priority strategy the unit with the highest priority is served first."""
    project_id = project_with(n=3, strategy="priority")
    with session_maker() as session:
        last = session.scalars(select(Unit.id).order_by(Unit.id.desc())).first()
        session.execute(update(Unit).where(Unit.id == last).values(priority=5))
        session.commit()
    (volunteer_id,) = volunteers(session_maker, 1)
    assert lease(session_maker, dispatcher, project_id, volunteer_id) == [last]


def test_random_strategy_serves_every_unit_once(session_maker, dispatcher, project_with):
    """Random order still serves each unit to a volunteer once and skips none."""
    project_id = project_with(n=12, strategy="random")
    (volunteer_id,) = volunteers(session_maker, 1)
    served = []
    while units := lease(session_maker, dispatcher, project_id, volunteer_id, count=5):
        served += units
        for unit_id in units:
            answer(session_maker, dispatcher, project_id, volunteer_id, unit_id)
    assert len(served) == len(set(served)) == 12


def test_a_unit_override_of_redundancy_retires_it_sooner(session_maker, dispatcher, project_with):
    """A unit that wants one answer retires after one, while the project wants three."""
    project_id = project_with(n=1, redundancy=3)
    with session_maker() as session:
        session.execute(update(Unit).values(redundancy=1))
        session.commit()
    a, b = volunteers(session_maker, 2)
    (unit_id,) = lease(session_maker, dispatcher, project_id, a)
    assert answer(session_maker, dispatcher, project_id, a, unit_id).completed_unit
    assert lease(session_maker, dispatcher, project_id, b) == []


def test_gold_units_come_often_at_first_and_once_each(session_maker, dispatcher, project_with):
    """A new volunteer meets gold often (40% of the first 20); each gold unit at most once."""
    project_id = project_with(n=60, gold=20, redundancy=50)
    (volunteer_id,) = volunteers(session_maker, 1)
    served = []
    while len(served) < 20:
        units = lease(session_maker, dispatcher, project_id, volunteer_id, count=5)
        served += units
        for unit_id in units:
            answer(session_maker, dispatcher, project_id, volunteer_id, unit_id)
    with session_maker() as session:
        gold_ids = set(session.scalars(select(Unit.id).where(Unit.gold.is_not(None))))
    golds = [u for u in served if u in gold_ids]
    assert 3 <= len(golds) <= 14 and len(golds) == len(set(golds))


def test_gold_answers_are_scored_and_never_counted(session_maker, dispatcher, project_with):
    """An answer to a gold unit gets a score against the known answer and does not count."""
    project_id = project_with(n=1, gold=1, gold_warmup_rate=1.0)
    (volunteer_id,) = volunteers(session_maker, 1)
    (unit_id,) = lease(session_maker, dispatcher, project_id, volunteer_id)
    outcome = answer(session_maker, dispatcher, project_id, volunteer_id, unit_id, label="dog")
    assert (outcome.gold, outcome.counted, outcome.gold_score) == (True, False, 0.0)


def test_a_bad_gold_value_in_a_manifest_is_reported(client, owner, run_jobs):
    """A gold label outside the project's labels rejects that row with the reason."""
    project = client.post("/api/v1/projects", headers=owner["headers"],
                          json={"name": "g", "task_type": "tagging", "labels": ["cat", "dog"]}).get_json()
    archive = make_zip({"a.png": png_bytes(), "manifest.csv": b"file,gold\na.png,horse\n"})
    batch = client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                        data={"file": (io.BytesIO(archive), "b.zip")}, content_type="multipart/form-data").get_json()
    run_jobs()
    report = client.get(f"/api/v1/projects/{project['id']}/batches/{batch['id']}", headers=owner["headers"]).get_json()
    assert report["rejected"][0]["reason"].startswith("gold answer: Unknown label 'horse'")


def test_answer_updates_arriving_out_of_order_never_reopen_a_full_unit(session_maker, dispatcher, project_with):
    """Cache updates from concurrent answers may arrive out of order; a unit's count never goes back."""
    project_id = project_with(n=1, redundancy=3)
    a, b, c, d = volunteers(session_maker, 4)
    (unit_id,) = lease(session_maker, dispatcher, project_id, a)
    lease(session_maker, dispatcher, project_id, b)
    lease(session_maker, dispatcher, project_id, c)
    dispatcher.answered([(project_id, unit_id, b, 2, False)])  # b's update (second answer) lands first
    dispatcher.answered([(project_id, unit_id, a, 1, False)])
    assert lease(session_maker, dispatcher, project_id, d) == []  # two answers and c's lease fill it


def test_a_unit_can_retire_early_and_then_ask_for_more(session_maker, dispatcher, project_with):
    """Lowering a unit's need retires it at once; raising it (up to the maximum) serves it again."""
    from microtasks.serving import change_need

    project_id = project_with(n=1, redundancy=3, max_redundancy=4)
    a, b, c, d, e = volunteers(session_maker, 5)
    for volunteer_id in (a, b):
        (unit_id,) = lease(session_maker, dispatcher, project_id, volunteer_id)
        answer(session_maker, dispatcher, project_id, volunteer_id, unit_id)

    def need(value):
        with session_maker() as session:
            changed = change_need(session, unit_id, value)
            session.commit()
        dispatcher.set_need(*changed)
        return changed

    assert need(2) == (project_id, unit_id, 2, True)
    assert lease(session_maker, dispatcher, project_id, c) == []
    assert need(9) == (project_id, unit_id, 4, False)  # capped at max_redundancy
    assert lease(session_maker, dispatcher, project_id, c) == [unit_id]
    assert lease(session_maker, dispatcher, project_id, d) == [unit_id]
    assert lease(session_maker, dispatcher, project_id, e) == []
