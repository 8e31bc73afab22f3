"""Tile geometry: overlapping tiles cover the image, and per-tile consensus merges into one catalogue."""

from __future__ import annotations

import pandas as pd
import pytest

from microtasks.tiles import merge_tiles, split_catalogue, tile_boxes


def test_tiles_cover_the_image_with_the_overlap():
    """1000 px cut into 250 px tiles overlapping by 30 px: 5 x 5 tiles, the last ones on the edge."""
    boxes = tile_boxes(1000, 1000, size=250, overlap=30)
    assert sorted(set(boxes["x0"])) == [0, 220, 440, 660, 750]
    assert len(boxes) == 25 and (boxes["x1"] - boxes["x0"] == 250).all() and boxes["x1"].max() == 1000


def test_an_image_smaller_than_a_tile_is_one_tile():
    """A 100 x 80 image with 250 px tiles gives one tile of the image's size."""
    assert tile_boxes(100, 80).values.tolist() == [[0, 0, 0, 100, 80]]


def test_bad_tile_settings_are_refused():
    """An overlap as large as the tile is an error."""
    with pytest.raises(ValueError):
        tile_boxes(500, 500, size=100, overlap=100)


def test_a_crater_on_a_tile_border_merges_into_one():
    """A crater in the overlap of two tiles, found on both, appears once, from the tile it sits deeper in."""
    boxes = tile_boxes(470, 250, size=250, overlap=30)  # tiles at x 0-250 and 220-470
    truth = pd.DataFrame({"x": [240.0], "y": [100.0], "r": [8.0]})
    per_tile = split_catalogue(truth, boxes)
    assert per_tile["unit"].tolist() == [0, 1]
    per_tile["x"] += [0.4, -0.3]  # each tile's consensus is a little off
    merged = merge_tiles(per_tile, boxes)
    assert len(merged) == 1 and merged["tile"].tolist() == [1]  # 10 px from tile 0's edge, 20 from tile 1's


def test_distinct_craters_in_an_overlap_are_both_kept():
    """Two different craters close together in an overlap both survive the merge."""
    boxes = tile_boxes(470, 250, size=250, overlap=30)
    truth = pd.DataFrame({"x": [232.0, 240.0], "y": [100.0, 100.0], "r": [3.5, 3.5]})
    merged = merge_tiles(split_catalogue(truth, boxes), boxes)
    assert sorted(merged["x"].tolist()) == [232.0, 240.0]


def test_merging_nothing_gives_an_empty_catalogue():
    """No craters on any tile merge into an empty catalogue."""
    boxes = tile_boxes(500, 500)
    empty = pd.DataFrame({"unit": pd.Series(dtype=int), "x": [], "y": [], "r": []})
    assert merge_tiles(empty, boxes).empty
