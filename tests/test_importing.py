"""Batch uploads through the API and a worker: good, mixed and hostile archives, and large images cut into tiles."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from microtasks.importing import import_batch
from microtasks.models import Batch, Project, Unit
from microtasks.tiles import tile_boxes
from tests.conftest import MARKING, TAGGING, make_zip, png_bytes


def photo(width: int = 400, height: int = 300, orientation: int | None = None, gps: bool = False,
          seed: int = 0) -> bytes:
    """A JPEG with varied content, optionally with an EXIF orientation and a GPS position."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height // 10 + 1, width // 10 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    if orientation:
        exif[0x0112] = orientation
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 22.0, 3.5), 3: "E", 4: (4.0, 53.0, 1.2)})
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, exif=exif)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10_000, 9))
            + chunk(b"IEND", b""))


def new_project(client, owner, settings: dict[str, Any] = TAGGING) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    reply = client.post("/api/v1/projects", headers=owner["headers"], json=settings)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def upload(client, owner, project: dict[str, Any], content: bytes, filename: str = "batch.zip",  # type: ignore
           **form: Any):
    data = {"file": (io.BytesIO(content), filename), **{k: str(v) for k, v in form.items()}}
    return client.post(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"], data=data,
                       content_type="multipart/form-data")


def imported(client, owner, run_jobs, project: dict[str, Any], content: bytes,  # type: ignore[no-untyped-def]
             filename: str = "batch.zip", **form: Any) -> dict[str, Any]:
    """Upload, run the worker, and return the finished batch's report."""
    reply = upload(client, owner, project, content, filename, **form)
    assert reply.status_code == 202, reply.get_json()
    run_jobs()
    return client.get(f"/api/v1/projects/{project['id']}/batches/{reply.get_json()['id']}",
                      headers=owner["headers"]).get_json()


def units(session_maker, project: dict[str, Any]) -> list[Unit]:  # type: ignore[no-untyped-def]
    with session_maker() as session:
        return list(session.scalars(select(Unit).where(Unit.project_id == project["id"]).order_by(Unit.id)))


def reasons(report: dict[str, Any]) -> dict[str, str]:
    return {r["name"]: r["reason"] for r in report["rejected"]}


def test_a_zip_of_images_becomes_units_when_the_batch_is_done(client, owner, run_jobs, session_maker):
    """Every image of a good archive becomes a unit with a phone copy and a thumbnail."""
    project = new_project(client, owner)
    files = {"a.jpg": photo(seed=1), "b.png": png_bytes(colour="blue"), "c.jpeg": photo(seed=2)}
    report = imported(client, owner, run_jobs, project, make_zip(files))
    assert (report["state"], report["kind"], report["imported"], report["rejected"]) == ("done", "archive", 3, [])
    stored = units(session_maker, project)
    assert [u.external_id for u in stored] == ["a.jpg", "b.png", "c.jpeg"]
    assert all(u.media.endswith(".webp") and u.thumbnail.endswith(".thumb.webp") for u in stored)


def test_progress_ends_with_every_entry_processed(client, owner, run_jobs):
    """The batch reports its entries as total and processed; both end equal, rejected entries included."""
    project = new_project(client, owner)
    files = {"a.png": png_bytes(colour="red"), "b.png": png_bytes(colour="green"), "c.png": b"\x89PNG broken"}
    report = imported(client, owner, run_jobs, project, make_zip(files))
    assert (report["total"], report["processed"], report["imported"]) == (3, 3, 2)


def test_a_photos_gps_position_never_reaches_the_stored_copies(client, owner, run_jobs, session_maker, settings):
    """EXIF (with its GPS position) is absent from the phone copy and the thumbnail."""
    project = new_project(client, owner)
    imported(client, owner, run_jobs, project, make_zip({"geo.jpg": photo(gps=True)}))
    [unit] = units(session_maker, project)
    for name in (unit.media, unit.thumbnail):
        raw = (settings.media_dir / name).read_bytes()
        with Image.open(io.BytesIO(raw)) as stored:
            assert stored.format == "WEBP" and dict(stored.getexif()) == {}
        assert b"EXIF" not in raw and b"XMP " not in raw and b"PhoneMaker" not in raw


def test_the_exif_orientation_is_applied(client, owner, run_jobs, session_maker, settings):
    """A landscape-stored JPEG tagged 'rotate 90' becomes a portrait unit and portrait copies."""
    project = new_project(client, owner)
    imported(client, owner, run_jobs, project, make_zip({"portrait.jpg": photo(400, 300, orientation=6)}))
    [unit] = units(session_maker, project)
    assert (unit.width, unit.height) == (300, 400)
    for name in (unit.media, unit.thumbnail):
        with Image.open(settings.media_dir / name) as stored:
            assert stored.width < stored.height


def test_the_phone_copy_is_small_but_the_unit_keeps_the_original_size(client, owner, run_jobs, session_maker,
                                                                      settings):
    """The copy volunteers see is at most 1024 px long and the thumbnail about 256; width/height stay the original's."""
    project = new_project(client, owner)
    imported(client, owner, run_jobs, project, make_zip({"big.jpg": photo(3000, 2000)}))
    [unit] = units(session_maker, project)
    assert (unit.width, unit.height) == (3000, 2000)
    with Image.open(settings.media_dir / unit.media) as phone, Image.open(settings.media_dir / unit.thumbnail) as thumb:
        assert phone.size == (1024, 683)
        assert thumb.size == (256, 171)


def test_gold_marks_are_given_in_original_pixels(client, owner, run_jobs, session_maker):
    """A gold mark beyond the phone copy's size but inside the original is accepted."""
    project = new_project(client, owner, MARKING)
    manifest = json.dumps([{"file": "big.jpg", "gold": [{"x": 2500, "y": 1800, "r": 40}]}]).encode()
    report = imported(client, owner, run_jobs, project,
                      make_zip({"big.jpg": photo(3000, 2000), "manifest.json": manifest}))
    assert (report["imported"], report["rejected"]) == (1, [])
    [unit] = units(session_maker, project)
    assert unit.gold == {"marks": [{"x": 2500.0, "y": 1800.0, "r": 40.0}]}


def test_a_duplicate_within_the_batch_is_rejected(client, owner, run_jobs):
    """The second copy of the same bytes is rejected, naming the unit it duplicates."""
    project = new_project(client, owner)
    same = photo(seed=3)
    report = imported(client, owner, run_jobs, project, make_zip({"a.jpg": same, "copy.jpg": same}))
    assert report["imported"] == 1
    assert reasons(report) == {"copy.jpg": "duplicate of a.jpg"}


def test_a_file_already_in_the_project_is_rejected_as_a_duplicate(client, owner, run_jobs):
    """A later batch cannot add an image the project already has."""
    project = new_project(client, owner)
    imported(client, owner, run_jobs, project, make_zip({"first.jpg": photo(seed=4)}))
    report = imported(client, owner, run_jobs, project, make_zip({"again.jpg": photo(seed=4), "new.jpg": photo()}))
    assert report["imported"] == 1
    assert reasons(report) == {"again.jpg": "duplicate of first.jpg"}


def test_the_same_image_in_two_projects_shares_its_stored_files(client, owner, run_jobs, session_maker, settings):
    """Files are content-addressed: a second project's copy of an image adds no file."""
    content = make_zip({"a.jpg": photo(seed=5)})
    first, second = new_project(client, owner), new_project(client, owner, {**TAGGING, "name": "Again"})
    imported(client, owner, run_jobs, first, content)
    files = sorted(p.name for p in settings.media_dir.iterdir())
    imported(client, owner, run_jobs, second, content)
    [a], [b] = units(session_maker, first), units(session_maker, second)
    assert (a.media, a.thumbnail, a.width, a.height) == (b.media, b.thumbnail, b.width, b.height)
    assert sorted(p.name for p in settings.media_dir.iterdir()) == files


@pytest.mark.parametrize(("content", "expected"), [
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "SVG text"),
    (b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "HTML text"),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "a GIF image"),
])
def test_a_document_passed_off_as_a_jpeg_is_rejected(client, owner, run_jobs, content, expected):
    """SVG, HTML or another format named .jpg is recognised by its content and rejected with what it is."""
    project = new_project(client, owner)
    report = imported(client, owner, run_jobs, project, make_zip({"cat.jpg": content, "ok.png": png_bytes()}))
    assert report["imported"] == 1
    assert reasons(report)["cat.jpg"].startswith(expected)


def test_a_truncated_jpeg_is_rejected(client, owner, run_jobs):
    """A JPEG cut short is reported as broken while the rest imports."""
    project = new_project(client, owner)
    whole = photo(800, 600, seed=6)
    report = imported(client, owner, run_jobs, project, make_zip({"cut.jpg": whole[: len(whole) // 2],
                                                                  "ok.jpg": whole}))
    assert report["imported"] == 1
    assert reasons(report)["cut.jpg"].startswith("broken JPEG image (image file is truncated")


def test_a_decompression_bomb_is_rejected_before_decoding(client, owner, run_jobs):
    """A small PNG claiming 20,000 x 20,000 pixels is refused by the pixel limit."""
    project = new_project(client, owner)
    report = imported(client, owner, run_jobs, project, make_zip({"bomb.png": png_claiming(20_000, 20_000),
                                                                  "ok.png": png_bytes()}))
    assert report["imported"] == 1
    assert "decompression bomb" in reasons(report)["bomb.png"]


def test_a_zip_bomb_entry_is_rejected(client, owner, run_jobs):
    """An entry that would unpack a thousand times larger than it is stored is not unpacked."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.png", b"\0" * 50_000_000)
        archive.writestr("ok.png", png_bytes())
    project = new_project(client, owner)
    report = imported(client, owner, run_jobs, project, buffer.getvalue())
    assert report["imported"] == 1
    assert "ZIP bomb" in reasons(report)["bomb.png"]


@pytest.mark.parametrize("name", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "..\\evil.png", "C:/evil.png"])
def test_a_path_escaping_the_archive_is_rejected(client, owner, run_jobs, name):
    """Entries whose path leads out of the archive are rejected by name."""
    project = new_project(client, owner)
    report = imported(client, owner, run_jobs, project, make_zip({name: png_bytes(colour="red"),
                                                                  "ok.png": png_bytes(colour="blue")}))
    assert report["imported"] == 1
    assert reasons(report) == {name: "path escapes the archive"}


def test_a_manifest_naming_a_missing_file_is_reported(client, owner, run_jobs):
    """A JSON manifest entry for a file not in the archive is rejected with its entry number."""
    project = new_project(client, owner)
    manifest = json.dumps({"units": [{"file": "a.png", "site": "north"}, {"file": "gone.png"}]}).encode()
    report = imported(client, owner, run_jobs, project, make_zip({"manifest.json": manifest, "a.png": png_bytes()}))
    assert report["imported"] == 1
    assert reasons(report) == {"gone.png": "manifest.json, line 2: no such file in the upload"}


def test_a_manifest_not_in_utf8_fails_the_batch_naming_the_file(client, owner, run_jobs, session_maker):
    """A Latin-1 manifest fails the whole batch with the file, line and encoding named, and imports nothing."""
    project = new_project(client, owner)
    manifest = "file,name\na.png,Café du Nord\n".encode("latin-1")
    report = imported(client, owner, run_jobs, project, make_zip({"manifest.csv": manifest, "a.png": png_bytes()}))
    assert report["state"] == "failed"
    assert report["error"].startswith("manifest.csv, line 2: not UTF-8 text")
    assert units(session_maker, project) == []


def test_units_are_added_all_at_once_at_the_end(session_maker, settings, tmp_path):
    """While a batch is processed no unit is pending in the session; a failure mid-way leaves none."""
    from microtasks.accounts import create_owner
    from microtasks.projects import create_project

    archive = tmp_path / "b.zip"
    archive.write_bytes(make_zip({f"u{i}.png": png_bytes(colour=(i, 0, 0)) for i in range(4)}))
    with session_maker() as session:
        creator, _ = create_owner(session, "o")
        project = create_project(session, creator, TAGGING)
        batch = Batch(project_id=project.id, name="b.zip")
        session.add(batch)
        session.commit()
        pending: list[int] = []

        def crash_at_three(processed: int, total: int) -> None:
            pending.append(sum(isinstance(o, Unit) for o in session.new))
            if processed == 3:
                raise RuntimeError("worker killed")

        with pytest.raises(RuntimeError):
            import_batch(session, project, batch, archive, settings.media_dir, progress=crash_at_three)
        session.rollback()
        assert pending == [0, 0, 0, 0]
        assert session.scalar(select(func.count()).select_from(Unit).where(Unit.project_id == project.id)) == 0


def gradient_png(width: int, height: int) -> bytes:
    """An image whose red channel grows with x and green with y, so a tile's content shows where it came from."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    pixels = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_large_image_is_cut_into_tile_units_with_their_boxes(client, owner, run_jobs, session_maker, settings):
    """One image makes a tiles batch: one unit per tile, named and placed in the whole image."""
    project = new_project(client, owner, MARKING)
    report = imported(client, owner, run_jobs, project, gradient_png(1000, 700), "moon.png",
                      tile_size=400, overlap=50)
    boxes = tile_boxes(1000, 700, 400, 50)
    assert (report["state"], report["kind"], report["imported"]) == ("done", "tiles", len(boxes))
    assert report["options"]["tile_size"] == 400 and report["options"]["overlap"] == 50
    assert report["total"] == report["processed"] == len(boxes)
    stored = units(session_maker, project)
    for unit, box in zip(stored, boxes.to_dict("records")):
        assert unit.external_id == f"moon-tile-{box['tile']}"
        assert unit.data == {"image": "moon.png", "image_width": 1000, "image_height": 700, **box}
        assert (unit.width, unit.height) == (box["x1"] - box["x0"], box["y1"] - box["y0"])
        with Image.open(settings.media_dir / unit.media) as tile:
            assert tile.size == (unit.width, unit.height)
            red, green, _ = tile.convert("RGB").getpixel((0, 0))
        assert abs(red - 255 * box["x0"] / 999) < 8 and abs(green - 255 * box["y0"] / 699) < 8


def test_tiles_follow_the_exif_orientation(client, owner, run_jobs):
    """A tiles batch cuts the upright image: a landscape JPEG tagged 'rotate 90' is tiled as a portrait."""
    project = new_project(client, owner, MARKING)
    report = imported(client, owner, run_jobs, project, photo(900, 600, orientation=6), "site.jpg")
    assert report["imported"] == len(tile_boxes(600, 900, 512, 64))


def test_an_image_already_tiled_in_the_project_fails_as_a_duplicate(client, owner, run_jobs):
    """Uploading the same large image twice fails the second batch, naming the first."""
    project = new_project(client, owner, MARKING)
    content = gradient_png(600, 600)
    imported(client, owner, run_jobs, project, content, "moon.png")
    again = imported(client, owner, run_jobs, project, content, "moon-again.png")
    assert again["state"] == "failed" and "duplicate of moon.png" in again["error"]


@pytest.mark.parametrize(("form", "field"), [({"tile_size": 32}, "tile_size"), ({"tile_size": 5000}, "tile_size"),
                                             ({"tile_size": 256, "overlap": 256}, "overlap"),
                                             ({"overlap": -1}, "overlap"), ({"tile_size": "big"}, "tile_size")])
def test_bad_tile_options_are_a_422_naming_the_field(client, owner, form, field):
    """Tile sizes outside 64..4096 and overlaps not below the tile size are refused before any work."""
    project = new_project(client, owner, MARKING)
    reply = upload(client, owner, project, gradient_png(100, 100), "moon.png", **form)
    assert reply.status_code == 422
    body = reply.get_json()
    assert (body["code"], body["status"]) == (422, "Unprocessable Entity")
    assert field in body["errors"]["files"]


def test_a_broken_single_image_fails_the_tiles_batch_with_the_reason(client, owner, run_jobs, session_maker):
    """A truncated large image fails its batch as a whole, naming the file."""
    project = new_project(client, owner, MARKING)
    whole = photo(800, 600)
    report = imported(client, owner, run_jobs, project, whole[: len(whole) // 2], "site.jpg")
    assert report["state"] == "failed" and report["error"].startswith("site.jpg: broken JPEG image")
    assert units(session_maker, project) == []


def test_the_batch_list_shows_kind_and_progress(client, owner, run_jobs):
    """Listing a project's batches shows each one's kind, options and progress, newest first."""
    project = new_project(client, owner, MARKING)
    imported(client, owner, run_jobs, project, make_zip({"a.png": png_bytes()}))
    imported(client, owner, run_jobs, project, gradient_png(300, 300), "small.png")
    listed = client.get(f"/api/v1/projects/{project['id']}/batches", headers=owner["headers"]).get_json()
    assert [(b["kind"], b["processed"], b["total"]) for b in listed] == [("tiles", 1, 1), ("archive", 1, 1)]


def test_another_owners_project_takes_no_upload(client, owner, session_maker):
    """Uploading to a project of another owner is refused as not found."""
    from microtasks.accounts import create_owner

    with session_maker() as session:
        other, key = create_owner(session, "Other")
        session.commit()
    project = new_project(client, owner)
    reply = client.post(f"/api/v1/projects/{project['id']}/batches", headers={"X-API-Key": key},
                        data={"file": (io.BytesIO(make_zip({"a.png": png_bytes()})), "b.zip")},
                        content_type="multipart/form-data")
    assert reply.status_code == 404
    with session_maker() as session:
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
        assert session.get(Project, project["id"]) is not None


def test_the_import_command_tiles_a_single_image(client, owner, session_maker, tmp_path):
    """``microtasks import`` with one image and --tile-size/--overlap makes a tiles batch of that geometry."""
    from click.testing import CliRunner

    from web.cli import cli

    project = new_project(client, owner, MARKING)
    image = tmp_path / "crater-field.png"
    image.write_bytes(gradient_png(700, 500))
    result = CliRunner().invoke(cli, ["import", project["slug"], str(image), "--tile-size", "256", "--overlap", "32"])
    assert result.exit_code == 0, result.output
    assert f"Imported {len(tile_boxes(700, 500, 256, 32))} units" in result.output
    stored = units(session_maker, project)
    assert stored[0].external_id == "crater-field-tile-0" and (stored[0].width, stored[0].height) == (256, 256)
    with session_maker() as session:
        batch = session.scalars(select(Batch)).one()
        assert (batch.kind.value, batch.options["tile_size"], batch.processed) == ("tiles", 256, len(stored))
