"""Crater consensus on real lunar images with simulated crowds, against Zooniverse's panoptes_aggregation.

Command (panoptes_aggregation lives only in this throw-away environment, never in the
project's dependencies)::

    python3 -m venv /tmp/pa-venv && /tmp/pa-venv/bin/pip install panoptes_aggregation -e /work/main
    cd /work/main && /tmp/pa-venv/bin/python benchmarks/craters.py

``--no-panoptes`` runs our methods alone (any environment with the project installed);
``--sweep`` also prints the sensitivity of CraterClustering to its main settings.

Protocol: the three 1000 x 1000 NAC images of ``../shared/data/craters/nac/`` (3,561
expert craters; a crater is the circle centred at (C_X, CY) with radius W/2) are cut into
250 px tiles overlapping by 30 px (:func:`microtasks.tiles.tile_boxes`, 25 tiles per
image). For each crowd size (5, 10, 15 volunteers per tile, drawn from a pool of 40 made by
:func:`microtasks.simulate.make_crowd` with the default :class:`~microtasks.simulate.CrowdModel`),
every tile's marks are simulated from the expert craters whose centres it holds, each method
aggregates every tile, and :func:`microtasks.tiles.merge_tiles` merges the tiles into one
catalogue per image (the same merge for every method). A consensus crater matches an expert
crater (one-to-one, Hungarian) when its centre is within half the expert radius and its
radius within 30% of it. Recall is by expert radius band, precision by consensus radius band.
Centre error is the mean distance of matched pairs in pixels, radius error their mean
|r - r_expert| / r_expert. A duplicate is a pair of merged craters from different tiles
that match each other under the same rule.

panoptes_aggregation's shape reducer (``shape_reducer_dbscan``, shape ``circle``) runs with
its defaults (Euclidean metric in (x, y, r), ``eps = 5``, ``min_samples = 3``) on every tile.
Its IoU metric (``metric_type='IoU'``, ``eps = 0.5`` since the distance is 1 - IoU, the rest
default) is far too slow for every tile (about 40 s per tile of ~180 marks with 5 volunteers,
growing with the square of the marks); it runs on a seeded random sample of tiles (by default 3
tiles with 5 volunteers, 1 with 10 and none with 15, to keep the run under 10 minutes) and is
compared with ours and the Euclidean setting on the same sample, scored per tile without merging.
Times are of the aggregation alone: for panoptes, the reducer calls, not our conversion of the
marks into its extract format.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from microtasks.consensus import CraterClustering, MarkMajority
from microtasks.simulate import CrowdModel, make_crowd, simulate_marks
from microtasks.tiles import merge_tiles, split_catalogue, tile_boxes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "craters" / "nac"
TILE, OVERLAP = 250, 30
CROWDS = (5, 10, 15)
POOL = 40
BANDS = [(0, 8, "r<8"), (8, 16, "8-16"), (16, 32, "16-32"), (32, np.inf, ">32"), (0, np.inf, "all")]


def load_images() -> list[tuple[str, int, int, pd.DataFrame]]:
    """(name, width, height, expert catalogue x, y, r) for each NAC image."""
    images = []
    for txt in sorted(DATA.glob("*.txt")):
        table = pd.read_csv(txt, sep=None, engine="python")
        table.columns = [c.strip() for c in table.columns]
        catalogue = pd.DataFrame({"x": table["C_X"].astype(float), "y": table["CY"].astype(float),
                                  "r": table["W"].astype(float) / 2})
        with open(txt.with_suffix(".png"), "rb") as png:
            width, height = struct.unpack(">II", png.read(24)[16:24])
        images.append((txt.stem, width, height, catalogue))
    return images


def match(pred: pd.DataFrame, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Indices (pred, truth) of a one-to-one matching under the issue's tolerances."""
    if len(pred) == 0 or len(truth) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    p = pred[["x", "y", "r"]].to_numpy(float)
    t = truth[["x", "y", "r"]].to_numpy(float)
    tree = cKDTree(p[:, :2])
    hits = tree.query_ball_point(t[:, :2], 0.5 * t[:, 2])
    ti = np.repeat(np.arange(len(t)), [len(h) for h in hits])
    pi = np.fromiter((k for h in hits for k in h), dtype=np.int64, count=len(ti))
    ok = np.abs(p[pi, 2] - t[ti, 2]) <= 0.3 * t[ti, 2]
    ti, pi = ti[ok], pi[ok]
    if len(ti) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    rows, row_of = np.unique(ti, return_inverse=True)
    cols, col_of = np.unique(pi, return_inverse=True)
    cost = np.full((len(rows), len(cols)), 1e6)
    cost[row_of, col_of] = (np.hypot(*(p[pi, :2] - t[ti, :2]).T) + np.abs(p[pi, 2] - t[ti, 2])) / t[ti, 2]
    a, b = linear_sum_assignment(cost)
    good = cost[a, b] < 1e6
    return cols[b[good]], rows[a[good]]


def score(pred: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Counts per size band for one image: tp_pred, n_pred, tp_truth, n_truth, centre and radius errors."""
    pi, ti = match(pred, truth)
    rows = []
    pr, tr = pred["r"].to_numpy(float), truth["r"].to_numpy(float)
    matched_pred = np.zeros(len(pred), bool)
    matched_pred[pi] = True
    matched_truth = np.zeros(len(truth), bool)
    matched_truth[ti] = True
    centre = np.hypot(pred["x"].to_numpy(float)[pi] - truth["x"].to_numpy(float)[ti],
                      pred["y"].to_numpy(float)[pi] - truth["y"].to_numpy(float)[ti])
    radius = np.abs(pr[pi] - tr[ti]) / tr[ti]
    for lo, hi, band in BANDS:
        in_pred, in_truth = (pr >= lo) & (pr < hi), (tr >= lo) & (tr < hi)
        in_pair = (tr[ti] >= lo) & (tr[ti] < hi)
        rows.append({"band": band, "tp_pred": int((matched_pred & in_pred).sum()), "n_pred": int(in_pred.sum()),
                     "tp_truth": int((matched_truth & in_truth).sum()), "n_truth": int(in_truth.sum()),
                     "centre_sum": float(centre[in_pair].sum()), "radius_sum": float(radius[in_pair].sum()),
                     "pairs": int(in_pair.sum())})
    return pd.DataFrame(rows)


def duplicates(catalogue: pd.DataFrame) -> int:
    """Pairs of craters from different tiles that match each other (centre within half, radius within 30%)."""
    if len(catalogue) < 2:
        return 0
    xy = catalogue[["x", "y"]].to_numpy(float)
    r = catalogue["r"].to_numpy(float)
    tile = catalogue["tile"].to_numpy()
    count = 0
    for a, b in cKDTree(xy).query_pairs(float(np.nanmax(r)) * 0.5 + 1e-9):
        small = min(r[a], r[b])
        if tile[a] != tile[b] and np.hypot(*(xy[a] - xy[b])) <= 0.5 * small and abs(r[a] - r[b]) <= 0.3 * small:
            count += 1
    return count


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    total = scores.groupby(["method", "crowd", "band"], sort=False).sum(numeric_only=True)
    precision = total["tp_pred"] / total["n_pred"].where(total["n_pred"] > 0)
    recall = total["tp_truth"] / total["n_truth"].where(total["n_truth"] > 0)
    out = pd.DataFrame({"P": precision, "R": recall,
                        "F1": 2 * precision * recall / (precision + recall),
                        "centre_px": total["centre_sum"] / total["pairs"].where(total["pairs"] > 0),
                        "radius_err": total["radius_sum"] / total["pairs"].where(total["pairs"] > 0),
                        "n_truth": total["n_truth"], "n_pred": total["n_pred"]})
    return out.reset_index()


# -- the methods: each takes one image's marks (units = tiles, tile pixels) and returns craters per tile --------

def ours(marks: pd.DataFrame) -> pd.DataFrame:
    return CraterClustering(width=TILE, height=TILE).fit(marks).craters_


def ours_with(**settings: float):
    def method(marks: pd.DataFrame) -> pd.DataFrame:
        return CraterClustering(width=TILE, height=TILE, **settings).fit(marks).craters_
    return method


def majority(marks: pd.DataFrame) -> pd.DataFrame:
    lists = MarkMajority().fit(marks).marks_
    rows = [{"unit": unit, **mark} for unit, found in lists.items() for mark in found]
    return pd.DataFrame(rows, columns=["unit", "x", "y", "r", "support", "confidence"])


def panoptes(metric: str):
    from panoptes_aggregation.reducers.shape_reducer_dbscan import shape_reducer_dbscan

    settings = {"metric_type": metric} if metric == "euclidean" else {"metric_type": "IoU", "eps": 0.5}

    def method(marks: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for unit, tile in marks.groupby("unit", sort=True):
            extracts, users = [], []
            for volunteer, own in tile.groupby("volunteer", sort=False):
                drawn = own.dropna(subset=["x", "y", "r"])
                extracts.append({"frame0": {"T0_tool0_x": drawn["x"].tolist(), "T0_tool0_y": drawn["y"].tolist(),
                                            "T0_tool0_r": drawn["r"].tolist()}} if len(drawn) else {})
                users.append(volunteer)
            start = time.perf_counter()
            reduced = shape_reducer_dbscan(extracts, shape="circle", user_id=users, **settings)
            method.reducer_seconds += time.perf_counter() - start  # type: ignore[attr-defined]
            frame = reduced.get("frame0", {})
            for x, y, r, count in zip(frame.get("T0_tool0_clusters_x", []), frame.get("T0_tool0_clusters_y", []),
                                      frame.get("T0_tool0_clusters_r", []), frame.get("T0_tool0_clusters_count", [])):
                rows.append({"unit": unit, "x": x, "y": y, "r": r, "support": count})
        return pd.DataFrame(rows, columns=["unit", "x", "y", "r", "support"])
    method.reducer_seconds = 0.0  # type: ignore[attr-defined]
    return method


def timed(method, marks: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """The method's craters and its aggregation seconds (for panoptes, the reducer calls alone,
    not our conversion of the marks table into its extracts)."""
    before = getattr(method, "reducer_seconds", None)
    start = time.perf_counter()
    result = method(marks)
    seconds = time.perf_counter() - start
    if before is not None:
        seconds = method.reducer_seconds - before
    return result, seconds


def simulate(images, crowd_size: int, seed: int) -> list[pd.DataFrame]:
    rng = np.random.default_rng([seed, crowd_size])
    crowd = make_crowd(POOL, rng, CrowdModel())
    out = []
    for _, width, height, catalogue in images:
        boxes = tile_boxes(width, height, TILE, OVERLAP)
        truth = split_catalogue(catalogue, boxes)
        out.append(simulate_marks(truth, crowd, rng, width=TILE, height=TILE, units=boxes["tile"].tolist(),
                                  volunteers_per_unit=crowd_size))
    return out


def markdown(table: pd.DataFrame, floats: str = "{:.3f}") -> str:
    cells = [[floats.format(v) if isinstance(v, float) and not np.isnan(v) else ("" if isinstance(v, float) else str(v))
              for v in row] for row in table.itertuples(index=False)]
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    return head + "\n".join("| " + " | ".join(c) + " |" for c in cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-panoptes", action="store_true", help="run our methods only")
    parser.add_argument("--iou-tiles", default="5:3,10:1,15:0",
                        help="tiles sampled for the IoU metric, per crowd size (crowd:tiles,...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    parser.add_argument("--sweep", action="store_true", help="also sweep CraterClustering's settings")
    args = parser.parse_args()
    iou_tiles = {int(c): int(t) for c, t in (part.split(":") for part in args.iou_tiles.split(",") if part)}
    images = load_images()
    print(f"{len(images)} images, {sum(len(c) for *_, c in images)} expert craters; tiles {TILE} px, "
          f"overlap {OVERLAP} px; seed {args.seed}", flush=True)
    methods = {"CraterClustering": ours, "MarkMajority": majority}
    if not args.no_panoptes:
        methods["panoptes DBSCAN euclidean"] = panoptes("euclidean")
    if args.sweep:
        for share in (0.25, 0.3, 0.4):
            methods[f"ours min_share={share}"] = ours_with(min_share=share)
        methods["ours linkage=complete"] = ours_with(linkage="complete")
        for tol in (0.3, 0.4, 0.7):
            methods[f"ours centre_tolerance={tol}"] = ours_with(centre_tolerance=tol)
        for px in (0.75, 1.0, 2.0):
            methods[f"ours pixel_tolerance={px}"] = ours_with(pixel_tolerance=px)
    scores, timing, dupes = [], [], []
    iou_scores, iou_timing = [], []
    sample_rng = np.random.default_rng(args.seed + 99)
    for crowd_size in CROWDS:
        all_marks = simulate(images, crowd_size, args.seed)
        n_marks = sum(int(m["x"].notna().sum()) for m in all_marks)
        print(f"crowd {crowd_size}: {n_marks} marks on {sum(m['unit'].nunique() for m in all_marks)} tiles",
              flush=True)
        for name, method in methods.items():
            seconds = 0.0
            for (_, width, height, catalogue), marks in zip(images, all_marks):
                boxes = tile_boxes(width, height, TILE, OVERLAP)
                per_tile, spent = timed(method, marks)
                seconds += spent
                merged = merge_tiles(per_tile, boxes)
                table = score(merged, catalogue)
                table["method"], table["crowd"] = name, crowd_size
                scores.append(table)
                dupes.append({"method": name, "crowd": crowd_size, "duplicates": duplicates(merged)})
            timing.append({"method": name, "crowd": crowd_size, "seconds": seconds})
            print(f"  {name}: {seconds:.3f} s", flush=True)
        n_sample = iou_tiles.get(crowd_size, 0)
        if not args.no_panoptes and n_sample > 0:
            # a fixed random sample of tiles over the three images, scored per tile
            picks = [(int(k), int(t)) for k, t in zip(sample_rng.integers(0, len(images), n_sample),
                                                      sample_rng.integers(0, 25, n_sample))]
            for name, method in {"CraterClustering": ours, "panoptes DBSCAN euclidean": panoptes("euclidean"),
                                 "panoptes DBSCAN IoU": panoptes("IoU")}.items():
                seconds = 0.0
                for k, t in picks:
                    _, width, height, catalogue = images[k]
                    boxes = tile_boxes(width, height, TILE, OVERLAP)
                    marks = all_marks[k][all_marks[k]["unit"] == t]
                    per_tile, spent = timed(method, marks)
                    seconds += spent
                    truth = split_catalogue(catalogue, boxes)
                    truth = truth[truth["unit"] == t]
                    table = score(per_tile, truth)
                    table["method"], table["crowd"] = name, crowd_size
                    iou_scores.append(table)
                iou_timing.append({"method": name, "crowd": crowd_size, "seconds": seconds})
                print(f"  sample of {n_sample} tiles {picks}, {name}: {seconds:.2f} s", flush=True)

    result = summarise(pd.concat(scores, ignore_index=True))
    timing_table = pd.DataFrame(timing)
    base = timing_table[timing_table["method"] == "CraterClustering"].set_index("crowd")["seconds"]
    timing_table["x ours"] = timing_table["seconds"] / base.loc[timing_table["crowd"]].to_numpy()
    print("\n### F1 (all sizes) by crowd size\n")
    overall = result[result["band"] == "all"].pivot(index="method", columns="crowd", values="F1")
    overall = overall.loc[list(methods)].reset_index()
    overall.columns = ["method"] + [f"F1, {c} volunteers" for c in CROWDS]
    print(markdown(overall))
    main_methods = [m for m in methods if not m.startswith("ours ")]
    for crowd_size in CROWDS:
        print(f"\n### {crowd_size} volunteers per tile, by expert/consensus radius band (px)\n")
        part = result[(result["crowd"] == crowd_size) & result["method"].isin(main_methods)]
        print(markdown(part.drop(columns=["crowd"])))
    print("\n### Aggregation time (seconds, all 75 tiles) and duplicates after merging\n")
    dupe_table = pd.DataFrame(dupes).groupby(["method", "crowd"], sort=False).sum().reset_index()
    print(markdown(timing_table.merge(dupe_table, on=["method", "crowd"]), floats="{:.3f}"))
    if iou_scores:
        iou = summarise(pd.concat(iou_scores, ignore_index=True))
        iou = iou[iou["band"] == "all"].drop(columns=["band"])
        iou_time = pd.DataFrame(iou_timing)
        iou_base = iou_time[iou_time["method"] == "CraterClustering"].set_index("crowd")["seconds"]
        iou_time["x ours"] = iou_time["seconds"] / iou_base.loc[iou_time["crowd"]].to_numpy()
        print(f"\n### IoU sample ({args.iou_tiles} crowd:tiles), scored per tile (no merge), all sizes\n")
        print(markdown(iou.merge(iou_time, on=["method", "crowd"])))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
