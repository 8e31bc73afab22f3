"""The HTTP API: serving invariants, idempotent answers, validation, owners' boundaries."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from sqlalchemy import func, select

from microtasks.models import Answer
from tests.conftest import MARKING, TAGGING, answer, gold_project, make_zip, png_bytes


def next_unit(client, project, headers):
    return client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()["unit"]


def test_a_volunteer_is_never_served_a_unit_twice(client, make_project, new_volunteer):
    """After answering every unit, a volunteer gets no unit, never a repeat."""
    project = make_project(TAGGING, n=3)
    headers = new_volunteer()
    seen = []
    while (unit := next_unit(client, project, headers)) is not None:
        seen.append(unit["id"])
        assert answer(client, headers, unit["id"], {"label": "cat"}).status_code == 201
    assert len(seen) == len(set(seen)) == 3


def test_reloading_gives_back_the_unit_on_lease(client, make_project, new_volunteer):
    """Asking again before answering returns the same leased unit, so reloads spend no slot."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    assert next_unit(client, project, headers)["id"] == next_unit(client, project, headers)["id"]


def test_leases_in_flight_count_toward_redundancy(client, make_project, new_volunteer):
    """A one-unit project with redundancy 3 is served to three volunteers and no fourth."""
    project = make_project(TAGGING, n=1)
    served = [next_unit(client, project, new_volunteer()) for _ in range(4)]
    assert [u is not None for u in served] == [True, True, True, False]


def test_resubmitting_an_answer_id_stores_it_once(client, make_project, new_volunteer, session):
    """A retry with the same answer id answers 200 with the stored answer and writes nothing."""
    project = make_project(TAGGING, n=1)
    headers = new_volunteer()
    unit = next_unit(client, project, headers)
    answer_id = str(uuid.uuid4())
    first = answer(client, headers, unit["id"], {"label": "cat"}, answer_id)
    retry = answer(client, headers, unit["id"], {"label": "cat"}, answer_id)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.get_json()["created"] is False
    assert session.scalar(select(func.count()).select_from(Answer)) == 1


def test_a_second_answer_to_the_same_unit_is_refused(client, make_project, new_volunteer, session):
    """One answer per volunteer per unit: a new answer id for an answered unit is a 409."""
    project = make_project(TAGGING, n=1)
    headers = new_volunteer()
    unit = next_unit(client, project, headers)
    answer(client, headers, unit["id"], {"label": "cat"})
    second = answer(client, headers, unit["id"], {"label": "dog"})
    assert second.status_code == 409
    assert second.get_json()["errors"]["json"] == {"unit_id": ["You have already answered this unit."]}
    assert session.scalar(select(func.count()).select_from(Answer)) == 1


def test_an_answer_id_cannot_be_reused_for_another_unit(client, make_project, new_volunteer):
    """The same answer id sent for a different unit is a conflict, not a silent success."""
    project = make_project(TAGGING, n=2)
    headers = new_volunteer()
    first = next_unit(client, project, headers)
    answer_id = str(uuid.uuid4())
    answer(client, headers, first["id"], {"label": "cat"}, answer_id)
    second = next_unit(client, project, headers)
    reply = answer(client, headers, second["id"], {"label": "cat"}, answer_id)
    assert reply.status_code == 409 and "answer_id" in reply.get_json()["errors"]["json"]


def test_answers_for_units_never_served_are_refused(client, make_project, new_volunteer, session):
    """A volunteer cannot answer a unit they were not served."""
    project = make_project(TAGGING, n=2)
    served = next_unit(client, project, new_volunteer())
    reply = answer(client, new_volunteer(), served["id"], {"label": "cat"})
    assert reply.status_code == 409
    assert session.scalar(select(func.count()).select_from(Answer)) == 0


def test_an_unknown_label_is_a_422_naming_the_field(client, make_project, new_volunteer, session):
    """A label outside the project's list is refused with the field and the allowed labels."""
    project = make_project(TAGGING, n=1)
    headers = new_volunteer()
    unit = next_unit(client, project, headers)
    reply = answer(client, headers, unit["id"], {"label": "horse"})
    assert reply.status_code == 422
    assert "allowed: ['cat', 'dog', 'bird']" in reply.get_json()["errors"]["json"]["payload.label"][0]
    assert session.scalar(select(func.count()).select_from(Answer)) == 0


def test_a_circle_outside_the_image_is_refused(client, make_project, new_volunteer):
    """Marks are checked against the unit's image size."""
    project = make_project(MARKING, n=1, size=(64, 48))
    headers = new_volunteer()
    unit = next_unit(client, project, headers)
    reply = answer(client, headers, unit["id"], {"marks": [{"x": 70, "y": 10, "r": 3}]})
    assert reply.status_code == 422 and "outside the 64x48 image" in reply.get_json()["message"]


def test_a_malformed_answer_body_is_a_422(client, make_project, new_volunteer):
    """An answer without a UUID answer id is refused by the schema, field by field."""
    project = make_project(TAGGING, n=1)
    headers = new_volunteer()
    unit = next_unit(client, project, headers)
    reply = client.post(f"/api/v1/units/{unit['id']}/answers", headers=headers,
                        json={"answer_id": "not-a-uuid", "payload": {"label": "cat"}})
    assert reply.status_code == 422
    assert "answer_id" in reply.get_json()["errors"]["json"]


def test_a_tampered_volunteer_token_is_a_401(client, make_project, new_volunteer):
    """A token whose signature does not match is refused with a JSON reason."""
    project = make_project(TAGGING, n=1)
    token = new_volunteer()["X-Volunteer-Token"]
    reply = client.post(f"/api/v1/projects/{project['id']}/next", headers={"X-Volunteer-Token": token[:-2] + "xx"})
    assert reply.status_code == 401 and "tampered" in reply.get_json()["message"]


def test_next_unit_without_a_token_says_how_to_get_one(client, make_project):
    """A request with no volunteer token is a 401 that names the endpoint giving one."""
    project = make_project(TAGGING, n=1)
    reply = client.post(f"/api/v1/projects/{project['id']}/next")
    assert reply.status_code == 401 and "POST /api/v1/volunteers" in reply.get_json()["message"]


def test_owner_endpoints_need_an_api_key(client):
    """Without an API key the owner API answers 401."""
    reply = client.get("/api/v1/projects")
    assert reply.status_code == 401 and reply.get_json()["code"] == 401


def test_an_owner_cannot_see_another_owners_project(client, make_project, session_maker):
    """Another owner's project is a 404, as if it did not exist."""
    from microtasks.accounts import create_owner

    project = make_project(TAGGING, n=1)
    with session_maker() as session:
        _, other_key = create_owner(session, "Other")
        session.commit()
    reply = client.get(f"/api/v1/projects/{project['id']}", headers={"X-API-Key": other_key})
    assert reply.status_code == 404


def test_a_tagging_project_needs_labels(client, owner):
    """Creating a tagging project with fewer than two labels names the field."""
    reply = client.post("/api/v1/projects", headers=owner["headers"],
                        json={"name": "x", "task_type": "tagging", "labels": ["only"]})
    assert reply.status_code == 422 and "labels" in reply.get_json()["errors"]["json"]


def test_project_fields_are_checked_by_the_schema(client, owner):
    """Wrong types and unknown task types are named field by field."""
    reply = client.post("/api/v1/projects", headers=owner["headers"],
                        json={"name": "x", "task_type": "drawing", "redundancy": 0})
    assert reply.status_code == 422
    assert set(reply.get_json()["errors"]["json"]) == {"task_type", "redundancy"}


def test_a_duplicate_slug_is_a_409(client, owner):
    """Two projects cannot share a slug."""
    body = {**TAGGING, "slug": "same"}
    assert client.post("/api/v1/projects", headers=owner["headers"], json=body).status_code == 201
    assert client.post("/api/v1/projects", headers=owner["headers"], json=body).status_code == 409


def upload(client, owner, project_id, files: dict[str, bytes]):
    return client.post(f"/api/v1/projects/{project_id}/batches", headers=owner["headers"],
                       data={"file": (io.BytesIO(make_zip(files)), "b.zip")}, content_type="multipart/form-data")


def batch_report(client, owner, project_id, batch_id):
    return client.get(f"/api/v1/projects/{project_id}/batches/{batch_id}", headers=owner["headers"]).get_json()


def test_a_broken_image_is_reported_while_the_rest_imports(client, owner, run_jobs):
    """One truncated image is listed with its reason; the good ones become units."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    good = png_bytes()
    batch = upload(client, owner, project["id"], {"a.png": good, "b.png": good[: len(good) // 2],
                                                  "notes.txt": b"hello"}).get_json()
    run_jobs()
    report = batch_report(client, owner, project["id"], batch["id"])
    assert report["state"] == "done" and report["imported"] == 1
    assert {r["name"] for r in report["rejected"]} == {"b.png", "notes.txt"}


def test_a_manifest_naming_a_missing_file_reports_its_line(client, owner, run_jobs):
    """Manifest rows become units with metadata; a row naming a missing file is rejected with its line."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    manifest = b"file,name,site\na.png,first,north\nmissing.png,second,south\n"
    batch = upload(client, owner, project["id"], {"manifest.csv": manifest, "a.png": png_bytes()}).get_json()
    run_jobs()
    report = batch_report(client, owner, project["id"], batch["id"])
    assert report["imported"] == 1
    assert report["rejected"] == [{"name": "missing.png", "reason": "manifest.csv, line 3: no such file in the upload"}]


def test_an_upload_that_is_not_a_zip_fails_with_a_reason(client, owner, run_jobs, session):
    """A batch that starts like a ZIP but is no readable one fails as a whole, with the reason, and creates no unit."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    batch = client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                        data={"file": (io.BytesIO(b"PK\x03\x04 and then not a zip"), "x.zip")},
                        content_type="multipart/form-data").get_json()
    run_jobs()
    report = batch_report(client, owner, project["id"], batch["id"])
    assert report["state"] == "failed" and "not a readable ZIP" in report["error"]
    assert client.get(f"/api/v1/projects/{project['id']}", headers=owner["headers"]).get_json()[
        "progress"]["units"] == 0


def test_paths_escaping_the_archive_are_rejected(client, owner, run_jobs):
    """An entry like ../evil.png is rejected and never written outside the media folder."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    batch = upload(client, owner, project["id"], {"../evil.png": png_bytes(), "ok.png": png_bytes()}).get_json()
    run_jobs()
    report = batch_report(client, owner, project["id"], batch["id"])
    assert report["imported"] == 1
    assert report["rejected"] == [{"name": "../evil.png", "reason": "path escapes the archive"}]


def test_an_upload_without_a_file_is_a_422(client, owner):
    """The batch endpoint names the missing file field."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    reply = client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"], data={},
                        content_type="multipart/form-data")
    assert reply.status_code == 422 and "file" in reply.get_json()["errors"]["files"]


def test_images_are_stored_without_exif(client, owner, run_jobs, session, settings):
    """A photo's EXIF (where GPS positions live) is dropped and its orientation applied."""
    from PIL import Image

    from microtasks.models import Unit

    image = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: must come out 20 x 40
    exif[0x010F] = "PhoneMaker"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    upload(client, owner, project["id"], {"photo.jpg": buffer.getvalue()})
    run_jobs()
    unit = session.scalars(select(Unit)).one()
    with Image.open(settings.media_dir / unit.media) as stored:
        assert (stored.width, stored.height, dict(stored.getexif())) == (20, 40, {})


def test_marking_loop_reaches_consensus(client, owner, make_project, new_volunteer, run_jobs):
    """Three volunteers mark a crater (one sees nothing); the consensus keeps the agreed crater."""
    project = make_project(MARKING, n=1, size=(200, 100))
    answers = [[{"x": 50, "y": 40, "r": 10}], [{"x": 52, "y": 41, "r": 11}], []]
    for marks in answers:
        headers = new_volunteer()
        unit = next_unit(client, project, headers)
        assert answer(client, headers, unit["id"], {"marks": marks}).status_code == 201
    run_jobs()
    exported = client.get(f"/api/v1/projects/{project['id']}/export?kind=consensus&format=json",
                          headers=owner["headers"]).get_json()
    assert exported[0]["result"]["marks"] == [{"x": 51.0, "y": 40.5, "r": 10.5, "support": 2, "confidence": 0.6667}]


def test_raw_answers_export_as_flat_csv_with_one_row_per_mark(client, owner, make_project, new_volunteer):
    """Raw marking answers export one row per mark, and an empty row for 'nothing here'."""
    project = make_project(MARKING, n=1, size=(200, 100))
    for marks in ([{"x": 5, "y": 6, "r": 2}, {"x": 50, "y": 60, "r": 9}], []):
        headers = new_volunteer()
        answer(client, headers, next_unit(client, project, headers)["id"], {"marks": marks})
    text = client.get(f"/api/v1/projects/{project['id']}/export?kind=answers&format=csv",
                      headers=owner["headers"]).get_data(as_text=True)
    lines = text.splitlines()
    assert lines[0].startswith("answer_id,unit_id,unit,volunteer,x,y,r,")
    assert [line.split(",")[4:7] for line in lines[1:]] == [["5.0", "6.0", "2.0"], ["50.0", "60.0", "9.0"],
                                                             ["", "", ""]]


def test_export_arguments_are_checked(client, owner, make_project):
    """An unknown export format is a 422 naming the argument."""
    project = make_project(TAGGING, n=1)
    reply = client.get(f"/api/v1/projects/{project['id']}/export?format=xlsx", headers=owner["headers"])
    assert reply.status_code == 422 and "format" in reply.get_json()["errors"]["query"]


def test_every_api_route_is_in_the_openapi_document(app, client):
    """The OpenAPI document describes every /api/v1 route the app serves."""
    spec = client.get("/api/openapi.json").get_json()
    documented = {path for path in spec["paths"]}
    served = {str(rule).replace("<int:", "{").replace("<", "{").replace(">", "}")
              for rule in app.url_map.iter_rules() if str(rule).startswith("/api/v1")}
    assert served == documented
    assert json.dumps(spec)  # serialisable


def test_a_volunteer_over_the_rate_limit_gets_a_429_with_retry_after(settings, redis_db, session_maker):
    """Past its limit a volunteer token gets a JSON 429 saying when to come back."""
    from web import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "s", "SETTINGS": settings, "REDIS": redis_db,
                      "RATELIMIT_VOLUNTEER": "2/minute"})
    client = app.test_client()
    headers = {"X-Volunteer-Token": client.post("/api/v1/volunteers").get_json()["token"]}
    replies = [client.post("/api/v1/projects/999/next", headers=headers) for _ in range(3)]
    assert [r.status_code for r in replies] == [404, 404, 429]
    assert replies[2].get_json()["code"] == 429 and int(replies[2].headers["Retry-After"]) > 0


def test_an_oversized_body_is_a_413_json_error(settings, redis_db, session_maker):
    """A request body over the configured maximum is refused with a JSON 413."""
    from web import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "s", "SETTINGS": settings, "REDIS": redis_db,
                      "MAX_CONTENT_LENGTH": 1000})
    reply = app.test_client().post("/api/v1/units/1/answers", data=b"x" * 5000,
                                   headers={"Content-Type": "application/json"})
    assert reply.status_code == 413 and reply.get_json()["code"] == 413


def test_new_tokens_are_limited_per_address(settings, redis_db, session_maker):
    """Minting volunteer tokens is limited per (hashed) address, so fresh tokens do not escape the limits."""
    from web import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "s", "SETTINGS": settings, "REDIS": redis_db,
                      "RATELIMIT_ADDRESS": "2/minute"})
    client = app.test_client()
    assert [client.post("/api/v1/volunteers").status_code for _ in range(3)] == [201, 201, 429]


def test_serving_settings_are_part_of_a_project(client, owner):
    """Strategy and gold rates are set at creation and shown back; an unknown strategy is a 422."""
    body = {**TAGGING, "strategy": "breadth_first", "gold_rate": 0.2}
    created = client.post("/api/v1/projects", headers=owner["headers"], json=body).get_json()
    assert (created["strategy"], created["gold_rate"]) == ("breadth_first", 0.2)
    reply = client.post("/api/v1/projects", headers=owner["headers"], json={**TAGGING, "strategy": "lifo"})
    assert reply.status_code == 422 and "strategy" in reply.get_json()["errors"]["json"]


def test_a_gold_answer_gets_feedback_with_the_known_answer(client, owner, new_volunteer, run_jobs):
    """After answering a gold unit the volunteer is told how it compares and what was expected."""
    project = client.post("/api/v1/projects", headers=owner["headers"],
                          json={**TAGGING, "gold_warmup_rate": 1.0}).get_json()
    archive = make_zip({"a.png": png_bytes(), "manifest.csv": b"file,gold\na.png,dog\n"})
    client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                data={"file": (io.BytesIO(archive), "b.zip")}, content_type="multipart/form-data")
    run_jobs()
    headers = new_volunteer()
    reply = answer(client, headers, next_unit(client, project, headers)["id"], {"label": "cat"}).get_json()
    assert reply["gold"] == {"score": 0.0, "expected": {"label": "dog"}}


def test_a_gold_marking_answer_says_which_known_marks_were_missed_and_which_marks_were_false(
        client, owner, new_volunteer, run_jobs):
    """The feedback on known marks names, by position, the ones missed and the volunteer's marks on none."""
    known = [{"x": 100, "y": 100, "r": 20}, {"x": 400, "y": 300, "r": 40}]
    project = gold_project(client, owner, run_jobs, MARKING, [("a.png", json.dumps(known))], size=(640, 480))
    headers = new_volunteer()
    given = [{"x": 300, "y": 50, "r": 10}, {"x": 405, "y": 298, "r": 38}]
    reply = answer(client, headers, next_unit(client, project, headers)["id"], {"marks": given}).get_json()
    assert (reply["gold"]["missed"], reply["gold"]["false_marks"]) == ([0], [0])
    assert reply["gold"]["score"] == 0.5


def test_an_ordinary_answer_carries_no_gold_feedback(client, make_project, new_volunteer):
    """Units without a known answer reveal nothing."""
    project = make_project(TAGGING, n=1)
    headers = new_volunteer()
    reply = answer(client, headers, next_unit(client, project, headers)["id"], {"label": "cat"}).get_json()
    assert reply["gold"] is None


def test_a_not_sure_answer_is_stored_but_leaves_the_slot_to_others(client, make_project, new_volunteer, session):
    """'Not sure' is kept for research, counts toward nothing, and the unit goes on being served."""
    project = make_project({**TAGGING, "redundancy": 1}, n=1)
    headers = new_volunteer()
    unit = next_unit(client, project, headers)
    assert answer(client, headers, unit["id"], {"unsure": True}).status_code == 201
    assert session.scalar(select(Answer.counted)) is False
    assert next_unit(client, project, new_volunteer())["id"] == unit["id"]


def test_skipping_gives_the_unit_to_someone_else(client, make_project, new_volunteer):
    """A skipped unit's slot frees at once; the volunteer who skipped is not offered it again."""
    project = make_project({**TAGGING, "redundancy": 1}, n=1)
    first, second = new_volunteer(), new_volunteer()
    unit = next_unit(client, project, first)
    assert next_unit(client, project, second) is None
    assert client.post(f"/api/v1/units/{unit['id']}/skip", headers=first).get_json() == {
        "unit_id": unit["id"], "skipped": True}
    assert next_unit(client, project, second)["id"] == unit["id"]
    assert next_unit(client, project, first) is None


def test_skipping_a_unit_never_served_is_a_409(client, make_project, new_volunteer):
    """Only a unit you were served can be skipped."""
    project = make_project(TAGGING, n=1)
    unit = next_unit(client, project, new_volunteer())
    assert client.post(f"/api/v1/units/{unit['id']}/skip", headers=new_volunteer()).status_code == 409


# -- found by fuzzing (tests/test_fuzz.py) ------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/projects/{big}"), ("GET", "/api/v1/projects/{project}/exports/{big}"),
    ("POST", "/api/v1/units/{big}/skip"), ("POST", "/api/v1/units/{big}/answers"),
])
def test_an_id_beyond_any_row_is_a_404(client, owner, new_volunteer, method, path):
    """A path id too large for the id columns names no row: 404, never a database error."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    reply = client.open(path.format(big=2**64, project=project["id"]), method=method,
                        headers={**owner["headers"], **new_volunteer()},
                        json={"answer_id": str(uuid.uuid4()), "payload": {"label": "cat"}})
    assert reply.status_code == 404 and reply.get_json()["code"] == 404


def test_a_batch_answer_with_an_id_beyond_any_row_is_a_422(client, new_volunteer):
    """Unit ids in a batch of answers are checked against the id columns' range by the schema."""
    reply = client.post("/api/v1/answers", headers=new_volunteer(), json={"answers": [
        {"unit_id": 2**70, "answer_id": str(uuid.uuid4()), "payload": {"label": "cat"}}]})
    assert reply.status_code == 422 and "unit_id" in reply.get_json()["errors"]["json"]["answers"]["0"]


def test_times_in_responses_carry_their_utc_offset(client, owner):
    """Every date-time the API returns is RFC 3339 with an offset, on SQLite (which drops it) as on PostgreSQL."""
    created = client.post("/api/v1/keys", headers=owner["headers"], json={"name": "script"}).get_json()
    assert created["created_at"].endswith("+00:00")


def test_a_project_without_a_webhook_has_a_null_secret_as_documented(client, owner):
    """webhook_secret is null without a webhook_url, and the OpenAPI document says it may be."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    documented = client.get("/api/openapi.json").get_json()["components"]["schemas"]["Project"]
    assert project["webhook_secret"] is None
    assert "null" in documented["properties"]["webhook_secret"]["type"]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/v1/keys", {"name": "a\u0000b"}),
    ("PATCH", "/api/v1/projects/{id}", {"topics": ["\u0000"]}),
    ("POST", "/api/v1/volunteers/login", {"username": "\u0000", "password": "0123456789"}),
])
def test_a_nul_character_in_a_json_text_is_a_400(client, owner, method, path, body):
    """No database stores a NUL in text (PostgreSQL refuses it): the call is refused before any view runs."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    reply = client.open(path.format(id=project["id"]), method=method, headers=owner["headers"], json=body)
    assert reply.status_code == 400 and "NUL" in reply.get_json()["message"]


def test_a_nul_character_in_the_path_is_a_400(client):
    """A NUL in a path's text parameter (a project's slug) is refused, not looked up."""
    reply = client.get("/api/v1/projects/a%00b/summary")
    assert reply.status_code == 400 and "NUL" in reply.get_json()["message"]


# -- JSON beyond JSON (see tests/test_hostile_uploads.py for manifests) ----------------------

UNIT_ANSWER_ID = "00000000-0000-4000-8000-0000000000f1"


@pytest.mark.parametrize(("body", "reason"), [
    ("[" * 100_000 + "]" * 100_000, "nested more than"),
    ('{"answers": [{"unit_id": 1, "answer_id": "%s", "payload": {"x": NaN}}]}' % UNIT_ANSWER_ID, "NaN"),
    ('{"answers": [{"unit_id": 1, "answer_id": "%s", "payload": {"label": "\\ud800"}}]}' % UNIT_ANSWER_ID,
     "surrogate"),
], ids=["nested", "NaN", "half a surrogate pair"])
def test_json_no_database_can_store_is_a_400(client, new_volunteer, body, reason):
    """Deep nesting (which would exhaust the parser's stack), NaN and half a surrogate pair are refused as JSON."""
    reply = client.post("/api/v1/answers", headers={**new_volunteer(), "Content-Type": "application/json"},
                        data=body)
    assert reply.status_code == 400 and reason in reply.get_json()["message"]
