"""Importing a batch of units: a ZIP archive (or a folder) of images with an optional manifest.

The manifest is ``manifest.csv``, ``manifest.json`` or ``manifest.jsonl`` at the top of
the archive. Each entry names an image with ``file`` and may give a ``name`` (the
unit's id for the owner; the file name by default); every other field is kept as the
unit's metadata. Without a manifest, every image in the archive becomes a unit.

Every image is checked with Pillow (allowed formats only, a pixel limit against
decompression bombs, ``verify``), turned upright by its EXIF orientation and saved
again without EXIF, so no photo's GPS position ever reaches a volunteer. Files are
stored content-addressed (``<sha256>.<ext>``). A broken entry is reported by name
and reason while the rest imports.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import posixpath
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy.orm import Session

from microtasks.errors import ValidationError
from microtasks.models import Batch, Project, Unit
from microtasks.tasktypes import spec_for, validate_answer

#: Formats a unit's image may have, and the extension it is stored under.
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
#: Larger images are refused as likely decompression bombs.
MAX_PIXELS = 100_000_000
#: Archive limits against ZIP bombs.
MAX_ENTRY_BYTES = 100 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_RATIO = 200
MANIFEST_NAMES = ("manifest.csv", "manifest.json", "manifest.jsonl")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class ImportReport:
    imported: list[Unit] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append({"name": name, "reason": reason})


@dataclass(frozen=True)
class StoredImage:
    media: str
    width: int
    height: int


class Source:
    """The files of an upload: a ZIP archive or a folder, read by relative POSIX path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        if path.is_dir():
            self.names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
            return
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise ValidationError(f"{path.name}: not a readable ZIP archive ({error}).", field="file") from None
        infos = [info for info in self._zip.infolist() if not info.is_dir()]
        total = sum(info.file_size for info in infos)
        if total > MAX_TOTAL_BYTES:
            raise ValidationError(f"{path.name}: the archive would unpack to {total} bytes, more than the "
                                  f"{MAX_TOTAL_BYTES} allowed.", field="file")
        self.names = sorted(info.filename for info in infos)

    def read(self, name: str) -> bytes:
        if self._zip is None:
            return (self.path / name).read_bytes()
        info = self._zip.getinfo(name)
        if info.file_size > MAX_ENTRY_BYTES:
            raise ValueError(f"larger than {MAX_ENTRY_BYTES} bytes unpacked")
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 1_000_000:
            raise ValueError("compressed suspiciously well (a ZIP bomb?)")
        with self._zip.open(info) as handle:
            data = handle.read(MAX_ENTRY_BYTES + 1)
        if len(data) > MAX_ENTRY_BYTES:
            raise ValueError(f"larger than {MAX_ENTRY_BYTES} bytes unpacked")
        return data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def safe_name(name: str) -> str | None:
    """The normalised relative path, or None when it would escape the archive."""
    normal = posixpath.normpath(name.replace("\\", "/"))
    if normal.startswith(("/", "../")) or normal == ".." or ":" in normal.split("/")[0]:
        return None
    return normal


def read_manifest(name: str, data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Entries of a manifest with the line they came from; a malformed manifest raises naming the line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationError(f"{name}: not UTF-8 text (byte {error.start}).", field="manifest") from None
    entries: list[tuple[int, dict[str, Any]]] = []
    if name.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "file" not in reader.fieldnames:
            raise ValidationError(f"{name}, line 1: the header needs a 'file' column.", field="manifest")
        try:
            for row in reader:
                if None in row:
                    raise ValidationError(f"{name}, line {reader.line_num}: more cells than header columns.",
                                          field="manifest")
                entries.append((reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}))
        except csv.Error as error:
            raise ValidationError(f"{name}, line {reader.line_num}: {error}.", field="manifest") from None
    elif name.endswith(".jsonl"):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                entries.append((number, _json_entry(name, number, line)))
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValidationError(f"{name}, line {error.lineno}: {error.msg}.", field="manifest") from None
        items = document.get("units") if isinstance(document, dict) else document
        if not isinstance(items, list):
            raise ValidationError(f"{name}: expected a list of entries (or an object with 'units').",
                                  field="manifest")
        for number, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise ValidationError(f"{name}, entry {number}: each entry must be an object.", field="manifest")
            entries.append((number, item))
    return entries


def _json_entry(name: str, number: int, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValidationError(f"{name}, line {number}: {error.msg}.", field="manifest") from None
    if not isinstance(item, dict):
        raise ValidationError(f"{name}, line {number}: each line must be a JSON object.", field="manifest")
    return item


def store_image(data: bytes, media_dir: Path) -> StoredImage:
    """Check an image, make it upright, drop its metadata and store it by content hash."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                kind = probe.format
                if kind not in FORMATS:
                    raise ValueError(f"{kind or 'unknown'} images are not accepted (use JPEG, PNG or WebP)")
                if probe.width * probe.height > MAX_PIXELS:
                    raise ValueError(f"{probe.width}x{probe.height} pixels is over the {MAX_PIXELS} limit")
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError("not an image Pillow can read safely") from None
        except (OSError, SyntaxError) as error:
            raise ValueError(f"broken image ({error})") from None
    if upright.mode not in ("RGB", "RGBA", "L", "LA"):
        upright = upright.convert("RGBA" if "A" in upright.getbands() else "RGB")
    out = io.BytesIO()
    if kind == "JPEG":
        upright.convert("RGB" if upright.mode not in ("RGB", "L") else upright.mode).save(out, "JPEG", quality=90)
    else:
        upright.save(out, kind)
    stored = out.getvalue()
    media = f"{hashlib.sha256(stored).hexdigest()}.{FORMATS[kind]}"
    target = media_dir / media
    if not target.exists():
        media_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(stored)
        partial.replace(target)
    return StoredImage(media=media, width=upright.width, height=upright.height)


def parse_gold(project: Project, known: Any, image: StoredImage) -> dict[str, Any]:
    """A manifest's ``gold`` value as a checked answer payload.

    Tagging: the label (several separated by ``;`` for multi-label projects). Marking: a
    JSON list of marks such as ``[{"x": 10, "y": 20, "r": 5}]`` (``[]`` when nothing is there).
    Any task type also takes the answer payload itself, as JSON.
    """
    spec = spec_for(project, image.width, image.height)
    if isinstance(known, str):
        text = known.strip()
        if text.startswith(("{", "[")):
            try:
                known = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValidationError(f"not valid JSON ({error.msg})", field="gold") from None
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
    for line, entry in read_manifest(manifest, source.read(names[manifest])):
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


def import_batch(session: Session, project: Project, batch: Batch, path: Path, media_dir: Path) -> ImportReport:
    """Create the units of ``batch`` from the archive or folder at ``path``.

    Raises :class:`ValidationError` when the upload as a whole is unusable (not a ZIP,
    a malformed manifest); otherwise returns what was imported and what was not.
    Nothing is committed here: the caller commits the whole batch at once.
    """
    source = Source(path)
    report = ImportReport()
    try:
        for name, unit_name, metadata in _entries(source, report):
            known = metadata.pop("gold", None)
            try:
                stored = store_image(source.read(name), media_dir)
                gold = None if known in (None, "") else parse_gold(project, known, stored)
            except (ValueError, KeyError) as error:
                report.reject(name, str(error))
                continue
            except ValidationError as error:
                report.reject(name, f"gold answer: {error.message}")
                continue
            unit = Unit(project_id=project.id, batch_id=batch.id, external_id=unit_name[:255], data=metadata,
                        media=stored.media, width=stored.width, height=stored.height, gold=gold)
            session.add(unit)
            report.imported.append(unit)
    finally:
        source.close()
    session.flush()
    batch.imported = len(report.imported)
    batch.rejected = report.rejected
    return report
