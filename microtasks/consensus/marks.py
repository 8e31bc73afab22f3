"""Majority consensus over marks (circles or points): a mark is real when most volunteers made it."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MarkMajority:
    r"""Cluster volunteers' marks on each unit and keep the clusters most volunteers agree on.

    Marks are matched on a scale-relative distance, after CosmoQuest's Moon Mappers
    (Robbins et al. 2014, Icarus 234, doi:10.1016/j.icarus.2014.02.022): two circles
    :math:`(x_i, y_i, r_i)` and :math:`(x_j, y_j, r_j)` belong together when

    .. math:: \frac{\lVert c_i - c_j \rVert}{\bar r} \le \text{centre\_tolerance}
              \quad\text{and}\quad
              \frac{|r_i - r_j|}{\min(r_i, r_j)} \le \text{radius\_tolerance}

    with :math:`\bar r` the mean of the two radii. Points (no radius) match within
    ``point_tolerance`` pixels. A cluster holds at most one mark per volunteer
    (greedy, largest marks first, each joining the nearest compatible cluster);
    its support is the number of distinct volunteers in it. It is kept when its
    support is more than half of the volunteers who answered the unit; its centre
    and radius are the medians of its marks, and its confidence the share of
    volunteers who marked it. The unit's confidence is the mean decisiveness of its
    candidate clusters, :math:`\operatorname{mean}_c \max(s_c, 1 - s_c)`, or 1 when
    nobody marked anything.

    Input: a long table with columns ``unit``, ``volunteer``, ``x``, ``y`` and ``r``
    (``r`` is NaN for points). A row whose ``x`` is NaN records a volunteer who saw
    the unit and marked nothing.

    Example:
        >>> marks = pd.DataFrame({"unit": [1, 1, 1], "volunteer": ["a", "b", "c"],
        ...                       "x": [100.0, 102.0, float("nan")], "y": [50.0, 51.0, float("nan")],
        ...                       "r": [10.0, 11.0, float("nan")]})
        >>> MarkMajority().fit_predict(marks)[1]
        [{'x': 101.0, 'y': 50.5, 'r': 10.5, 'support': 2, 'confidence': 0.6667}]
    """

    name = "mark_majority"

    def __init__(self, centre_tolerance: float = 0.5, radius_tolerance: float = 0.5,
                 point_tolerance: float = 10.0) -> None:
        self.centre_tolerance = centre_tolerance
        self.radius_tolerance = radius_tolerance
        self.point_tolerance = point_tolerance

    @property
    def parameters(self) -> dict[str, float]:
        return {"centre_tolerance": self.centre_tolerance, "radius_tolerance": self.radius_tolerance,
                "point_tolerance": self.point_tolerance}

    def fit(self, marks: pd.DataFrame) -> "MarkMajority":
        missing = [c for c in ("unit", "volunteer", "x", "y", "r") if c not in marks.columns]
        if missing:
            raise ValueError(f"marks table lacks column(s) {missing}")
        results: dict[object, list[dict[str, float]]] = {}
        confidences: dict[object, float] = {}
        for unit, group in marks.groupby("unit", sort=True):
            results[unit], confidences[unit] = self._fit_unit(group)
        self.marks_ = pd.Series(results, name="marks", dtype=object)
        self.confidences_ = pd.Series(confidences, name="confidence", dtype=float)
        return self

    def fit_predict(self, marks: pd.DataFrame) -> pd.Series:
        return self.fit(marks).marks_

    def _fit_unit(self, group: pd.DataFrame) -> tuple[list[dict[str, float]], float]:
        n_volunteers = group["volunteer"].nunique()
        drawn = group.dropna(subset=["x", "y"])
        if drawn.empty:
            return [], 1.0
        is_circle = bool(drawn["r"].notna().all())
        order = np.argsort(-drawn["r"].to_numpy()) if is_circle else np.arange(len(drawn))
        xs, ys = drawn["x"].to_numpy(float)[order], drawn["y"].to_numpy(float)[order]
        rs = drawn["r"].to_numpy(float)[order] if is_circle else np.zeros(len(drawn))
        who = drawn["volunteer"].to_numpy()[order]

        clusters: list[list[int]] = []
        centres: list[tuple[float, float, float]] = []
        for i in range(len(xs)):
            best, best_distance = -1, np.inf
            for c, members in enumerate(clusters):
                if any(who[m] == who[i] for m in members):
                    continue
                cx, cy, cr = centres[c]
                distance = float(np.hypot(xs[i] - cx, ys[i] - cy))
                if is_circle:
                    scaled = distance / ((rs[i] + cr) / 2)
                    if scaled > self.centre_tolerance or abs(rs[i] - cr) / min(rs[i], cr) > self.radius_tolerance:
                        continue
                    distance = scaled
                elif distance > self.point_tolerance:
                    continue
                if distance < best_distance:
                    best, best_distance = c, distance
            if best < 0:
                clusters.append([i])
                centres.append((xs[i], ys[i], rs[i]))
            else:
                clusters[best].append(i)
                members = clusters[best]
                centres[best] = (float(np.median(xs[members])), float(np.median(ys[members])),
                                 float(np.median(rs[members])))

        kept = []
        decisiveness = []
        for members, (cx, cy, cr) in zip(clusters, centres):
            share = len(members) / n_volunteers
            decisiveness.append(max(share, 1.0 - share))
            if share > 0.5:
                mark = {"x": round(cx, 2), "y": round(cy, 2)}
                if is_circle:
                    mark["r"] = round(cr, 2)
                mark.update(support=len(members), confidence=round(share, 4))
                kept.append(mark)
        kept.sort(key=lambda m: (m["y"], m["x"]))
        return kept, float(np.mean(decisiveness))
