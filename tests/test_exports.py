"""Exports through the API and a worker: every format read back by a standard reader, provenance, progress,
formula neutralisation and authorization."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import MARKING, TAGGING, answer, make_zip, png_bytes

LABELS = TAGGING["labels"]


def serve_and_answer(client, project, headers, payload):  # type: ignore[no-untyped-def]
    """Lease the next unit and answer it with ``payload`` (or ``payload(unit)``); returns the unit or None."""
    unit = client.post(f"/api/v1/projects/{project['id']}/next", headers=headers).get_json()["unit"]
    if unit is not None:
        assert answer(client, headers, unit["id"], payload(unit) if callable(payload) else payload).status_code == 201
    return unit


@pytest.fixture()
def tagged(client, make_project, new_volunteer, run_jobs):  # type: ignore[no-untyped-def]
    """A tagging project with two units, each answered cat, cat, dog by three volunteers, and its consensus."""
    project = make_project(TAGGING, n=2)
    for label in ("cat", "cat", "dog"):
        headers = new_volunteer()
        for _ in range(2):
            serve_and_answer(client, project, headers, {"label": label})
    run_jobs()
    return project


@pytest.fixture()
def marked(client, make_project, new_volunteer, run_jobs):  # type: ignore[no-untyped-def]
    """A circle-marking project with one 200 x 100 unit: two of three volunteers mark the same crater."""
    project = make_project(MARKING, n=1, size=(200, 100))
    for marks in ([{"x": 50, "y": 40, "r": 10}], [{"x": 52, "y": 41, "r": 11}], []):
        serve_and_answer(client, project, new_volunteer(), {"marks": marks})
    run_jobs()
    return project


def start(client, owner, project, kind, fmt):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/projects/{project['id']}/exports", headers=owner["headers"],
                       json={"kind": kind, "format": fmt})


def exported(client, owner, run_jobs, project, kind, fmt) -> tuple[dict[str, Any], zipfile.ZipFile]:
    """Start an export, run the worker, download the ZIP; returns the export and the open ZIP."""
    reply = start(client, owner, project, kind, fmt)
    assert reply.status_code == 202, reply.get_json()
    run_jobs()
    export = client.get(f"/api/v1/projects/{project['id']}/exports/{reply.get_json()['id']}",
                        headers=owner["headers"]).get_json()
    assert export["state"] == "done", export
    download = client.get(export["download_url"], headers=owner["headers"])
    assert download.status_code == 200 and download.mimetype == "application/zip"
    return export, zipfile.ZipFile(io.BytesIO(download.get_data()))


def member(archive: zipfile.ZipFile, suffix: str) -> bytes:
    (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
    return archive.read(name)


def test_a_csv_export_reads_back_with_the_csv_module(client, owner, run_jobs, tagged):
    """The consensus CSV has one flat row per unit, with its label, confidence and agreement."""
    _, archive = exported(client, owner, run_jobs, tagged, "consensus", "csv")
    rows = list(csv.DictReader(io.StringIO(member(archive, "-consensus.csv").decode("utf-8"))))
    assert [(r["label"], r["confidence"], r["n_answers"]) for r in rows] == [("cat", "0.6666666666666666", "3")] * 2
    assert {"agreement", "share_cat", "share_dog", "algorithm", "computed_at"} <= set(rows[0])
    assert (rows[0]["share_cat"], rows[0]["share_dog"], rows[0]["share_bird"]) == ("0.6667", "0.3333", "0.0")


def test_a_zip_holds_the_data_file_and_its_provenance(client, owner, run_jobs, tagged):
    """Every ZIP carries exactly its data file and provenance.json."""
    export, archive = exported(client, owner, run_jobs, tagged, "answers", "jsonl")
    slug = export["provenance"]["project"]["slug"]
    assert sorted(archive.namelist()) == [f"{slug}-answers.jsonl", "provenance.json"]
    assert export["download_url"].endswith(f"/exports/{export['id']}/download")


def test_jsonl_answers_read_back_with_json(client, owner, run_jobs, tagged):
    """JSON Lines holds one typed object per answer, volunteers by their pseudonymous id."""
    _, archive = exported(client, owner, run_jobs, tagged, "answers", "jsonl")
    records = [json.loads(line) for line in member(archive, ".jsonl").decode().splitlines()]
    assert len(records) == 6 and sorted(r["label"] for r in records) == ["cat"] * 4 + ["dog"] * 2
    assert all(r["unsure"] is False and r["counted"] is True and isinstance(r["unit_id"], int) for r in records)
    assert all(len(r["volunteer"]) == 36 and r["created_at"].endswith("Z") for r in records)


def test_parquet_has_typed_columns_read_by_pyarrow(client, owner, run_jobs, tagged):
    """Parquet comes back through pyarrow with integer, boolean, text and UTC time columns."""
    _, archive = exported(client, owner, run_jobs, tagged, "answers", "parquet")
    table = pq.read_table(io.BytesIO(member(archive, ".parquet")))
    assert table.num_rows == 6
    assert table.schema.field("unit_id").type == pa.int64()
    assert table.schema.field("counted").type == pa.bool_()
    assert table.schema.field("label").type == pa.string()
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert b"description" in table.schema.field("volunteer").metadata


def test_unsure_answers_export_without_a_label(client, owner, make_project, new_volunteer, run_jobs):
    """A 'not sure' answer is a row with an empty label and unsure true."""
    project = make_project(TAGGING, n=1)
    serve_and_answer(client, project, new_volunteer(), {"unsure": True})
    _, archive = exported(client, owner, run_jobs, project, "answers", "csv")
    (row,) = csv.DictReader(io.StringIO(member(archive, ".csv").decode()))
    assert (row["label"], row["unsure"]) == ("", "true")


def test_several_labels_are_joined_in_one_cell(client, owner, make_project, new_volunteer, run_jobs):
    """Multi-label answers and results list their labels in one ';'-separated cell, never as JSON."""
    project = make_project({**TAGGING, "multi_select": True}, n=1)
    for labels in (["cat", "dog"], ["cat", "dog"], ["cat"]):
        serve_and_answer(client, project, new_volunteer(), {"labels": labels})
    run_jobs()
    _, archive = exported(client, owner, run_jobs, project, "consensus", "csv")
    (row,) = csv.DictReader(io.StringIO(member(archive, ".csv").decode()))
    assert row["labels"] == "cat;dog"


def test_geojson_gives_consensus_marks_as_points_in_pixels(client, owner, run_jobs, marked):
    """GeoJSON is a FeatureCollection of Points at the crater's pixel centre, with radius and support."""
    _, archive = exported(client, owner, run_jobs, marked, "consensus", "geojson")
    collection = json.loads(member(archive, ".geojson"))
    assert collection["type"] == "FeatureCollection"
    (feature,) = collection["features"]
    assert feature["type"] == "Feature" and feature["geometry"] == {"type": "Point", "coordinates": [51.0, 40.5]}
    properties = feature["properties"]
    assert (properties["r"], properties["support"], properties["confidence"]) == (10.5, 2, 0.6667)
    assert properties["unit"] == "img0.png" and 0 < properties["unit_confidence"] <= 1


def test_geojson_of_raw_answers_has_every_mark(client, owner, run_jobs, marked):
    """The answers GeoJSON has one feature per raw mark, naming its volunteer."""
    _, archive = exported(client, owner, run_jobs, marked, "answers", "geojson")
    features = json.loads(member(archive, ".geojson"))["features"]
    assert sorted(f["geometry"]["coordinates"] for f in features) == [[50.0, 40.0], [52.0, 41.0]]
    assert all(len(f["properties"]["volunteer"]) == 36 for f in features)


def test_coco_gives_images_boxes_and_scores(client, owner, run_jobs, marked):
    """COCO has the unit as an image and the crater as a box [x-r, y-r, 2r, 2r] scored by its confidence."""
    _, archive = exported(client, owner, run_jobs, marked, "consensus", "coco")
    coco = json.loads(member(archive, ".coco.json"))
    (image,) = coco["images"]
    assert (image["file_name"], image["width"], image["height"]) == ("img0.png", 200, 100)
    assert coco["categories"] == [{"id": 1, "name": "crater", "supercategory": "mark"}]
    (annotation,) = coco["annotations"]
    assert annotation["image_id"] == image["id"] and annotation["category_id"] == 1
    assert annotation["bbox"] == [40.5, 30.0, 21.0, 21.0] and annotation["score"] == 0.6667


def test_marking_csv_has_one_row_per_mark_and_an_empty_row_for_nothing(client, owner, run_jobs, marked):
    """Raw marks are flat rows with x, y, r; an answer that marked nothing is one row without coordinates."""
    _, archive = exported(client, owner, run_jobs, marked, "answers", "csv")
    rows = list(csv.DictReader(io.StringIO(member(archive, ".csv").decode())))
    assert sorted((r["x"], r["y"], r["r"]) for r in rows) == [("", "", ""), ("50.0", "40.0", "10.0"),
                                                              ("52.0", "41.0", "11.0")]


@pytest.fixture()
def tiled(client, owner, new_volunteer, run_jobs, session_maker):  # type: ignore[no-untyped-def]
    """A 300 x 200 image cut into two 200 px tiles overlapping by 100; three volunteers mark the crater at
    (150, 100), r 20, in both tiles."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=MARKING).get_json()
    reply = client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                        data={"file": (io.BytesIO(png_bytes(300, 200)), "moon.png"), "tile_size": "200",
                              "overlap": "100"}, content_type="multipart/form-data")
    assert reply.status_code == 202, reply.get_json()
    run_jobs()

    from sqlalchemy import select

    from microtasks.models import Unit

    with session_maker() as session:
        left = dict(session.execute(select(Unit.id, Unit.data)).all())

    def crater(unit: dict[str, Any]) -> dict[str, Any]:
        return {"marks": [{"x": 150 - left[unit["id"]]["x0"], "y": 100, "r": 20}]}

    for _ in range(3):
        headers = new_volunteer()
        for _ in range(2):
            serve_and_answer(client, project, headers, crater)
    run_jobs()
    return project


def test_tiled_consensus_geojson_gives_whole_image_coordinates(client, owner, run_jobs, tiled):
    """Each tile's crater keeps its tile pixels, gains whole-image ones, and one copy is flagged duplicate."""
    _, archive = exported(client, owner, run_jobs, tiled, "consensus", "geojson")
    features = json.loads(member(archive, ".geojson"))["features"]
    assert sorted(f["geometry"]["coordinates"] for f in features) == [[50.0, 100.0], [150.0, 100.0]]
    assert {(f["properties"]["image_x"], f["properties"]["image_y"]) for f in features} == {(150.0, 100.0)}
    assert sorted(f["properties"]["duplicate"] for f in features) == [False, True]
    assert {f["properties"]["image"] for f in features} == {"moon.png"}


def test_tiled_consensus_coco_puts_one_crater_on_the_whole_image(client, owner, run_jobs, tiled):
    """COCO of a tiled image has the whole image, and the crater once, in whole-image pixels."""
    _, archive = exported(client, owner, run_jobs, tiled, "consensus", "coco")
    coco = json.loads(member(archive, ".coco.json"))
    (image,) = coco["images"]
    assert (image["file_name"], image["width"], image["height"]) == ("moon.png", 300, 200)
    (annotation,) = coco["annotations"]
    assert annotation["image_id"] == image["id"] and annotation["bbox"] == [130.0, 80.0, 40.0, 40.0]


def test_provenance_names_the_algorithm_code_time_and_counts(client, owner, run_jobs, tagged):
    """provenance.json records the algorithm with its parameters, the code version, the time and the counts."""
    export, archive = exported(client, owner, run_jobs, tagged, "consensus", "parquet")
    provenance = json.loads(archive.read("provenance.json"))
    (algorithm,) = provenance["algorithms"]
    assert algorithm["algorithm"] == "majority_vote" and algorithm["results"] == 2 and algorithm["parameters"]
    assert provenance["code"]["version"] and provenance["created_at"].endswith("Z")
    assert provenance["counts"] | {"rows": 2} == {"units": 2, "gold_units": 0, "answers": 6, "counted_answers": 6,
                                                  "results": 2, "volunteers": 3, "records": 2, "rows": 2}
    assert provenance["export"]["kind"] == "consensus" and provenance["export"]["format"] == "parquet"
    assert {c["name"] for c in provenance["export"]["columns"]} >= {"unit", "label", "confidence", "agreement"}
    assert export["provenance"] == provenance | {"archive": export["provenance"]["archive"]}


def test_an_export_reports_its_progress(client, owner, run_jobs, tagged):
    """A new export is pending with nothing done; once the worker ran, all of its rows are done."""
    created = start(client, owner, tagged, "answers", "csv").get_json()
    assert (created["state"], created["rows"], created["progress"], created["download_url"]) == (
        "pending", 0, 0.0, None)
    run_jobs()
    export = client.get(f"/api/v1/projects/{tagged['id']}/exports/{created['id']}", headers=owner["headers"]
                        ).get_json()
    assert (export["state"], export["rows"], export["total"], export["progress"]) == ("done", 6, 6, 1.0)
    assert export["finished_at"] and export["error"] is None


def test_progress_is_reported_after_each_chunk(session, tagged, tmp_path):
    """write_export calls progress with the records read and expected, ending with both equal."""
    from microtasks import exporting
    from microtasks.models import Project

    calls: list[tuple[int, int]] = []
    exporting.write_export(session, session.get(Project, tagged["id"]), "answers", "csv", tmp_path,
                           lambda done, total: calls.append((done, total)))
    assert calls[0] == (6, 6) and calls[-1] == (6, 6)


def test_downloading_an_unfinished_export_is_a_conflict(client, owner, tagged):
    """Before the worker has run, the download is a 409 saying the export is not done."""
    created = start(client, owner, tagged, "consensus", "csv").get_json()
    reply = client.get(f"/api/v1/projects/{tagged['id']}/exports/{created['id']}/download",
                       headers=owner["headers"])
    assert reply.status_code == 409 and "pending" in reply.get_json()["message"]


def test_exports_are_listed_newest_first(client, owner, run_jobs, tagged):
    """The list shows the project's exports, the latest first."""
    first = start(client, owner, tagged, "consensus", "csv").get_json()
    second = start(client, owner, tagged, "answers", "jsonl").get_json()
    listed = client.get(f"/api/v1/projects/{tagged['id']}/exports", headers=owner["headers"]).get_json()
    assert [e["id"] for e in listed] == [second["id"], first["id"]]


def test_formula_cells_are_neutralised_in_csv_only(client, owner, new_volunteer, run_jobs):
    """A unit named like a formula starts with ' in CSV, and stays as given in JSON Lines."""
    project = client.post("/api/v1/projects", headers=owner["headers"], json=TAGGING).get_json()
    archive = make_zip({"a.png": png_bytes(), "manifest.csv": b'file,name\na.png,"=HYPERLINK(""x"")"\n'})
    client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                data={"file": (io.BytesIO(archive), "b.zip")}, content_type="multipart/form-data")
    run_jobs()
    serve_and_answer(client, project, new_volunteer(), {"label": "cat"})
    _, csv_zip = exported(client, owner, run_jobs, project, "answers", "csv")
    (row,) = csv.DictReader(io.StringIO(member(csv_zip, ".csv").decode()))
    assert row["unit"] == "'=HYPERLINK(\"x\")"
    _, jsonl_zip = exported(client, owner, run_jobs, project, "answers", "jsonl")
    assert json.loads(member(jsonl_zip, ".jsonl"))["unit"] == '=HYPERLINK("x")'


def reliability_rows(client, owner, make_project, new_volunteer, run_jobs, settings, payloads):  # type: ignore
    """Reliability export rows after one volunteer per payload (a function of the unit, or fixed)
    answered every unit of a 20-unit project, breadth first."""
    project = make_project({**settings, "strategy": "breadth_first"}, n=20)
    for payload in payloads:
        headers = new_volunteer()
        while serve_and_answer(client, project, headers, payload) is not None:
            pass
    run_jobs()
    _, archive = exported(client, owner, run_jobs, project, "reliability", "csv")
    return list(csv.DictReader(io.StringIO(member(archive, ".csv").decode())))


def test_reliability_lists_volunteers_by_pseudonym_with_skill_and_quarantine(client, owner, make_project,
                                                                            new_volunteer, run_jobs):
    """After a refit, reliability rows give each volunteer's skill; the spammer shows as quarantined."""
    def truth(unit: dict[str, Any]) -> dict[str, Any]:
        return {"label": LABELS[unit["id"] % len(LABELS)]}

    rows = reliability_rows(client, owner, make_project, new_volunteer, run_jobs, TAGGING,
                            (truth, truth, {"label": "cat"}))
    assert len(rows) == 3 and all(len(r["volunteer"]) == 36 for r in rows)
    assert sorted(r["quarantined"] for r in rows) == ["false", "false", "true"]
    fitted = [r for r in rows if r["quarantined"] == "false"]
    assert all(0.5 < float(r["skill"]) <= 1 and float(r["skill_std"]) > 0 for r in fitted)
    assert "confusion_cat_dog" in rows[0]


def test_reliability_of_a_multi_label_project_gives_sensitivity_and_specificity(client, owner, make_project,
                                                                                 new_volunteer, run_jobs):
    """A multi-label project's refit measures each volunteer at ticking and leaving out labels."""
    def truth(unit: dict[str, Any]) -> dict[str, Any]:
        return {"labels": [LABELS[unit["id"] % len(LABELS)]]}

    rows = reliability_rows(client, owner, make_project, new_volunteer, run_jobs, {**TAGGING, "multi_select": True},
                            (truth, truth, truth))
    assert len(rows) == 3 and "confusion_cat_dog" not in rows[0]
    assert all(float(r["sensitivity"]) > 0.8 and float(r["specificity"]) > 0.8 and float(r["skill"]) > 0.8
               for r in rows)


def test_gold_rows_give_the_known_and_given_answers(client, owner, new_volunteer, run_jobs):
    """The gold export has the expected label, the given one and the score, per answer to a gold unit."""
    project = client.post("/api/v1/projects", headers=owner["headers"],
                          json={**TAGGING, "gold_warmup_rate": 1.0}).get_json()
    archive = make_zip({"a.png": png_bytes(), "manifest.csv": b"file,gold\na.png,dog\n"})
    client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"],
                data={"file": (io.BytesIO(archive), "b.zip")}, content_type="multipart/form-data")
    run_jobs()
    serve_and_answer(client, project, new_volunteer(), {"label": "cat"})
    _, archive = exported(client, owner, run_jobs, project, "gold", "jsonl")
    (record,) = [json.loads(line) for line in member(archive, ".jsonl").decode().splitlines()]
    assert (record["expected_label"], record["given_label"], record["gold_score"]) == ("dog", "cat", 0.0)


def test_the_direct_download_streams_json_lines(client, owner, tagged):
    """GET .../export streams JSON Lines of any kind, named for the project and kind."""
    reply = client.get(f"/api/v1/projects/{tagged['id']}/export?kind=reliability&format=jsonl",
                       headers=owner["headers"])
    assert reply.status_code == 200 and reply.mimetype == "application/x-ndjson"
    assert "-reliability.jsonl" in reply.headers["Content-Disposition"]
    assert len([json.loads(line) for line in reply.get_data(as_text=True).splitlines()]) == 3


@pytest.mark.parametrize(("body", "field"), [({"kind": "everything"}, "kind"), ({"format": "xlsx"}, "format"),
                                             ({"format": "geojson"}, "format"), ({"format": "coco"}, "format")])
def test_an_unknown_or_unfit_kind_or_format_is_a_422(client, owner, make_project, body, field):
    """Unknown kinds and formats, and marks formats for a tagging project, are 422s naming the field."""
    project = make_project(TAGGING, n=1)
    reply = client.post(f"/api/v1/projects/{project['id']}/exports", headers=owner["headers"], json=body)
    assert reply.status_code == 422 and field in reply.get_json()["errors"]["json"]


def test_geojson_of_reliability_is_refused_with_a_reason(client, owner, marked):
    """GeoJSON holds marks, so asking for the reliability kind in it says to choose consensus or answers."""
    reply = start(client, owner, marked, "reliability", "geojson")
    assert reply.status_code == 422 and "consensus or answers" in reply.get_json()["message"]


def export_urls(project_id: int, export_id: int) -> list[tuple[str, str]]:
    base = f"/api/v1/projects/{project_id}"
    return [("get", f"{base}/export?kind=answers&format=csv"), ("get", f"{base}/exports"),
            ("post", f"{base}/exports"), ("get", f"{base}/exports/{export_id}"),
            ("get", f"{base}/exports/{export_id}/download")]


def test_another_owner_gets_404_on_every_export_endpoint(client, owner, run_jobs, tagged, session_maker):
    """Exports are private: each export URL of someone else's project answers 404."""
    from microtasks.accounts import create_owner

    export, _ = exported(client, owner, run_jobs, tagged, "answers", "csv")
    with session_maker() as session:
        _, key = create_owner(session, "Someone else")
        session.commit()
    for method, url in export_urls(tagged["id"], export["id"]):
        reply = getattr(client, method)(url, headers={"X-API-Key": key}, json={"kind": "answers"} if method == "post"
                                        else None)
        assert reply.status_code == 404, (method, url, reply.status_code)


def test_the_cli_writes_the_zip_and_a_parquet_file(tmp_path, owner, tagged):
    """microtasks export writes the ZIP by default, and the data file alone with --out."""
    from web.cli import cli

    slug = tagged["slug"]
    done = CliRunner().invoke(cli, ["export", slug, "--kind", "answers", "--format", "parquet", "--dir",
                                    str(tmp_path)])
    assert done.exit_code == 0, done.output
    with zipfile.ZipFile(tmp_path / f"{slug}-answers-parquet.zip") as archive:
        assert sorted(archive.namelist()) == [f"{slug}-answers.parquet", "provenance.json"]
    out = tmp_path / "answers.parquet"
    done = CliRunner().invoke(cli, ["export", slug, "--kind", "answers", "--format", "parquet", "--out", str(out)])
    assert done.exit_code == 0 and pq.read_table(out).num_rows == 6


@pytest.mark.browser
def test_an_owner_starts_an_export_on_the_page_and_gets_its_link(browser, server, owner, run_jobs, tagged):
    """On the project page the owner starts an export, sees it wait for a worker, then gets the ZIP's link."""
    from tests.conftest import PHONE, TIMEOUT_MS, shoot, sign_in_with_key

    context = browser.new_context(**PHONE)
    context.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.goto(server + "/owner/login")
        sign_in_with_key(page, owner["key"])
        page.get_by_role("link", name=tagged["name"]).tap()
        page.get_by_role("heading", name="Export files").wait_for()
        page.get_by_label("What").select_option("answers")
        page.get_by_label("Format").select_option("parquet")
        page.get_by_role("button", name="Start the export").tap()
        page.locator("#export-state").filter(has_text="Waiting for a worker").wait_for()
        assert run_jobs() == 1  # the page goes on polling meanwhile
        link = page.get_by_role("link", name="Download the ZIP")
        link.wait_for()
        page.locator("#exports").scroll_into_view_if_needed()
        shoot(page, "owner-export-done")
        assert page.locator("#export-state").inner_text() == "Done: 6 rows"
        assert link.get_attribute("href").endswith("/download")
        listed = page.locator("#export-list").inner_text()
        assert "answers · parquet" in listed and "Download" in listed
    finally:
        context.close()
    assert problems == []
