"""Ingest benchmark (issue 6): batch import of 12-megapixel photos, and tiling of one very large image.

In one run it
1. generates ``--images`` 4000 x 3000 JPEGs with photo-like content (smooth fields, a
   gradient, sensor-like noise) and EXIF with an orientation (every fourth one is a
   portrait taken sideways) and a GPS position, zipped as a phone would upload them;
2. measures the ceiling: how fast this machine merely decodes those files at phone size
   (Pillow's draft mode, ``im.draft("RGB", (1024, 1024)); im.load()``), one thread;
3. runs the real import (:func:`microtasks.importing.import_batch`, what the worker job
   calls) into a fresh SQLite database and media folder, and commits: check, upright,
   strip EXIF, phone copy and thumbnail as WebP, duplicate check, units; one thread.
   Decode and import alternate in chunks of ten photos (each chunk one batch), twice over,
   so that both meet the same load on a shared machine; then every chunk is imported once
   more into new projects with the files already stored (headers only);
4. cuts one ``--side`` x ``--side`` JPEG into ``--tile-size`` tiles overlapping by
   ``--overlap`` (:func:`microtasks.importing.import_tiles`), and times it.

It prints Markdown tables and the ratios to the targets (ingest at least half the decode
rate; tiling a 10,000 x 10,000 image in under 10 s). Needs nothing but the project's
own dependencies; everything is written to a temporary folder and removed.

    python benchmarks/ingest.py                      # 40 images, a 10,000 px square to tile
    python benchmarks/ingest.py --images 10 --side 4000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, features

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from microtasks import importing  # noqa: E402
from microtasks.accounts import create_owner  # noqa: E402
from microtasks.db import session_factory, upgrade  # noqa: E402
from microtasks.models import Batch, BatchKind  # noqa: E402
from microtasks.projects import create_project  # noqa: E402

#: Photos per chunk: decode and ingest alternate chunk by chunk.
CHUNK = 10
RUNS = (1, 2)
PROJECT = {"name": "Bench", "task_type": "tagging", "labels": ["yes", "no"]}
GPS = {1: "N", 2: (52.0, 22.0, 3.5), 3: "E", 4: (4.0, 53.0, 1.2), 5: 0, 6: 12.0}


def photo_pixels(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Photo-like content: two smooth random fields (large and medium detail), a gradient and noise."""
    def field(cells_x: int, cells_y: int) -> np.ndarray:
        small = rng.integers(0, 256, size=(cells_y, cells_x, 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)

    out = field(8, 6) // 2 + field(80, 60) // 3
    out += (np.linspace(0, 50, width, dtype=np.int16)[None, :, None] + np.linspace(0, 30, height, dtype=np.int16)
            [:, None, None])
    out += rng.integers(-9, 10, size=out.shape, dtype=np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_photo(seed: int, width: int = 4000, height: int = 3000, orientation: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "BenchPhone", "Model 12", orientation
    exif.get_ifd(0x8825).update(GPS)
    buffer = io.BytesIO()
    Image.fromarray(photo_pixels(rng, width, height)).save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def make_large(seed: int, side: int) -> bytes:
    """A ``side`` x ``side`` JPEG built in bands of rows (a whole int16 array would need 6 bytes a pixel)."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    band = 1000
    for top in range(0, side, band):
        rows = min(band, side - top)
        pixels[top:top + rows] = photo_pixels(rng, side, rows)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def decode_pass(photos: list[bytes]) -> float:
    """Seconds to decode every photo at phone size: the ceiling of any import."""
    start = time.perf_counter()
    for data in photos:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (1024, 1024))
            image.load()
    return time.perf_counter() - start


def new_batch(sessions, name: str, kind: BatchKind = BatchKind.archive):  # type: ignore[no-untyped-def]
    session = sessions()
    owner, _ = create_owner(session, f"bench-{name}")
    project = create_project(session, owner, {**PROJECT, "name": f"Bench {name}"})
    batch = Batch(project_id=project.id, name=name, kind=kind)
    session.add(batch)
    session.commit()
    return session, project, batch


def ingest_pass(sessions, archive: Path, media: Path, name: str) -> tuple[float, int, int]:  # type: ignore
    """Seconds for the real import of the archive, committed; and units imported, files rejected."""
    session, project, batch = new_batch(sessions, name)
    try:
        start = time.perf_counter()
        report = importing.import_batch(session, project, batch, archive, media)
        session.commit()
        return time.perf_counter() - start, len(report.imported), len(report.rejected)
    finally:
        session.close()


def stages(photos: list[bytes]) -> dict[str, float]:
    """Median milliseconds of each step of one photo's import, for the breakdown table."""
    times: dict[str, list[float]] = {}

    def timed(label: str, step):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        value = step()
        times.setdefault(label, []).append((time.perf_counter() - start) * 1000)
        return value

    for data in photos[:10]:
        timed("sha256 of the source bytes", lambda: hashlib.sha256(data).hexdigest())
        image = timed("open + verify (headers only)", lambda: importing._open(data, importing.MAX_PIXELS))
        decoded, orientation = timed("decode at 1/2 scale (draft)", lambda: importing._decode(image, 1024))
        small = timed("scale to phone size (1000-1024 px, box average)", lambda: importing._fit(decoded, importing.PHONE_SIZE))
        upright = timed("upright (EXIF orientation)", lambda: importing._upright(small, orientation))
        timed("WebP encode, phone copy (q80, method 0)",
              lambda: importing._webp(upright, importing.PHONE_WEBP, None))
        timed("thumbnail: resize + WebP encode", lambda: importing._webp(
            importing._fit(upright, importing.THUMB_SIZE), importing.THUMB_WEBP, None))
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40, help="12 MP photos in the batch (default 40).")
    parser.add_argument("--side", type=int, default=10_000, help="Side of the square image to tile (default 10000).")
    parser.add_argument("--tile-size", type=int, default=512, help="Tile side in pixels (default 512).")
    parser.add_argument("--overlap", type=int, default=64, help="Tile overlap in pixels (default 64).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the generated images.")
    args = parser.parse_args()

    print(f"# ingest benchmark: {args.images} photos of 4000x3000, tiling {args.side}x{args.side}; "
          f"{os.cpu_count()} CPUs, Pillow {Image.__version__}, libjpeg-turbo "
          f"{features.version('libjpeg_turbo')}, libwebp {features.version('webp')}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        folder = Path(tmp)
        database = f"sqlite:///{folder / 'bench.db'}"
        upgrade(database)
        sessions = session_factory(database)

        start = time.perf_counter()
        photos = [make_photo(args.seed * 100_000 + i, orientation=6 if i % 4 == 3 else 1) for i in range(args.images)]
        chunks = [photos[i:i + CHUNK] for i in range(0, len(photos), CHUNK)]
        archives = []
        for number, chunk in enumerate(chunks):
            archive = folder / f"photos-{number}.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:  # phones store JPEGs, not deflate
                for i, data in enumerate(chunk):
                    zipped.writestr(f"IMG_{number * CHUNK + i:04d}.jpg", data)
            archives.append(archive)
        megabytes = sum(map(len, photos)) / len(photos) / 1e6
        print(f"# generated in {time.perf_counter() - start:.1f} s; {megabytes:.1f} MB a photo", flush=True)

        # Decode and ingest alternate chunk by chunk, so both see the same load on a shared machine.
        decode = {run: 0.0 for run in RUNS}
        ingest = {run: 0.0 for run in RUNS}
        counts = {run: [0, 0] for run in RUNS}
        for run in RUNS:
            for number, (chunk, archive) in enumerate(zip(chunks, archives)):
                steps = ["decode", "ingest"] if (number + run) % 2 else ["ingest", "decode"]
                for step in steps:
                    if step == "decode":
                        decode[run] += decode_pass(chunk)
                    else:
                        seconds, imported, rejected = ingest_pass(sessions, archive, folder / f"media-{run}",
                                                                  f"run-{run}-{number}")
                        ingest[run] += seconds
                        counts[run][0] += imported
                        counts[run][1] += rejected
        stored = sum(ingest_pass(sessions, archive, folder / "media-1", f"stored-{number}")[0]
                     for number, archive in enumerate(archives))
        breakdown = stages(photos)
        del photos, chunks

        n = args.images
        print("\n| Step (12 MP JPEG, one thread; chunks of decode and ingest alternate) | images/s | ms per image |")
        print("|---|---|---|")
        for run in RUNS:
            print(f"| run {run}: decode at phone size (draft) | {n / decode[run]:.1f} | {decode[run] / n * 1000:.0f} |")
            print(f"| run {run}: ingest ({counts[run][0]} units, {counts[run][1]} rejected) | {n / ingest[run]:.1f} | "
                  f"{ingest[run] / n * 1000:.0f} |")
        print(f"| ingest again, files already stored (headers only) | {n / stored:.1f} | {stored / n * 1000:.1f} |")
        ceiling = n * len(RUNS) / sum(decode.values())
        rate = n * len(RUNS) / sum(ingest.values())
        per_run = ", ".join(f"{decode[run] / ingest[run]:.2f}" for run in RUNS)
        print(f"\nIngest / decode ceiling: {rate:.1f} / {ceiling:.1f} images/s = {rate / ceiling:.2f} "
              f"(runs: {per_run}; target >= 0.50: {'met' if rate / ceiling >= 0.5 else 'MISSED'})")

        print("\n| Step of one photo's import (median of 10) | ms |")
        print("|---|---|")
        for label, ms in breakdown.items():
            print(f"| {label} | {ms:.1f} |")
        print(f"| sum | {sum(breakdown.values()):.1f} |")

        large = folder / "large.jpg"
        start = time.perf_counter()
        large.write_bytes(make_large(args.seed + 1, args.side))
        generated = time.perf_counter() - start
        session, project, batch = new_batch(sessions, large.name, BatchKind.tiles)
        try:
            start = time.perf_counter()
            report = importing.import_tiles(session, project, batch, large, folder / "media-tiles",
                                            tile_size=args.tile_size, overlap=args.overlap)
            session.commit()
            tiling = time.perf_counter() - start
        finally:
            session.close()
        tiles = len(report.imported)
        print(f"\n| Tiling ({args.side}x{args.side} JPEG of {large.stat().st_size / 1e6:.0f} MB, generated in "
              f"{generated:.0f} s; {args.tile_size} px tiles, {args.overlap} px overlap) | value |")
        print("|---|---|")
        print(f"| tiles (units) | {tiles} |")
        print(f"| seconds, decode + upright + cut + WebP tiles and thumbnails + units committed | {tiling:.1f} |")
        print(f"| tiles/s | {tiles / tiling:.0f} |")
        print(f"\nTiling time / target: {tiling:.1f} s / 10 s = {tiling / 10:.2f} "
              f"(target < 1: {'met' if tiling < 10 else 'MISSED'})")


if __name__ == "__main__":
    main()
