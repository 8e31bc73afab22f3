"""Importing a batch of units: a ZIP archive (or a folder) of images, or one large image cut into tiles.

An archive's manifest is ``manifest.csv``, ``manifest.json`` or ``manifest.jsonl`` at its
top. Each entry names an image with ``file`` and may give a ``name`` (the unit's id for
the owner; the file name by default) and a ``gold`` answer; every other field is kept as
the unit's metadata. Without a manifest, every image in the archive becomes a unit.

Every image is checked with Pillow: JPEG, PNG and WebP only (recognised by content, not
by name), a pixel limit against decompression bombs, ``verify`` and a decode that fails
on truncated data. It is turned upright by its EXIF orientation and written again as
WebP without any metadata, so no photo's GPS position ever reaches a volunteer: a
phone-size copy (:data:`PHONE_SIZE` px on the long side; what volunteers see) and a
thumbnail (:data:`THUMB_SIZE` px). The original is never re-encoded, and a JPEG is never
decoded at full size: its decoder scales by 1/2, 1/4 or 1/8 on the fly (Pillow's draft
mode). A unit's ``width`` and ``height`` are those of the upright *original*, the
coordinates volunteers' marks are given in.

Files are content-addressed by the SHA-256 of the source bytes (``<sha256>.webp`` and
``<sha256>.thumb.webp``): an image whose copies are already stored is not decoded again.
A file whose bytes match another entry of the batch, or a unit already in the project,
is rejected as a duplicate. A broken entry is reported by name and reason while the rest
imports; the units themselves are only added to the session at the end, all at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import posixpath
import stat
import unicodedata
import uuid
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from PIL import Image, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.orm import Session

from microtasks.errors import ValidationError
from microtasks.models import Batch, BatchKind, BatchState, Project, Unit
from microtasks.tasktypes import spec_for, validate_answer
from microtasks.tiles import tile_boxes

#: Formats a unit's image may have (recognised by content).
FORMATS = ("JPEG", "PNG", "WEBP")
#: Larger images in an archive are refused as likely decompression bombs.
MAX_PIXELS = 100_000_000
#: The limit for the one large image of a tiles batch (it is decoded whole: about 3 bytes a pixel).
MAX_TILE_PIXELS = 400_000_000
#: Archive limits against ZIP bombs.
MAX_ENTRY_BYTES = 100 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_ENTRIES = 100_000
MAX_RATIO = 200
#: Compression methods an archive entry may use: the ones :mod:`zipfile` reads (not Deflate64, say).
ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
MANIFEST_NAMES = ("manifest.csv", "manifest.json", "manifest.jsonl")
#: A manifest lists at most as many entries as an archive may hold files.
MAX_MANIFEST_ENTRIES = MAX_ENTRIES
#: JSON in a manifest or a gold answer nests at most this deep (a deeper document is no unit's metadata).
MAX_JSON_DEPTH = 32
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
#: Long side of the copy volunteers see, and of the thumbnail.
PHONE_SIZE = 1024
THUMB_SIZE = 256
#: WebP settings: method 0 encodes about five times faster than the default (4) for files a few % larger.
PHONE_WEBP = {"quality": 80, "method": 0}
THUMB_WEBP = {"quality": 70, "method": 0}
#: Threads that encode the tiles of a large image.
TILE_WORKERS = min(4, os.cpu_count() or 1)
#: EXIF orientation -> the transpose that makes the image upright.
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}

#: ``progress(processed, total)``, called as entries (or tiles) are done.
Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    imported: list[Unit] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append({"name": name, "reason": reason})


@dataclass(frozen=True)
class StoredImage:
    """The stored copies of one source image, and the upright size of the original."""

    sha256: str
    media: str
    thumbnail: str
    width: int
    height: int


def media_names(sha: str) -> tuple[str, str]:
    """The file names of the phone-size copy and the thumbnail of the source with this SHA-256."""
    return f"{sha}.webp", f"{sha}.thumb.webp"


# --- Recognising images ---------------------------------------------------------------------------------------------

def image_format(head: bytes) -> str | None:
    """``JPEG``, ``PNG`` or ``WEBP`` when the first bytes of a file are one of those, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


_OTHER_FORMATS = ((b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"BM", "a BMP image"),
                  (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"),
                  (b"PK\x03\x04", "a ZIP archive"), (b"\x00\x00\x01\x00", "an ICO image"))


def _not_an_image(head: bytes) -> str:
    """Why bytes that are not JPEG, PNG or WebP were refused, naming what they look like."""
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            return f"{what}, not a JPEG, PNG or WebP image"
    if head[4:8] == b"ftyp":
        return "an HEIC/AVIF or video file, not a JPEG, PNG or WebP image (export it as JPEG)"
    text = head.lstrip(b"\xef\xbb\xbf\xff\xfe \t\r\n").lower()
    if text.startswith(b"<"):
        what = "SVG" if b"<svg" in text else "HTML" if b"<html" in text or b"<!doctype html" in text else "XML/HTML"
        return f"{what} text passed off as an image (only JPEG, PNG and WebP are accepted)"
    return "not a JPEG, PNG or WebP image"


#: How a ZIP archive starts: its first entry, the marker of a split archive, or the end record of an empty one.
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x07\x08", b"PK\x05\x06")
#: Bytes :func:`upload_kind` needs to tell what an upload is.
HEAD_BYTES = 512


def upload_kind(name: str, head: bytes) -> BatchKind:
    """What an upload is by its first :data:`HEAD_BYTES` bytes: one image to cut into tiles, or an archive.

    Anything else (an empty file, a document, another image format) raises
    :class:`ValidationError` naming what it looks like, before it is stored or queued.
    """
    if image_format(head) is not None:
        return BatchKind.tiles
    if head.startswith(ZIP_MAGIC):
        return BatchKind.archive
    what = "an empty file" if not head else _not_an_image(head)
    raise ValidationError(f"{name}: {what}; upload a ZIP archive of images, or one JPEG, PNG or WebP image.",
                          field="file")


@contextmanager
def _pixel_limit(limit: int) -> Iterator[None]:
    """Pillow refuses images over ``limit`` pixels while the block runs, before allocating them."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _open(data: bytes, limit: int) -> Image.Image:
    """Open (headers only) and verify an image; ValueError with a reason when it is not acceptable."""
    kind = image_format(data[:16])
    if kind is None:
        raise ValueError(_not_an_image(data[:512]))
    try:
        with _pixel_limit(limit):
            with Image.open(io.BytesIO(data), formats=[kind]) as probe:
                probe.verify()
            image = Image.open(io.BytesIO(data), formats=[kind])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"more than {limit:,} pixels (a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ValueError(f"starts like a {kind} image but Pillow cannot read it") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as error:
        raise ValueError(f"broken {kind} image ({error})") from None
    if image.width * image.height > limit:
        raise ValueError(f"{image.width}x{image.height} pixels is over the {limit:,}-pixel limit")
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):  # a malformed EXIF block: keep as is
        return 1
    return value if value in UPRIGHT else 1


def _decode(image: Image.Image, draft: int | None) -> tuple[Image.Image, int]:
    """Decode (a JPEG at the smallest DCT scale still ``draft`` px long); returns it with its EXIF orientation.

    Raises ValueError for truncated or corrupt data.
    """
    orientation = _orientation(image)
    kind = image.format
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # the main picture of an MPO or animated WebP
    try:
        if draft is not None and kind in ("JPEG", "MPO"):  # MPO: a phone's JPEG with extra pictures
            # The largest reduction keeping the *long* side at least ``draft`` (Pillow keeps both sides above
            # the size asked for, so ask for nothing on the short side).
            image.draft("RGB", (draft, 1) if image.width >= image.height else (1, draft))
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, MemoryError) as error:
        raise ValueError(f"broken {kind} image ({error})") from None
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return image, orientation


def _icc(image: Image.Image) -> bytes | None:
    """The colour profile, kept only when it describes RGB (a CMYK or grey profile would not fit the copy)."""
    return image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    return image.transpose(UPRIGHT[orientation]) if orientation in UPRIGHT else image


#: A copy may come out this much smaller than asked when that lets it be a whole-number reduction.
REDUCE_SLACK = 0.85


def _fit(image: Image.Image, side: int) -> Image.Image:
    """The image scaled down to about ``side`` px on its long side (never up), averaging whole pixels.

    When a whole-number reduction lands within ``REDUCE_SLACK`` of ``side`` (a 2000 px
    draft decode of a 12 MP photo gives 1000 px), :meth:`Image.reduce` does it: the
    same box average, about four times faster than a resize to an arbitrary size.
    """
    long_side = max(image.size)
    if long_side <= side:
        return image
    factor = -(-long_side // side)
    if long_side / factor >= REDUCE_SLACK * side:
        return image.reduce(factor)
    scale = side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX, reducing_gap=1.0)


def _webp(image: Image.Image, settings: dict[str, int], icc: bytes | None) -> bytes:
    """WebP bytes carrying no metadata but the colour profile (no EXIF, no XMP)."""
    out = io.BytesIO()
    image.save(out, "WEBP", icc_profile=icc or b"", **settings)
    return out.getvalue()


def _write(target: Path, data: bytes) -> None:
    """Write a content-addressed file once, atomically (a crash never leaves half a file under the name)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    partial.write_bytes(data)
    os.replace(partial, target)


def store_image(data: bytes, media_dir: Path, sha: str | None = None, max_pixels: int = MAX_PIXELS) -> StoredImage:
    """Check an image and store its phone-size copy and thumbnail, named by the SHA-256 of ``data``.

    When both copies are already stored, only the header is read (for the upright size).
    Raises ValueError with the reason when the image is not acceptable.
    """
    sha = sha or hashlib.sha256(data).hexdigest()
    media, thumbnail = media_names(sha)
    image = _open(data, max_pixels)
    with image:
        width, height = image.size
        if (media_dir / media).exists() and (media_dir / thumbnail).exists():
            orientation = _orientation(image)
        else:
            icc = _icc(image)
            decoded, orientation = _decode(image, PHONE_SIZE)
            phone = _upright(_fit(decoded, PHONE_SIZE), orientation)
            _write(media_dir / media, _webp(phone, PHONE_WEBP, icc))
            _write(media_dir / thumbnail, _webp(_fit(phone, THUMB_SIZE), THUMB_WEBP, icc))
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return StoredImage(sha256=sha, media=media, thumbnail=thumbnail, width=width, height=height)


# --- Archives -------------------------------------------------------------------------------------------------------

def _zip_name(info: zipfile.ZipInfo) -> str:
    """An entry's name as its author meant it: UTF-8 names stored without the UTF-8 flag are repaired, then NFC."""
    name = info.filename
    if not info.flag_bits & 0x800:
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return unicodedata.normalize("NFC", name)


class Source:
    """The files of an upload: a ZIP archive or a folder, read by relative POSIX path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._infos: dict[str, zipfile.ZipInfo] = {}
        if path.is_dir():
            self.names = sorted(unicodedata.normalize("NFC", p.relative_to(path).as_posix())
                                for p in path.rglob("*") if p.is_file())
            self._files = {unicodedata.normalize("NFC", p.relative_to(path).as_posix()): p
                           for p in path.rglob("*") if p.is_file()}
            return
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise ValidationError(f"{path.name}: not a readable ZIP archive ({error}); upload a ZIP of images or "
                                  f"one JPEG, PNG or WebP image.", field="file") from None
        infos = [info for info in self._zip.infolist() if not info.is_dir()]
        if len(infos) > MAX_ENTRIES:
            self.close()
            raise ValidationError(f"{path.name}: {len(infos)} files, more than the {MAX_ENTRIES} allowed.",
                                  field="file")
        total = sum(info.file_size for info in infos)
        if total > MAX_TOTAL_BYTES:
            self.close()
            raise ValidationError(f"{path.name}: the archive would unpack to {total} bytes, more than the "
                                  f"{MAX_TOTAL_BYTES} allowed.", field="file")
        self._infos = {_zip_name(info): info for info in infos}
        self.names = sorted(self._infos)

    def read(self, name: str) -> bytes:
        """The bytes of one file; ValueError with the reason when it cannot be read safely."""
        if self._zip is None:
            return self._files[name].read_bytes()
        info = self._infos[name]
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError("a symbolic link, not a file (links are not followed)")
        if info.file_size > MAX_ENTRY_BYTES:
            raise ValueError(f"larger than {MAX_ENTRY_BYTES} bytes unpacked")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 1_000_000:
            raise ValueError(f"compressed {info.file_size // info.compress_size}:1, suspiciously well (a ZIP bomb?)")
        if info.compress_type not in ZIP_METHODS:
            raise ValueError(f"unsupported compression (method {info.compress_type})")
        try:
            with self._zip.open(info) as handle:
                data = handle.read(MAX_ENTRY_BYTES + 1)
        except RuntimeError as error:  # encrypted
            raise ValueError(f"cannot be read ({error})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise ValueError(f"damaged in the archive ({error})") from None
        if len(data) > MAX_ENTRY_BYTES:
            raise ValueError(f"larger than {MAX_ENTRY_BYTES} bytes unpacked")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def safe_name(name: str) -> str | None:
    """The normalised relative path, or None when it would escape the archive."""
    normal = posixpath.normpath(unicodedata.normalize("NFC", name).replace("\\", "/"))
    if normal.startswith(("/", "../")) or normal == ".." or ":" in normal.split("/")[0]:
        return None
    return normal


def read_manifest(name: str, data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Entries of a manifest with the line they came from; a malformed manifest raises naming the line.

    Besides malformed CSV or JSON, a manifest is refused for a NUL character (no database
    stores one in text), JSON that :func:`load_json` refuses, and more than
    :data:`MAX_MANIFEST_ENTRIES` entries (the reading stops there).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ValidationError(f"{name}, line {line}: not UTF-8 text (byte {error.start}); save the manifest "
                              f"as UTF-8.", field="manifest") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ValidationError(f"{name}, line {line}: a NUL character; a manifest is text.", field="manifest")
    entries = _ManifestEntries(name)
    if name.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            fieldnames = reader.fieldnames
            if not fieldnames or "file" not in fieldnames:
                raise ValidationError(f"{name}, line 1: the header needs a 'file' column.", field="manifest")
            for row in reader:
                if None in row:
                    raise ValidationError(f"{name}, line {reader.line_num}: more cells than header columns.",
                                          field="manifest")
                entries.add(reader.line_num, {k: v for k, v in row.items() if v not in (None, "")})
        except csv.Error as error:  # raised reading a line, before the reader counts it
            raise ValidationError(f"{name}, line {reader.line_num + 1}: {error}.", field="manifest") from None
    elif name.endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                entries.add(number, _json_entry(name, number, line))
    else:
        try:
            document = load_json(text)
        except json.JSONDecodeError as error:
            raise ValidationError(f"{name}, line {error.lineno}: {error.msg}.", field="manifest") from None
        except ValueError as error:
            raise ValidationError(f"{name}: {error}.", field="manifest") from None
        items = document.get("units") if isinstance(document, dict) else document
        if not isinstance(items, list):
            raise ValidationError(f"{name}: expected a list of entries (or an object with 'units').",
                                  field="manifest")
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise ValidationError(f"{name}, entry {number}: each entry must be an object.", field="manifest")
            entries.add(number, item)
    return entries


class _ManifestEntries(list[tuple[int, dict[str, Any]]]):
    """A manifest's entries as they are read: one past :data:`MAX_MANIFEST_ENTRIES` stops the reading."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def add(self, line: int, entry: dict[str, Any]) -> None:
        if len(self) == MAX_MANIFEST_ENTRIES:
            raise ValidationError(f"{self.name}: more than the {MAX_MANIFEST_ENTRIES} entries allowed; split the "
                                  f"upload into several batches.", field="manifest")
        self.append((line, entry))


def load_json(text: str | bytes) -> Any:
    """JSON as a database can store it and a response can carry it back; ValueError with the reason otherwise.

    Python's parser takes more than JSON: it is refused here too. No ``NaN`` or
    ``Infinity`` (PostgreSQL refuses them), no NUL character and no half of a
    surrogate pair in any text (no database stores them), and no nesting deeper than
    :data:`MAX_JSON_DEPTH` (a deep enough document exhausts the parser's stack).

    >>> load_json('{"site": "north", "depth": [1, 2]}')
    {'site': 'north', 'depth': [1, 2]}
    >>> load_json('[NaN]')
    Traceback (most recent call last):
    ...
    ValueError: NaN is not a number JSON allows
    """
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} deep") from None
    problem = json_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def json_problem(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored (see :func:`load_json`), or None when it can."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\0" in item:
                return "a NUL character in a text"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "half of a UTF-16 surrogate pair in a text"
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{item} is not a number JSON allows"
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                return f"nested more than {MAX_JSON_DEPTH} deep"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None


def _json_entry(name: str, number: int, line: str) -> dict[str, Any]:
    try:
        item = load_json(line)
    except json.JSONDecodeError as error:
        raise ValidationError(f"{name}, line {number}: {error.msg}.", field="manifest") from None
    except ValueError as error:
        raise ValidationError(f"{name}, line {number}: {error}.", field="manifest") from None
    if not isinstance(item, dict):
        raise ValidationError(f"{name}, line {number}: each line must be a JSON object.", field="manifest")
    return item


def parse_gold(project: Project, known: Any, image: StoredImage) -> dict[str, Any]:
    """A manifest's ``gold`` value as a checked answer payload.

    Tagging: the label (several separated by ``;`` for multi-label projects). Marking: a
    JSON list of marks such as ``[{"x": 10, "y": 20, "r": 5}]`` (``[]`` when nothing is there),
    in pixels of the original image. Any task type also takes the answer payload itself, as JSON.
    """
    spec = spec_for(project, image.width, image.height)
    if isinstance(known, str):
        text = known.strip()
        if text.startswith(("{", "[")):
            try:
                known = load_json(text)
            except json.JSONDecodeError as error:
                raise ValidationError(f"not valid JSON ({error.msg})", field="gold") from None
            except ValueError as error:
                raise ValidationError(f"not storable JSON ({error})", field="gold") from None
        elif project.task_type.value == "tagging":
            known = {"labels": [t.strip() for t in text.split(";") if t.strip()]} if project.multi_select \
                else {"label": text}
    if isinstance(known, list):
        known = {"marks": known} if project.task_type.value == "marking" else {"labels": known}
    return validate_answer(spec, known)


def _entries(source: Source, report: ImportReport) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(file, unit name, metadata)`` for each entry to import; unusable ones go to the report."""
    names = {}
    for raw in source.names:
        clean = safe_name(raw)
        if clean is None:
            report.reject(raw, "path escapes the archive")
        else:
            names[clean] = raw
    manifest = next((m for m in MANIFEST_NAMES if m in names), None)
    if manifest is None:
        for clean in sorted(names):
            if clean.startswith(("__MACOSX/", ".")) or "/." in clean:
                continue
            if Path(clean).suffix.lower() in IMAGE_SUFFIXES:
                yield names[clean], Path(clean).name, {}
            else:
                report.reject(clean, "not an image file (expected .jpg, .png or .webp)")
        return
    try:
        manifest_data = source.read(names[manifest])
    except ValueError as error:
        raise ValidationError(f"{manifest}: {error}.", field="manifest") from None
    for line, entry in read_manifest(manifest, manifest_data):
        file = entry.get("file")
        where = f"{manifest}, line {line}"
        if not isinstance(file, str) or not file:
            report.reject(where, "no 'file' given")
            continue
        clean = safe_name(file)
        if clean is None or clean not in names:
            report.reject(file, f"{where}: no such file in the upload")
            continue
        metadata = {k: v for k, v in entry.items() if k not in ("file", "name")}
        yield names[clean], str(entry.get("name") or Path(clean).name), metadata


def _known_media(session: Session, project_id: int) -> dict[str, str]:
    """Media file name -> unit name, for the units already in the project (to detect duplicates)."""
    rows = session.execute(select(Unit.media, Unit.external_id).where(Unit.project_id == project_id,
                                                                      Unit.media.is_not(None)))
    known: dict[str, str] = {}
    for media, name in rows:
        known.setdefault(media, name)
    return known


def _finish(session: Session, batch: Batch, report: ImportReport, total: int) -> ImportReport:
    """Add every unit of the batch to the session at once; the caller commits them together."""
    session.add_all(report.imported)
    session.flush()
    batch.imported = len(report.imported)
    batch.rejected = report.rejected
    batch.total = batch.processed = total
    return report


def import_batch(session: Session, project: Project, batch: Batch, path: Path, media_dir: Path,
                 progress: Progress | None = None) -> ImportReport:
    """Create the units of ``batch`` from the archive or folder at ``path``.

    Raises :class:`ValidationError` when the upload as a whole is unusable (not a ZIP,
    an empty one, a malformed manifest); otherwise returns what was imported and what was not.
    ``progress(processed, total)`` is called before the first entry and after each one;
    no unit is added to the session before the last. Nothing is committed here: the
    caller commits the whole batch at once.
    """
    source = Source(path)
    report = ImportReport()
    try:
        if not source.names:
            raise ValidationError(f"{batch.name or path.name}: no files in it to import.", field="file")
        entries = list(_entries(source, report))
        total = len(entries)
        if progress:
            progress(0, total)
        known = _known_media(session, project.id)
        for done, (name, unit_name, metadata) in enumerate(entries, start=1):
            unit = _import_entry(source, project, batch, name, unit_name[:255], metadata, known, media_dir, report)
            if unit is not None:
                report.imported.append(unit)
                known[unit.media or ""] = unit.external_id
            if progress:
                progress(done, total)
    finally:
        source.close()
    return _finish(session, batch, report, total)


def _import_entry(source: Source, project: Project, batch: Batch, name: str, unit_name: str,
                  metadata: dict[str, Any], known: dict[str, str], media_dir: Path,
                  report: ImportReport) -> Unit | None:
    known_gold = metadata.pop("gold", None)
    try:
        data = source.read(name)
        sha = hashlib.sha256(data).hexdigest()
        media, _ = media_names(sha)
        if media in known:
            raise ValueError(f"duplicate of {known[media]}")
        stored = store_image(data, media_dir, sha)
        gold = None if known_gold in (None, "") else parse_gold(project, known_gold, stored)
    except ValueError as error:
        report.reject(name, str(error))
        return None
    except ValidationError as error:
        report.reject(name, f"gold answer: {error.message}")
        return None
    return Unit(project_id=project.id, batch_id=batch.id, external_id=unit_name, data=metadata,
                media=stored.media, thumbnail=stored.thumbnail, width=stored.width, height=stored.height, gold=gold)


# --- One large image cut into tiles ---------------------------------------------------------------------------------

def import_tiles(session: Session, project: Project, batch: Batch, path: Path, media_dir: Path,
                 tile_size: int = 512, overlap: int = 64, name: str | None = None,
                 progress: Progress | None = None, workers: int | None = None) -> ImportReport:
    """Cut the image at ``path`` into overlapping ``tile_size`` tiles, one unit each.

    The image (JPEG, PNG or WebP, up to :data:`MAX_TILE_PIXELS`) is turned upright by its
    EXIF orientation; each tile is stored as WebP (named by the SHA-256 of its bytes) with
    a thumbnail. A tile's unit is named ``<image stem>-tile-<n>`` and its ``data`` maps it
    into the whole image: ``image``, ``image_width``, ``image_height``, ``tile`` and the
    box ``x0``, ``y0`` (inclusive), ``x1``, ``y1`` (exclusive), as :func:`tile_boxes` gives.
    Tiles are encoded on ``workers`` threads (default :data:`TILE_WORKERS`).
    Raises :class:`ValidationError` when the image is unusable, or already tiled in this project.
    Nothing is committed here; the units are added to the session at the end, all at once.
    """
    name = name or batch.name or path.name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValidationError(f"{name}: cannot be read ({error.strerror}).", field="file") from None
    sha = hashlib.sha256(data).hexdigest()
    earlier = _tiled_before(session, project.id, batch.id, sha)
    if earlier is not None:
        raise ValidationError(f"{name}: duplicate of {earlier.name} (batch {earlier.id}), already cut into tiles "
                              f"in this project.", field="file")
    try:
        image = _open(data, MAX_TILE_PIXELS)
        icc = _icc(image)
        decoded, orientation = _decode(image, None)
    except ValueError as error:
        raise ValidationError(f"{name}: {error}.", field="file") from None
    del data, image
    upright = _upright(decoded, orientation)
    del decoded
    boxes = tile_boxes(upright.width, upright.height, tile_size, overlap)
    total = len(boxes)
    if progress:
        progress(0, total)
    stem = Path(name).stem
    report = ImportReport()
    rows = [(int(t), int(x0), int(y0), int(x1), int(y1)) for t, x0, y0, x1, y1 in
            boxes.itertuples(index=False, name=None)]
    # Tiles are independent and Pillow lets go of the GIL while it encodes: use the machine's cores.
    pool = ThreadPoolExecutor(max_workers=workers or TILE_WORKERS)
    try:
        stored = pool.map(lambda row: _store_tile(upright, row[1:], icc, media_dir), rows)
        for done, ((tile, x0, y0, x1, y1), (media, thumbnail)) in enumerate(zip(rows, stored), start=1):
            report.imported.append(Unit(
                project_id=project.id, batch_id=batch.id, external_id=f"{stem}-tile-{tile}"[:255],
                data={"image": name, "image_width": upright.width, "image_height": upright.height, "tile": tile,
                      "x0": x0, "y0": y0, "x1": x1, "y1": y1},
                media=media, thumbnail=thumbnail, width=x1 - x0, height=y1 - y0))
            if progress:
                progress(done, total)
    finally:
        pool.shutdown(cancel_futures=True)
    batch.options = {**(batch.options or {}), "tile_size": tile_size, "overlap": overlap, "sha256": sha}
    return _finish(session, batch, report, total)


def _store_tile(image: Image.Image, box: tuple[int, int, int, int], icc: bytes | None,
                media_dir: Path) -> tuple[str, str]:
    """Store one tile of ``image`` and its thumbnail, named by the SHA-256 of the tile's WebP bytes."""
    piece = image.crop(box)
    encoded = _webp(piece, PHONE_WEBP, icc)
    media, thumbnail = media_names(hashlib.sha256(encoded).hexdigest())
    _write(media_dir / media, encoded)
    if not (media_dir / thumbnail).exists():
        _write(media_dir / thumbnail, _webp(_fit(piece, THUMB_SIZE), THUMB_WEBP, icc))
    return media, thumbnail


def _tiled_before(session: Session, project_id: int, batch_id: int | None, sha: str) -> Batch | None:
    """An earlier, finished tiles batch of the project made from the same image bytes."""
    batches = session.scalars(select(Batch).where(Batch.project_id == project_id, Batch.kind == BatchKind.tiles,
                                                  Batch.state == BatchState.done, Batch.id != (batch_id or -1))
                              .order_by(Batch.id))
    return next((b for b in batches if (b.options or {}).get("sha256") == sha), None)
