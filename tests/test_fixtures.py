"""The demo fixtures: generated archives in the import format, their truth, and simulated volunteers."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fixtures.demo import (
    CRATER_PROJECT,
    TAGGING_PROJECT,
    make_crater_archive,
    make_tagging_archive,
    simulate_answer,
)
from microtasks.importing import read_manifest, store_image
from microtasks.tasktypes import TaskSpec, validate_answer

TAGGING_SIZE = 480
CRATER_SIZE = 512


@pytest.fixture(scope="module")
def tagging(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("fixtures") / "shapes.zip"
    return path, make_tagging_archive(path)


@pytest.fixture(scope="module")
def craters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict[str, float]]]]:
    path = tmp_path_factory.mktemp("fixtures") / "craters.zip"
    return path, make_crater_archive(path)


def spec_for(settings: dict[str, Any], width: int, height: int) -> TaskSpec:
    return TaskSpec(task_type=settings["task_type"], labels=tuple(settings.get("labels", ())),
                    multi_select=bool(settings.get("multi_select", False)),
                    marking_tool=settings.get("marking_tool"), width=width, height=height)


def manifest_of(path: Path) -> list[dict[str, Any]]:
    with zipfile.ZipFile(path) as archive:
        return [entry for _, entry in read_manifest("manifest.csv", archive.read("manifest.csv"))]


def images_of(path: Path) -> dict[str, Image.Image]:
    with zipfile.ZipFile(path) as archive:
        images = {}
        for name in archive.namelist():
            if name.endswith((".png", ".jpg")):
                with Image.open(io.BytesIO(archive.read(name))) as image:
                    image.load()
                    images[name] = image
        return images


@pytest.mark.parametrize("which, size, count, kind", [("tagging", TAGGING_SIZE, 24, "JPEG"),
                                                      ("craters", CRATER_SIZE, 8, "PNG")])
def test_archive_images_open_at_stated_size(request: pytest.FixtureRequest, which: str, size: int,
                                            count: int, kind: str) -> None:
    """Each archive is a ZIP of the stated number of images, all readable by Pillow at the stated size."""
    path, _ = request.getfixturevalue(which)
    images = images_of(path)
    assert len(images) == count
    assert all(image.format == kind and image.size == (size, size) for image in images.values())


def test_crater_tiles_are_greyscale_at_any_size(tmp_path: Path) -> None:
    """Crater tiles are greyscale PNGs of the requested size."""
    path = tmp_path / "small.zip"
    make_crater_archive(path, n=2, size=200)
    assert {(image.mode, image.size) for image in images_of(path).values()} == {("L", (200, 200))}


@pytest.mark.parametrize("which, column", [("tagging", "colour"), ("craters", "sun_elevation")])
def test_manifest_lists_every_image(request: pytest.FixtureRequest, which: str, column: str) -> None:
    """manifest.csv names every image of the archive exactly once, with a name and a metadata column."""
    path, _ = request.getfixturevalue(which)
    entries = manifest_of(path)
    assert sorted(entry["file"] for entry in entries) == sorted(images_of(path))
    assert all(entry.get("name") and entry.get(column) for entry in entries)


@pytest.mark.parametrize("which", ["tagging", "craters"])
def test_truth_keys_equal_manifest_names(request: pytest.FixtureRequest, which: str) -> None:
    """The truth is keyed by the manifest's unit names, in manifest order."""
    path, truth = request.getfixturevalue(which)
    assert list(truth) == [entry["name"] for entry in manifest_of(path)]


def test_tagging_truth_is_balanced(tagging: tuple[Path, dict[str, str]]) -> None:
    """Every tagging label is the truth equally often."""
    _, truth = tagging
    counts = {label: list(truth.values()).count(label) for label in TAGGING_PROJECT["labels"]}
    assert set(counts.values()) == {24 // len(TAGGING_PROJECT["labels"])}


def test_craters_are_in_spec(craters: tuple[Path, dict[str, list[dict[str, float]]]]) -> None:
    """Each tile has 3-12 craters of radius 8-60 px, centred inside the tile, barely overlapping."""
    _, truth = craters
    for marks in truth.values():
        assert 3 <= len(marks) <= 12
        for mark in marks:
            assert 8 <= mark["r"] <= 60
            assert 0 < mark["x"] < CRATER_SIZE and 0 < mark["y"] < CRATER_SIZE
        for i, a in enumerate(marks):
            for b in marks[i + 1:]:
                assert math.hypot(a["x"] - b["x"], a["y"] - b["y"]) >= 0.85 * (a["r"] + b["r"])


def test_images_pass_the_importers_checks(tmp_path: Path) -> None:
    """The importer accepts every generated image and keeps its size."""
    path = tmp_path / "both.zip"
    make_crater_archive(path, n=2, size=256)
    make_tagging_archive(tmp_path / "shapes.zip", n=2)
    for archive, size in ((path, 256), (tmp_path / "shapes.zip", TAGGING_SIZE)):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                if name.endswith((".png", ".jpg")):
                    stored = store_image(zipped.read(name), tmp_path / "media")
                    assert (stored.width, stored.height) == (size, size)


@pytest.mark.parametrize("skill", [0.0, 0.5, 0.85, 1.0])
def test_simulated_tagging_answers_validate(tagging: tuple[Path, dict[str, str]], skill: float) -> None:
    """Simulated tagging answers of any skill are valid, single- and multi-select."""
    _, truth = tagging
    rng = np.random.default_rng(1)
    multi = {**TAGGING_PROJECT, "multi_select": True}
    for label in truth.values():
        for project, true in ((TAGGING_PROJECT, label), (multi, [label])):
            spec = spec_for(project, TAGGING_SIZE, TAGGING_SIZE)
            answer = simulate_answer(project, true, rng, width=TAGGING_SIZE, height=TAGGING_SIZE, skill=skill)
            assert validate_answer(spec, answer)


@pytest.mark.parametrize("skill", [0.0, 0.5, 0.85, 1.0])
def test_simulated_marking_answers_validate(craters: tuple[Path, dict[str, list[dict[str, float]]]],
                                            skill: float) -> None:
    """Simulated circle and point answers of any skill are valid, with marks rounded to 0.1 px."""
    _, truth = craters
    rng = np.random.default_rng(2)
    points = {**CRATER_PROJECT, "marking_tool": "point"}
    for _ in range(20):
        for marks in truth.values():
            for project in (CRATER_PROJECT, points):
                spec = spec_for(project, CRATER_SIZE, CRATER_SIZE)
                answer = simulate_answer(project, marks, rng, width=CRATER_SIZE, height=CRATER_SIZE, skill=skill)
                assert validate_answer(spec, answer) == answer
                assert all(round(v, 1) == v for mark in answer["marks"] for v in mark.values())


def test_marks_near_the_edge_stay_inside() -> None:
    """Jittered marks on a crater at the image corner are clamped inside the image."""
    rng = np.random.default_rng(3)
    corner = [{"x": 0.0, "y": 100.0, "r": 60.0}]
    spec = spec_for(CRATER_PROJECT, 100, 100)
    for _ in range(200):
        validate_answer(spec, simulate_answer(CRATER_PROJECT, corner, rng, width=100, height=100, skill=0.3))


def test_perfect_tagger_always_gives_the_truth(tagging: tuple[Path, dict[str, str]]) -> None:
    """A volunteer of skill 1.0 always tags the true label."""
    _, truth = tagging
    rng = np.random.default_rng(4)
    for _ in range(10):
        for label in truth.values():
            answer = simulate_answer(TAGGING_PROJECT, label, rng, width=TAGGING_SIZE, height=TAGGING_SIZE, skill=1.0)
            assert answer == {"label": label}


def test_perfect_marker_marks_every_crater_closely(craters: tuple[Path, dict[str, list[dict[str, float]]]]) -> None:
    """A volunteer of skill 1.0 marks each crater once, within a quarter radius of its centre and size."""
    _, truth = craters
    rng = np.random.default_rng(5)
    for marks in truth.values():
        answer = simulate_answer(CRATER_PROJECT, marks, rng, width=CRATER_SIZE, height=CRATER_SIZE, skill=1.0)
        assert len(answer["marks"]) == len(marks)
        for true, mark in zip(marks, answer["marks"]):
            assert math.hypot(mark["x"] - true["x"], mark["y"] - true["y"]) <= 0.25 * true["r"] + 2
            assert abs(mark["r"] - true["r"]) <= 0.25 * true["r"] + 2


def test_small_craters_are_missed_more_often() -> None:
    """Simulated volunteers find large craters more often than small ones, and near their skill overall."""
    rng = np.random.default_rng(6)
    small, large = {"x": 100.0, "y": 100.0, "r": 8.0}, {"x": 300.0, "y": 300.0, "r": 50.0}
    found = {8.0: 0, 50.0: 0}
    for _ in range(2000):
        answer = simulate_answer(CRATER_PROJECT, [small, large], rng, width=400, height=400, skill=0.85)
        for mark in answer["marks"]:
            for true in (small, large):
                if math.hypot(mark["x"] - true["x"], mark["y"] - true["y"]) < true["r"]:
                    found[true["r"]] += 1
    assert 0.6 < found[8.0] / 2000 < found[50.0] / 2000 < 1.0


def test_same_seed_gives_identical_archives(tmp_path: Path) -> None:
    """The same seed gives byte-identical archives and equal truth; another seed does not."""
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        shapes, moon = tmp_path / f"{name}-shapes.zip", tmp_path / f"{name}-moon.zip"
        truth = (make_tagging_archive(shapes, n=4, seed=seed), make_crater_archive(moon, n=2, seed=seed, size=128))
        runs.append((truth, shapes.read_bytes(), moon.read_bytes()))
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1] and runs[0][2] != runs[2][2]
