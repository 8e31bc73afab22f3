"""Project statistics: the owner's dashboard numbers, the public summary, and consensus agreement."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update

from microtasks.models import Answer, ConsensusResult, Project
from microtasks.quarantine import quarantine
from microtasks.results import agreement
from microtasks.stats import project_stats, public_summary
from tests.conftest import MARKING, TAGGING, answer, make_zip, png_bytes

#: A fixed "now" for tests that place answers in time (well after any real answer).
NOW = datetime(2031, 3, 4, 12, 30, tzinfo=timezone.utc)


def next_unit(client, project: dict[str, Any], headers: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    served = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()
    return served["unit"]["id"]


def answer_next(client, project, headers, payload: dict[str, Any]) -> int:  # type: ignore[no-untyped-def]
    """Lease the next unit to a volunteer and answer it; returns the unit's id."""
    unit_id = next_unit(client, project, headers)
    assert answer(client, headers, unit_id, payload).status_code == 201
    return unit_id


def stats(session_maker, project: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:  # type: ignore
    with session_maker() as session:
        return project_stats(session, session.get(Project, project["id"]), now=now)


def summary(session_maker, project: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with session_maker() as session:
        return public_summary(session, session.get(Project, project["id"]))


def move_answers(session_maker, when: datetime, volunteer_ids: list[int] | None = None) -> None:  # type: ignore
    """Give stored answers (all, or those of some volunteers) another creation time."""
    with session_maker() as session:
        statement = update(Answer).values(created_at=when)
        if volunteer_ids is not None:
            statement = statement.where(Answer.volunteer_id.in_(volunteer_ids))
        session.execute(statement)
        session.commit()


def volunteer_ids(session_maker) -> list[int]:  # type: ignore[no-untyped-def]
    with session_maker() as session:
        return list(session.scalars(select(Answer.volunteer_id).order_by(Answer.id)))


def tag_one_unit(client, project, new_volunteer, labels: list[str]) -> None:  # type: ignore[no-untyped-def]
    for label in labels:
        answer_next(client, project, new_volunteer(), {"label": label})


# -- agreement ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("result", "payloads", "expected"), [
    ({"label": "cat"}, [{"label": "cat"}, {"label": "cat"}, {"label": "dog"}], 2 / 3),
    ({"label": "cat"}, [{"label": "cat"}, {"unsure": True}], 0.5),
    ({"labels": ["cat", "dog"]}, [{"labels": ["cat", "dog"]}, {"labels": ["cat"]}, {"labels": []}], (1 + 0.5 + 0) / 3),
    ({"labels": []}, [{"labels": []}, {"labels": ["cat"]}], 0.5),
    ({"marks": [{"x": 1, "y": 1, "support": 3}, {"x": 9, "y": 9, "support": 2}]},
     [{"marks": [{"x": 1, "y": 1}]}] * 4, (3 / 4 + 2 / 4) / 2),
    ({"marks": []}, [{"marks": []}, {"marks": []}], 1.0),
    ({"marks": []}, [{"marks": []}, {"marks": [{"x": 1, "y": 1}]}], 0.5),
    ({"label": "cat"}, [], None),
], ids=["label", "unsure-disagrees", "jaccard", "empty-labels", "marks", "no-marks", "some-marks", "no-answers"])
def test_agreement_is_the_share_of_answers_that_agree_with_the_result(result, payloads, expected):
    """Agreement: label share, mean Jaccard, mean mark support over answers; 1 when all marked nothing."""
    assert agreement(result, payloads) == pytest.approx(expected)


def test_consensus_stores_the_units_agreement(client, make_project, new_volunteer, run_jobs, session_maker):
    """A unit decided cat by cat, cat, dog has an agreement of 2/3 in its stored result."""
    project = make_project(TAGGING, n=1)
    tag_one_unit(client, project, new_volunteer, ["cat", "cat", "dog"])
    run_jobs()
    with session_maker() as session:
        assert session.scalar(select(ConsensusResult.agreement)) == pytest.approx(2 / 3)


def test_a_refit_keeps_the_units_agreement(client, make_project, new_volunteer, run_jobs, session_maker):
    """Refitting the project's label model writes each retired unit's agreement with its new result."""
    from microtasks.results import refit_project

    project = make_project(TAGGING, n=1)
    tag_one_unit(client, project, new_volunteer, ["cat", "cat", "dog"])
    run_jobs()
    with session_maker() as session:
        session.execute(update(ConsensusResult).values(agreement=None))  # so the refit must write it
        refit_project(session, project["id"])
        session.commit()
        assert session.scalars(select(ConsensusResult.algorithm)).one() == "bayesian_dawid_skene"
        assert session.scalars(select(ConsensusResult.agreement)).one() == pytest.approx(2 / 3)


# -- units by state ------------------------------------------------------------------------------------------


def test_a_live_lease_puts_a_unit_in_progress(client, make_project, new_volunteer, session_maker):
    """A unit served to a volunteer who has not answered yet is in progress; the others are open."""
    project = make_project(TAGGING, n=3)
    next_unit(client, project, new_volunteer())
    assert stats(session_maker, project)["units"] == {"open": 2, "in_progress": 1, "retired": 0, "total": 3,
                                                      "gold": 0}


def test_an_expired_lease_leaves_a_unit_open(client, make_project, new_volunteer, session_maker):
    """Once its lease has expired, a unit nobody answered is open again."""
    project = make_project(TAGGING, n=2)
    next_unit(client, project, new_volunteer())
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert stats(session_maker, project, now=later)["units"]["in_progress"] == 0


def test_answered_and_full_units_are_in_progress_and_retired(client, make_project, new_volunteer, session_maker):
    """A unit with some of its answers is in progress; one with all of them is retired."""
    project = make_project({**TAGGING, "redundancy": 2}, n=3)
    first, second = new_volunteer(), new_volunteer()
    full = answer_next(client, project, first, {"label": "cat"})
    assert answer_next(client, project, second, {"label": "cat"}) == full  # depth first: the same unit
    answer_next(client, project, second, {"label": "dog"})
    assert stats(session_maker, project)["units"] == {"open": 1, "in_progress": 1, "retired": 1, "total": 3,
                                                      "gold": 0}


def test_gold_units_are_counted_apart(client, owner, run_jobs, session_maker):
    """Gold units never retire, so they are left out of open/in progress/retired and counted apart."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    archive = make_zip({"a.png": png_bytes(), "b.png": png_bytes(colour="blue"),
                        "manifest.csv": b"file,gold\na.png,dog\nb.png,\n"})
    client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                data={"file": (io.BytesIO(archive), "b.zip")}, content_type="multipart/form-data")
    run_jobs()
    assert stats(session_maker, project)["units"] == {"open": 1, "in_progress": 0, "retired": 0, "total": 1,
                                                      "gold": 1}


# -- answers and volunteers over time -------------------------------------------------------------------------


def test_answers_are_bucketed_by_utc_hour(client, make_project, new_volunteer, session_maker):
    """Answers land in the hour they were given; the series is 48 hours, oldest first, the current hour last."""
    project = make_project(TAGGING, n=3)
    tag_one_unit(client, project, new_volunteer, ["cat", "dog", "cat"])
    first, second, third = volunteer_ids(session_maker)
    move_answers(session_maker, NOW - timedelta(minutes=5), [first])   # 12:25, this hour
    move_answers(session_maker, NOW - timedelta(hours=3, minutes=20), [second, third])  # 09:10
    series = stats(session_maker, project, now=NOW)["answers_per_hour"]
    assert len(series) == 48
    assert (series[0]["hour"], series[-1]["hour"]) == ("2031-03-02T13:00:00Z", "2031-03-04T12:00:00Z")
    assert {p["hour"]: p["answers"] for p in series if p["answers"]} == {
        "2031-03-04T09:00:00Z": 2, "2031-03-04T12:00:00Z": 1}


def test_answers_older_than_48_hours_are_left_out_of_the_series(client, make_project, new_volunteer,
                                                                session_maker):
    """An answer given 49 hours ago is in no hour of the series, but still in the totals."""
    project = make_project(TAGGING, n=1)
    tag_one_unit(client, project, new_volunteer, ["cat"])
    move_answers(session_maker, NOW - timedelta(hours=49))
    numbers = stats(session_maker, project, now=NOW)
    assert sum(p["answers"] for p in numbers["answers_per_hour"]) == 0
    assert numbers["answers"]["total"] == 1


def test_uncounted_answers_are_shown_apart(client, make_project, new_volunteer, session_maker):
    """A 'not sure' answer is an answer of its hour, but not a counted one."""
    project = make_project(TAGGING, n=1)
    answer_next(client, project, new_volunteer(), {"label": "cat"})
    answer_next(client, project, new_volunteer(), {"unsure": True})
    move_answers(session_maker, NOW)
    last = stats(session_maker, project, now=NOW)["answers_per_hour"][-1]
    assert (last["answers"], last["counted"]) == (2, 1)


def test_volunteer_activity_counts_distinct_volunteers(client, make_project, new_volunteer, session_maker):
    """Volunteers are counted once per hour and once in all; old ones drop out of the last 24 hours."""
    project = make_project(TAGGING, n=3)
    busy = new_volunteer()
    for _ in range(3):
        answer_next(client, project, busy, {"label": "cat"})
    answer_next(client, project, new_volunteer(), {"label": "dog"})
    busy_id, _, _, other_id = volunteer_ids(session_maker)
    move_answers(session_maker, NOW - timedelta(minutes=1), [busy_id])
    move_answers(session_maker, NOW - timedelta(hours=30), [other_id])
    volunteers = stats(session_maker, project, now=NOW)["volunteers"]
    assert (volunteers["total"], volunteers["last_24h"]) == (2, 1)
    assert [p["volunteers"] for p in volunteers["active_per_hour"] if p["volunteers"]] == [1, 1]


def test_answers_per_volunteer_fall_into_bins(client, make_project, new_volunteer, session_maker):
    """One volunteer with three answers and one with one: bins 2-5 and 1."""
    project = make_project(TAGGING, n=3)
    busy = new_volunteer()
    for _ in range(3):
        answer_next(client, project, busy, {"label": "cat"})
    answer_next(client, project, new_volunteer(), {"label": "dog"})
    bins = stats(session_maker, project)["volunteers"]["answers_per_volunteer"]
    assert bins == [{"bin": "1", "volunteers": 1}, {"bin": "2-5", "volunteers": 1}, {"bin": "6-20", "volunteers": 0},
                    {"bin": "21-100", "volunteers": 0}, {"bin": ">100", "volunteers": 0}]


def test_quarantined_volunteers_are_counted(client, make_project, new_volunteer, session_maker):
    """A volunteer in quarantine shows in the dashboard's count."""
    project = make_project(TAGGING, n=1)
    answer_next(client, project, new_volunteer(), {"label": "cat"})
    with session_maker() as session:
        quarantine(session, session.get(Project, project["id"]), volunteer_ids(session_maker)[0], "test")
        session.commit()
    assert stats(session_maker, project)["volunteers"]["quarantined"] == 1


# -- histograms -----------------------------------------------------------------------------------------------


def test_confidence_and_agreement_histograms_bin_the_results(client, make_project, new_volunteer, run_jobs,
                                                             session_maker):
    """A unanimous unit falls in the last bin, a 2-to-1 unit in the 0.6-0.7 bin, of both histograms."""
    project = make_project(TAGGING, n=2)
    for label in ("cat", "cat", "dog"):  # depth first: both units, one after the other
        answer_next(client, project, new_volunteer(), {"label": label})
    for _ in range(3):
        answer_next(client, project, new_volunteer(), {"label": "bird"})
    run_jobs()
    numbers = stats(session_maker, project)
    for key in ("confidence", "agreement"):
        counts = [b["count"] for b in numbers[key]["histogram"]]
        assert counts == [0, 0, 0, 0, 0, 0, 1, 0, 0, 1], key
        assert numbers[key]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert numbers["confidence"]["histogram"][0] == {"low": 0.0, "high": 0.1, "count": 0}


# -- time to completion ----------------------------------------------------------------------------------------


def test_eta_divides_the_answers_needed_by_the_last_hours_rate(client, make_project, new_volunteer, session_maker):
    """Two units of three answers, two answers in the last hour: four more take two hours."""
    project = make_project(TAGGING, n=2)
    tag_one_unit(client, project, new_volunteer, ["cat", "cat"])
    move_answers(session_maker, NOW - timedelta(minutes=10))
    eta = stats(session_maker, project, now=NOW)["eta"]
    assert (eta["answers_needed"], eta["answers_per_hour"], eta["rate_window"]) == (4, 2.0, "1h")
    assert eta["seconds"] == pytest.approx(2 * 3600)
    assert eta["finish_at"] == "2031-03-04T14:30:00Z"


def test_eta_falls_back_to_the_last_days_rate(client, make_project, new_volunteer, session_maker):
    """With no answer in the last hour, the rate is the last 24 hours' average."""
    project = make_project(TAGGING, n=2)
    tag_one_unit(client, project, new_volunteer, ["cat", "cat"])
    move_answers(session_maker, NOW - timedelta(hours=5))
    eta = stats(session_maker, project, now=NOW)["eta"]
    assert (eta["answers_per_hour"], eta["rate_window"]) == (pytest.approx(2 / 24), "24h")
    assert eta["seconds"] == pytest.approx(4 / (2 / 24) * 3600)


def test_eta_is_unknown_without_recent_answers(client, make_project, new_volunteer, session_maker):
    """With no counted answer in the last 24 hours there is no estimate."""
    project = make_project(TAGGING, n=2)
    tag_one_unit(client, project, new_volunteer, ["cat"])
    move_answers(session_maker, NOW - timedelta(hours=25))
    eta = stats(session_maker, project, now=NOW)["eta"]
    assert (eta["answers_needed"], eta["seconds"], eta["finish_at"]) == (5, None, None)


def test_eta_is_zero_when_no_unit_needs_answers(client, make_project, new_volunteer, session_maker):
    """A project whose units all retired needs nothing more."""
    project = make_project({**TAGGING, "redundancy": 1}, n=1)
    tag_one_unit(client, project, new_volunteer, ["cat"])
    assert stats(session_maker, project)["eta"]["seconds"] == 0


# -- gold ----------------------------------------------------------------------------------------------------------


def test_gold_performance_scores_the_answers_to_gold_units(client, owner, new_volunteer, run_jobs, session_maker):
    """Two gold answers, one right and one wrong: mean score 0.5, half pass, both in the current hour."""
    project = client.post("/api/v1/projects", headers=owner["headers"],
                          json={**TAGGING, "gold_warmup_rate": 1.0}).get_json()
    archive = make_zip({"a.png": png_bytes(), "manifest.csv": b"file,gold\na.png,dog\n"})
    client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                data={"file": (io.BytesIO(archive), "b.zip")}, content_type="multipart/form-data")
    run_jobs()
    for label in ("dog", "cat"):
        answer_next(client, project, new_volunteer(), {"label": label})
    move_answers(session_maker, NOW)
    gold = stats(session_maker, project, now=NOW)["gold"]
    assert (gold["answers"], gold["mean_score"], gold["pass_rate"]) == (2, 0.5, 0.5)
    assert gold["score_per_hour"][-1] == {"hour": "2031-03-04T12:00:00Z", "answers": 2, "mean_score": 0.5}
    assert gold["score_per_hour"][0]["mean_score"] is None


# -- public summary -------------------------------------------------------------------------------------------------


def test_summary_counts_units_per_consensus_label(client, make_project, new_volunteer, run_jobs, session_maker):
    """Two units decided cat and one bird: the summary lists the labels in the project's order."""
    project = make_project(TAGGING, n=3)
    for labels in (["cat", "cat", "dog"], ["cat", "cat", "cat"], ["bird", "bird", "dog"]):
        for label in labels:
            answer_next(client, project, new_volunteer(), {"label": label})
    run_jobs()
    found = summary(session_maker, project)
    assert found["labels"] == [{"label": "cat", "units": 2}, {"label": "dog", "units": 0},
                               {"label": "bird", "units": 1}]
    assert (found["results"], found["percent_complete"], found["volunteers"]) == (3, 100.0, 9)
    assert [m["name"] for m in found["methods"]] == ["majority_vote"]


def test_summary_counts_units_per_label_with_several_labels(client, make_project, new_volunteer, run_jobs,
                                                            session_maker):
    """In a multi-select project a unit counts for each label of its result."""
    project = make_project({**TAGGING, "multi_select": True}, n=1)
    for labels in (["cat", "dog"], ["cat", "dog"], ["cat"]):
        answer_next(client, project, new_volunteer(), {"labels": labels})
    run_jobs()
    assert summary(session_maker, project)["labels"] == [
        {"label": "cat", "units": 1}, {"label": "dog", "units": 1}, {"label": "bird", "units": 0}]


def test_summary_counts_consensus_marks(client, make_project, new_volunteer, run_jobs, session_maker):
    """Marking: one unit with a crater all three marked, one where nobody marked anything."""
    project = make_project(MARKING, n=2, size=(640, 480))
    crater = {"marks": [{"x": 100, "y": 100, "r": 20}]}
    for payload in [crater] * 3 + [{"marks": []}] * 3:
        answer_next(client, project, new_volunteer(), payload)
    run_jobs()
    assert summary(session_maker, project)["marks"] == {"total": 1, "units_with_marks": 1, "units_without_marks": 1}
    with session_maker() as session:
        assert sorted(session.scalars(select(ConsensusResult.agreement))) == [1.0, 1.0]


def test_summary_of_a_project_without_results_names_its_first_method(make_project, session_maker):
    """Before any result, the summary names the method the first results will use."""
    project = make_project(MARKING, n=1)
    found = summary(session_maker, project)
    assert (found["results"], [m["name"] for m in found["methods"]]) == (0, ["crater_clustering"])


# -- API and pages ----------------------------------------------------------------------------------------------------


def test_the_stats_endpoint_serves_the_owner(client, owner, make_project, new_volunteer):
    """The owner's key gets the dashboard numbers, with 48 hours of answers."""
    project = make_project(TAGGING, n=2)
    answer_next(client, project, new_volunteer(), {"label": "cat"})
    reply = client.get(f"/api/v1/projects/{project['id']}/stats", headers=owner["headers"])
    assert reply.status_code == 200
    body = reply.get_json()
    assert (len(body["answers_per_hour"]), body["answers_per_hour"][-1]["answers"]) == (48, 1)
    assert body["units"]["in_progress"] == 1


def test_the_stats_endpoint_is_a_404_for_another_owner(client, make_project, session_maker):
    """Another owner cannot see a project's numbers, nor learn that it exists."""
    from microtasks.accounts import create_owner

    project = make_project(TAGGING, n=1)
    with session_maker() as session:
        _, key = create_owner(session, "Someone else")
        session.commit()
    assert client.get(f"/api/v1/projects/{project['id']}/stats", headers={"X-API-Key": key}).status_code == 404


def test_the_stats_endpoint_needs_an_owner(client, make_project):
    """Without a key or session, the numbers are a 401."""
    project = make_project(TAGGING, n=1)
    assert client.get(f"/api/v1/projects/{project['id']}/stats").status_code == 401


def test_the_summary_endpoint_is_public(client, make_project, new_volunteer):
    """Anyone may read a published project's summary, with no key."""
    project = make_project(TAGGING, n=2)
    answer_next(client, project, new_volunteer(), {"label": "cat"})
    reply = client.get(f"/api/v1/projects/{project['slug']}/summary")
    assert reply.status_code == 200
    assert (reply.get_json()["answers"], reply.get_json()["units"]["total"]) == (1, 2)


@pytest.mark.parametrize("path", ["/api/v1/projects/{slug}/summary", "/p/{slug}/about"])
def test_an_unpublished_project_has_no_public_summary(client, make_project, path):
    """An unpublished project's summary and about page are a 404, like an unknown one's."""
    project = make_project({**TAGGING, "published": False}, n=1)
    assert client.get(path.format(slug=project["slug"])).status_code == 404
    assert client.get(path.format(slug="no-such-project")).status_code == 404


def test_the_about_page_shows_progress_and_results(client, make_project, new_volunteer, run_jobs):
    """The public page shows the share done, the label counts and the method, with a link to help."""
    project = make_project(TAGGING, n=2)
    tag_one_unit(client, project, new_volunteer, ["dog", "dog", "cat"])
    run_jobs()
    page = client.get(f"/p/{project['slug']}/about").get_data(as_text=True)
    assert "50%" in page and 'id="label-summary"' in page and "Majority vote" in page
    assert f'href="/p/{project["slug"]}"' in page
