"""Tile geometry: cut a large image into overlapping tiles and merge per-tile consensus into one catalogue.

A volunteer marks craters on a tile small enough for a phone screen. Tiles overlap so
that a crater on one tile's edge lies whole inside its neighbour. After consensus on
each tile, :func:`merge_tiles` maps the craters back to whole-image pixels and removes
the duplicates that the overlaps produce: when a crater is found in two tiles, the copy
whose centre is farther from its own tile's inner edges is kept (its marks were the
least cut off by the edge). Two craters are copies when they come from different tiles
and are compatible under the same scale-relative dissimilarity the clustering uses
(:func:`microtasks.consensus.craters.circle_dissimilarity`).

Example:
    >>> boxes = tile_boxes(400, 400, size=250, overlap=100)
    >>> boxes[["x0", "y0", "x1", "y1"]].values.tolist()
    [[0, 0, 250, 250], [150, 0, 400, 250], [0, 150, 250, 400], [150, 150, 400, 400]]
    >>> craters = pd.DataFrame({"unit": [0, 1], "x": [210.0, 60.5], "y": [100.0, 100.0],
    ...                         "r": [12.0, 12.0], "support": [5, 4], "confidence": [1.0, 0.8]})
    >>> merge_tiles(craters, boxes)[["x", "y", "r", "tile"]].values.tolist()
    [[210.5, 100.0, 12.0, 1.0]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from microtasks.consensus.craters import circle_dissimilarity

BOX_COLUMNS = ["tile", "x0", "y0", "x1", "y1"]


def _starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    starts.append(length - size)  # the last tile sits on the image's edge
    return starts


def tile_boxes(width: int, height: int, size: int = 250, overlap: int = 30) -> pd.DataFrame:
    """Boxes of overlapping ``size`` x ``size`` tiles covering a ``width`` x ``height`` image.

    Tiles step by ``size - overlap`` pixels, row by row; the last tile of a row or column
    is moved back to end on the image's edge (so it overlaps its neighbour by at least
    ``overlap``), and an image smaller than a tile gets one tile of the image's size.

    Returns:
        Columns ``tile`` (0, 1, ... row by row), ``x0``, ``y0`` (top-left corner, inclusive)
        and ``x1``, ``y1`` (bottom-right, exclusive), in image pixels.
    """
    if width < 1 or height < 1:
        raise ValueError("the image must be at least 1 x 1 pixel")
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("need size >= 1 and 0 <= overlap < size")
    stride = size - overlap
    rows = []
    for y0 in _starts(height, size, stride):
        for x0 in _starts(width, size, stride):
            rows.append((len(rows), x0, y0, min(x0 + size, width), min(y0 + size, height)))
    return pd.DataFrame(rows, columns=BOX_COLUMNS)


def split_catalogue(catalogue: pd.DataFrame, boxes: pd.DataFrame) -> pd.DataFrame:
    """The craters of a whole-image ``catalogue`` (``x``, ``y``, ``r``) seen on each tile, in tile pixels.

    A crater belongs to every tile that holds its centre (``x0 <= x < x1``), so craters in an
    overlap appear on both tiles. Returns the catalogue's columns plus ``unit`` (the tile id)
    and ``crater`` (the row's position in ``catalogue``).
    """
    x = catalogue["x"].to_numpy(float)
    y = catalogue["y"].to_numpy(float)
    inside = ((x[None, :] >= boxes["x0"].to_numpy()[:, None]) & (x[None, :] < boxes["x1"].to_numpy()[:, None]) &
              (y[None, :] >= boxes["y0"].to_numpy()[:, None]) & (y[None, :] < boxes["y1"].to_numpy()[:, None]))
    tile_pos, crater = np.nonzero(inside)
    out = catalogue.iloc[crater].reset_index(drop=True).copy()
    out["x"] = x[crater] - boxes["x0"].to_numpy()[tile_pos]
    out["y"] = y[crater] - boxes["y0"].to_numpy()[tile_pos]
    out.insert(0, "unit", boxes["tile"].to_numpy()[tile_pos])
    out["crater"] = crater
    return out


def to_image(craters: pd.DataFrame, boxes: pd.DataFrame) -> pd.DataFrame:
    """Per-tile ``craters`` (``unit`` = tile id, ``x``, ``y`` in tile pixels) moved to whole-image pixels."""
    box = boxes.set_index("tile").loc[craters["unit"].to_numpy()]
    out = craters.copy()
    out["x"] = craters["x"].to_numpy(float) + box["x0"].to_numpy()
    out["y"] = craters["y"].to_numpy(float) + box["y0"].to_numpy()
    return out


def merge_tiles(craters: pd.DataFrame, boxes: pd.DataFrame, centre_tolerance: float = 0.5,
                radius_tolerance: float = 0.5, pixel_tolerance: float = 1.5,
                point_tolerance: float = 10.0) -> pd.DataFrame:
    """One catalogue in whole-image pixels from per-tile consensus, without the overlaps' duplicates.

    Args:
        craters: consensus per tile: ``unit`` (tile id of ``boxes``), ``x``, ``y`` in tile
            pixels, ``r`` (NaN for points) and any other columns (kept).
        boxes: the tiles, as :func:`tile_boxes` returns them.
        centre_tolerance, radius_tolerance, pixel_tolerance: two circles from different tiles
            are one crater when their :func:`~microtasks.consensus.craters.circle_dissimilarity`
            is at most 1 (defaults as :class:`~microtasks.consensus.craters.CraterClustering`).
        point_tolerance: two points from different tiles are one object within this many pixels.

    Returns:
        The kept craters in image pixels, with a ``tile`` column (the tile whose copy was kept)
        and ``edge_distance`` (pixels from that tile's nearest inner edge), sorted by y then x.
        Of each group of copies, the one farthest from its tile's inner edges is kept (ties:
        higher ``support`` when present, then lower tile id); an edge on the image's border is
        not an inner edge.
    """
    out = to_image(craters, boxes).rename(columns={"unit": "tile"}).reset_index(drop=True)
    n = len(out)
    if n == 0:
        out["edge_distance"] = pd.Series(dtype=float)
        return out
    box = boxes.set_index("tile").loc[out["tile"].to_numpy()]
    x, y = out["x"].to_numpy(float), out["y"].to_numpy(float)
    r = out["r"].to_numpy(float) if "r" in out else np.full(n, np.nan)
    is_point = np.isnan(r)
    left, top = box["x0"].to_numpy(), box["y0"].to_numpy()
    right, bottom = box["x1"].to_numpy(), box["y1"].to_numpy()
    image_w, image_h = boxes["x1"].max(), boxes["y1"].max()
    gaps = np.column_stack([np.where(left > 0, x - left, np.inf), np.where(top > 0, y - top, np.inf),
                            np.where(right < image_w, right - x, np.inf),
                            np.where(bottom < image_h, bottom - y, np.inf)])
    edge = gaps.min(axis=1)
    out["edge_distance"] = edge
    rr = np.where(is_point, 0.0, r)
    reach = np.where(is_point, point_tolerance,
                     centre_tolerance * (rr * (2 + radius_tolerance) + pixel_tolerance) / 2 + pixel_tolerance)
    tree = cKDTree(np.column_stack([x, y]))
    neighbours = tree.query_ball_point(np.column_stack([x, y]), reach)
    lengths = np.fromiter((len(a) for a in neighbours), dtype=np.int64, count=n)
    i = np.repeat(np.arange(n), lengths)
    j = np.fromiter((k for a in neighbours for k in a), dtype=np.int64, count=int(lengths.sum()))
    tiles = out["tile"].to_numpy()
    pair = (i != j) & (tiles[i] != tiles[j]) & (is_point[i] == is_point[j])
    i, j = i[pair], j[pair]
    d = np.where(is_point[i], np.hypot(x[i] - x[j], y[i] - y[j]) / point_tolerance,
                 circle_dissimilarity(x[i], y[i], rr[i], x[j], y[j], rr[j], centre_tolerance,
                                      radius_tolerance, pixel_tolerance))
    i, j = i[d <= 1.0], j[d <= 1.0]
    keep = np.ones(n, dtype=bool)
    if len(i):
        support = out["support"].to_numpy(float) if "support" in out else np.zeros(n)
        involved = np.unique(i)
        rank = np.lexsort((tiles[involved], -support[involved], -edge[involved]))
        order = np.argsort(i, kind="stable")
        i, j = i[order], j[order]
        start = np.searchsorted(i, np.arange(n))
        stop = np.searchsorted(i, np.arange(n), side="right")
        for a in involved[rank]:  # best copies first; each suppresses its copies in other tiles
            if keep[a]:
                keep[j[start[a]:stop[a]]] = False
    merged = out[keep]
    return merged.iloc[np.lexsort((merged["x"].to_numpy(), merged["y"].to_numpy()))].reset_index(drop=True)
