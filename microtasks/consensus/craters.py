"""Crater consensus: cluster volunteers' circles on a scale-relative distance, one mark per volunteer per cluster."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Default least weighted share of a unit's volunteers that must mark a crater (see :class:`CraterClustering`).
DEFAULT_MIN_SHARE = 0.2
#: Dissimilarity given to two marks that may never share a cluster (same volunteer, or padding).
_APART = 1e9
_COLUMNS = ("unit", "volunteer", "x", "y", "r")
#: Groups of marks up to these sizes are clustered together in padded batches; larger ones one by one.
_BATCH_SIZES = (4, 6, 8, 12, 16, 24, 32, 48, 64)
#: Groups above this many marks are clustered over their compatible pairs only (see ``_sparse_complete_cut``).
_DENSE_LIMIT = 400
#: Columns of :attr:`CraterClustering.craters_`.
CRATER_COLUMNS = ("unit", "x", "y", "r", "support", "weighted_support", "confidence",
                  "centre_spread", "radius_spread")


def circle_dissimilarity(x1: np.ndarray, y1: np.ndarray, r1: np.ndarray, x2: np.ndarray, y2: np.ndarray,
                         r2: np.ndarray, centre_tolerance: float, radius_tolerance: float,
                         pixel_tolerance: float) -> np.ndarray:
    r"""Scale-relative dissimilarity of circles: at most 1 when two circles may be the same crater.

    .. math:: D = \max\left(\frac{\lVert c_1 - c_2 \rVert}{t_c \bar r + t_p},\;
                            \frac{|r_1 - r_2|}{t_r \min(r_1, r_2) + t_p}\right)

    with :math:`\bar r` the mean radius, :math:`t_c` ``centre_tolerance``, :math:`t_r`
    ``radius_tolerance`` and :math:`t_p` ``pixel_tolerance`` (a floor in pixels, for
    craters so small that the precision of a click dominates).

    Example:
        >>> one = np.array([1.0])
        >>> float(circle_dissimilarity(one * 0, one * 0, one * 10, one * 3, one * 0, one * 11, 0.5, 0.5, 1.0)[0])
        0.48
    """
    distance = np.hypot(x1 - x2, y1 - y2)
    centre = distance / (centre_tolerance * (r1 + r2) / 2 + pixel_tolerance)
    radius = np.abs(r1 - r2) / (radius_tolerance * np.minimum(r1, r2) + pixel_tolerance)
    return np.asarray(np.maximum(centre, radius), dtype=float)


def weighted_median(groups: np.ndarray, values: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Weighted median of ``values`` within each group ``0..n_groups-1`` (NaN for an empty group).

    With equal weights and an even count it is the mean of the two middle values, as
    :func:`numpy.median`. Values of zero weight are left out, and a group whose weights are all
    zero takes equal weights.

    Example:
        >>> weighted_median(np.array([0, 0, 1, 1, 1]), np.array([1.0, 3.0, 5.0, 6.0, 9.0]),
        ...                 np.array([1.0, 1.0, 1.0, 1.0, 5.0]), 2).tolist()
        [2.0, 9.0]
    """
    result = np.full(n_groups, np.nan)
    if len(values) == 0:
        return result
    total = np.bincount(groups, weights, n_groups)
    weights = np.where(total[groups] > 0, weights, 1.0)
    total = np.bincount(groups, weights, n_groups)
    weighed = weights > 0  # a value of no weight has no say, not even as the neighbour of the middle
    groups, values, weights = groups[weighed], values[weighed], weights[weighed]
    order = _by_group_then_value(groups, values)
    g, v, w = groups[order], values[order], weights[order]
    cumulative = np.cumsum(w)
    counts = np.bincount(g, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    before = np.where(starts > 0, cumulative[np.maximum(starts - 1, 0)], 0.0)
    within = cumulative - before[g]
    half = total[g] / 2
    scale = np.maximum(total[g], 1e-300)
    reached = within >= half - 1e-12 * scale
    # the first element of each group that reaches half of the group's weight (reached only grows in a group)
    first = reached.copy()
    first[1:] &= ~reached[:-1] | (g[1:] != g[:-1])
    idx = np.flatnonzero(first)
    value = v[idx]
    exactly_half = np.abs(within[idx] - half[idx]) <= 1e-12 * scale[idx]
    following = np.minimum(idx + 1, len(g) - 1)
    same_group = g[following] == g[idx]
    average = exactly_half & same_group & (following != idx)
    result[g[idx]] = np.where(average, (value + v[following]) / 2, value)
    return result


def _by_group_then_value(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices sorting by group, then value (values that are not finite last in their group).

    One sort of a single float key, ``group * span + value``: several times faster than
    :func:`numpy.lexsort`. Values closer than the key's rounding (about 1e-16 of the largest
    key) may come out of order, which moves a median by as little.
    """
    finite = np.isfinite(values)
    low = float(values[finite].min()) if finite.any() else 0.0
    width = float(values[finite].max()) - low if finite.any() else 0.0
    span = 2 * width + 2
    return np.argsort(groups * span + np.where(finite, values - low, width + 1))


def _candidate_pairs(x: np.ndarray, y: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` (each once) of points within ``reach[i]`` of each other in x and in y, where ``i`` is
    the point lower in y (a superset of the pairs closer than both their reaches).

    A sweep in bands: the points are sorted by band of y (bands twice the median reach high, at least 1),
    then x. A point's partners in its own band are the points after it, up to its reach in x;
    in each later band its reach spans, the points within its reach either side in x. Each
    window is one ``searchsorted``; pairs too far apart in y are dropped. All vectorised, and
    the candidates per point are about the other points in a square of its reach.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    height = max(2 * float(np.median(reach)), 1.0)
    top = float(y.min())
    band = np.floor((y - top) / height)
    n_bands = float(band.max()) + 1
    width = float(x.max() - x.min()) + 2 * float(reach.max()) + 1
    key = band * width + (x - float(x.min()))
    order = np.argsort(key, kind="stable")
    key, ys, rs, band = key[order], y[order], reach[order], band[order]
    found_i, found_j = [], []
    for step in range(int(np.ceil(float(reach.max()) / height)) + 1):
        # own band: forward only, so each pair is found once; later bands: both sides
        spans = np.arange(n) if step == 0 else np.flatnonzero((rs > (step - 1) * height) & (band + step < n_bands))
        shifted = key[spans] + step * width
        first = spans + 1 if step == 0 else np.searchsorted(key, shifted - rs[spans], side="left")
        counts = np.maximum(np.searchsorted(key, shifted + rs[spans], side="right") - first, 0)
        i = np.repeat(spans, counts)
        j = np.arange(len(i)) + np.repeat(first - (np.cumsum(counts) - counts), counts)
        near = np.abs(ys[i] - ys[j]) <= rs[i]
        found_i.append(order[i[near]])
        found_j.append(order[j[near]])
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    return np.minimum(i, j), np.maximum(i, j)


@lru_cache(maxsize=256)
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the strict upper triangle of an n x n matrix (the condensed order)."""
    return np.triu_indices(n, 1)


def _linkage_cut(condensed: np.ndarray, n: int, method: str, threshold: float = 1.0) -> np.ndarray:
    """Flat clusters (0..k-1) of complete- or average-linkage clustering cut at ``threshold``.

    Both linkages are monotone, so the clusters are the merges of the linkage whose height
    is at most ``threshold``.
    """
    tree = linkage(condensed, method=method)
    members: dict[int, list[int]] = {k: [k] for k in range(n)}
    for step, (a, b, height, _) in enumerate(tree):
        if height > threshold:
            break
        members[n + step] = members.pop(int(a)) + members.pop(int(b))
    parts = np.empty(n, dtype=np.int64)
    for k, points in enumerate(sorted(members.values())):
        parts[points] = k
    return parts


def _sparse_complete_cut(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, volunteer: np.ndarray
                         ) -> np.ndarray:
    """Clusters of marks ``0..n-1`` from compatible pairs ``(i, j)`` with dissimilarity ``d``.

    Pairs are taken in increasing ``d`` (ties in input order); two clusters merge when every
    pair across them is compatible and they share no volunteer: complete linkage cut at 1,
    greedy over the sparse pairs. Memory and time grow with the number of pairs, not its
    square. Returns a cluster id per mark (marks in no pair keep their own).
    """
    parent = np.arange(n)
    size = {int(k): 1 for k in np.unique(np.concatenate([i, j]))}
    who = {k: {int(volunteer[k])} for k in size}
    links: dict[int, dict[int, int]] = {k: {} for k in size}
    for a, b in zip(i.tolist(), j.tolist()):
        links[a][b] = links[a].get(b, 0) + 1
        links[b][a] = links[b].get(a, 0) + 1

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = int(parent[k])
        return k

    for e in np.argsort(d, kind="stable").tolist():
        a, b = find(int(i[e])), find(int(j[e]))
        if a == b or links[a].get(b, 0) != size[a] * size[b] or who[a] & who[b]:
            continue
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a
        size[a] += size.pop(b)
        who[a] |= who.pop(b)
        for c, k in links.pop(b).items():
            if c == a:
                continue
            links[a][c] = links[a].get(c, 0) + k
            links[c][a] = links[c].get(a, 0) + k
            del links[c][b]
        links[a].pop(b, None)
    return np.fromiter((find(k) for k in range(n)), dtype=np.int64, count=n)


class CraterClustering:
    r"""Consensus craters (or points) from volunteers' marks, by agglomerative clustering with cannot-links.

    Model. Two circles may be the same crater when their scale-relative dissimilarity
    (:func:`circle_dissimilarity`, after Moon Mappers: Robbins et al. 2014, *The variability
    of crater identification among expert and community crater analysts*, Icarus 234,
    109-131, doi:10.1016/j.icarus.2014.02.022) is at most 1:

    .. math:: D_{ij} = \max\left(\frac{\lVert c_i - c_j \rVert}{t_c \bar r_{ij} + t_p},\;
                                 \frac{|r_i - r_j|}{t_r \min(r_i, r_j) + t_p}\right), \qquad
              D_{ij} = 10^9 \text{ when } v_i = v_j

    Points (no radius) use :math:`D_{ij} = \lVert c_i - c_j \rVert / t_\text{point}`. The
    marks of each unit are clustered agglomeratively, cut at :math:`D = 1`. With the default
    average linkage two clusters merge while the mean dissimilarity between their marks is at
    most 1, which tolerates one careless mark in a crater; complete linkage
    (``linkage="complete"``) demands it of every pair. The cannot-link
    (:math:`D_{ij} = 10^9` for two marks of one volunteer) keeps at most one mark per
    volunteer in a cluster under either linkage, so a volunteer who marks a crater twice
    counts once. Candidate pairs come from a sweep in bands; the linkage runs only inside connected
    groups of compatible marks (:math:`D \le 1`), batched and vectorised, so tens of
    thousands of marks take a fraction of a second. A group of more than 400 marks (only
    crowded or adversarial input makes one) is clustered greedily over its compatible pairs
    instead: pairs in increasing :math:`D`, two clusters merging when all their cross pairs
    are compatible and they share no volunteer, in memory and time that grow with the pairs.

    With volunteer weights :math:`w_v` (trust, e.g. from gold; 1 by default) a cluster
    :math:`C` on a unit seen by volunteers :math:`V` has support :math:`|C|` (distinct
    volunteers) and confidence

    .. math:: \text{confidence}(C) = \frac{\sum_{v \in C} w_v}{\sum_{v \in V} w_v}

    the weighted share of the volunteers who saw the unit (marking something or
    answering "nothing here") who marked it. A cluster is kept as a crater when its
    confidence is at least ``min_share`` and its support at least ``min_volunteers``.
    The default ``min_share = 0.2`` (with ``min_volunteers = 2``) is far below Moon Mappers'
    7 of about 15 volunteers on purpose: most catalogued craters are a few pixels across and
    each volunteer marks only about one in three of them, so a majority rule loses them. On
    simulated crowds of 5-15 volunteers over the NAC images (seeds other than the reported
    one) it kept precision above 0.94 and gave the best F1 of the shares tried (0.2-0.4;
    ``benchmarks/RESULTS.md``, crater section). Simulated false marks are independent; if a
    project's volunteers share mistakes (all circling one bump), raise it. The
    crater's centre and radius are the weighted medians of its marks; ``centre_spread`` and
    ``radius_spread`` are the weighted medians of the marks' distances from them (pixels).
    The unit's confidence is the mean decisiveness :math:`\max(s, 1 - s)` of its candidate
    clusters' confidences :math:`s`, or 1 when nobody marked anything.

    Input: a long table with columns ``unit``, ``volunteer``, ``x``, ``y`` and ``r``
    (``r`` NaN for points). A row whose ``x`` or ``y`` is NaN records a volunteer who saw
    the unit and marked nothing. A unit is a point unit when none of its marks has a radius;
    on a circle unit, marks without a radius are ignored.

    Bad input is bounded, never an error (the volunteer still counts as having seen the unit):

    * a mark whose centre is not finite, or outside ``[0, width] x [0, height]`` when those are
      given, is dropped (the centre must be on the image; a circle may overhang its edge);
    * a radius that is not finite, below ``min_radius`` or above ``max_radius`` is dropped
      (``max_radius`` defaults to half the larger side of the image when its size is given);
    * a volunteer's marks on one unit beyond the first ``max_marks_per_volunteer`` (in input
      order) are dropped; since a volunteer counts at most once per cluster, even a spammer
      under the cap adds at most one vote to any crater.

    Clustering is deterministic: no random numbers are involved.

    Example:
        >>> marks = pd.DataFrame({"unit": [1, 1, 1, 1], "volunteer": ["a", "b", "c", "a"],
        ...                       "x": [100.0, 102.0, float("nan"), 101.0], "y": [50.0, 51.0, float("nan"), 50.0],
        ...                       "r": [10.0, 11.0, float("nan"), 10.0]})
        >>> CraterClustering().fit_predict(marks)[1]
        [{'x': 101.5, 'y': 50.5, 'r': 10.5, 'support': 2, 'confidence': 0.6667}]
    """

    name = "crater_clustering"

    def __init__(self, centre_tolerance: float = 0.5, radius_tolerance: float = 0.5,
                 pixel_tolerance: float = 1.5, point_tolerance: float = 10.0, min_share: float = DEFAULT_MIN_SHARE,
                 min_volunteers: int = 2, width: float | None = None, height: float | None = None,
                 min_radius: float = 1.0, max_radius: float | None = None,
                 max_marks_per_volunteer: int = 500, linkage: str = "average") -> None:
        #: Centres may differ by this share of the circles' mean radius (plus ``pixel_tolerance``).
        self.centre_tolerance = centre_tolerance
        #: Radii may differ by this share of the smaller radius (plus ``pixel_tolerance``).
        self.radius_tolerance = radius_tolerance
        #: Slack in pixels added to both tolerances, for craters a few pixels across.
        self.pixel_tolerance = pixel_tolerance
        #: Points (marks without a radius) are the same object within this many pixels.
        self.point_tolerance = point_tolerance
        #: Least weighted share of the unit's volunteers a cluster needs to be kept.
        self.min_share = min_share
        #: Least number of distinct volunteers a cluster needs to be kept.
        self.min_volunteers = min_volunteers
        #: Image width in pixels; marks centred outside it are dropped. None: not checked.
        self.width = width
        #: Image height in pixels; marks centred outside it are dropped. None: not checked.
        self.height = height
        #: Radii below this (pixels) are dropped.
        self.min_radius = min_radius
        #: Radii above this (pixels) are dropped; None: half the larger image side, or unlimited.
        self.max_radius = max_radius
        #: A volunteer's marks on one unit beyond this many (in input order) are dropped. The
        #: default is over four times the expert craters of the densest 250 px NAC tile (114).
        self.max_marks_per_volunteer = max_marks_per_volunteer
        #: ``"complete"``: every pair of marks in a crater is compatible; ``"average"``: the mean
        #: dissimilarity between merged clusters is at most 1, which tolerates a stray mark.
        self.linkage = linkage
        if linkage not in ("complete", "average"):
            raise ValueError("linkage must be 'complete' or 'average'")
        for name in ("centre_tolerance", "radius_tolerance", "point_tolerance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not pixel_tolerance >= 0:
            raise ValueError("pixel_tolerance must not be negative")
        if not 0 <= min_share <= 1:
            raise ValueError("min_share must be between 0 and 1")
        if min_volunteers < 1 or max_marks_per_volunteer < 1:
            raise ValueError("min_volunteers and max_marks_per_volunteer must be at least 1")

    @property
    def parameters(self) -> dict[str, Any]:
        return {"centre_tolerance": self.centre_tolerance, "radius_tolerance": self.radius_tolerance,
                "pixel_tolerance": self.pixel_tolerance, "point_tolerance": self.point_tolerance,
                "min_share": self.min_share, "min_volunteers": self.min_volunteers}

    # -- public API -------------------------------------------------------------------------

    def fit(self, marks: pd.DataFrame, weights: Mapping[Any, float] | pd.Series | None = None
            ) -> "CraterClustering":
        """Cluster ``marks`` (see the class docstring); ``weights`` maps volunteer -> trust >= 0.

        Volunteers missing from ``weights`` get the median of the given weights.

        Sets ``craters_`` (one row per kept crater, columns :data:`CRATER_COLUMNS`, ``r`` NaN
        for points), ``marks_`` (unit -> list of ``{x, y, r, support, confidence}``, sorted by
        y then x), ``confidences_`` (unit -> confidence) and ``labels_`` (for each input row,
        the index of its cluster in ``clusters_``, -1 when the row was dropped or empty).
        """
        missing = [c for c in _COLUMNS if c not in marks.columns]
        if missing:
            raise ValueError(f"marks table lacks column(s) {missing}")
        n_rows = len(marks)
        try:
            unit_codes, units = pd.factorize(marks["unit"], sort=True)
        except TypeError:
            unit_codes, units = pd.factorize(marks["unit"])
        volunteer_codes, volunteers = pd.factorize(marks["volunteer"])
        n_units = len(units)
        weight_of = self._volunteer_weights(volunteers, weights)
        x = pd.to_numeric(marks["x"], errors="coerce").to_numpy(float)
        y = pd.to_numeric(marks["y"], errors="coerce").to_numpy(float)
        r = pd.to_numeric(marks["r"], errors="coerce").to_numpy(float)

        # weight of the volunteers who saw each unit (each volunteer once per unit)
        seen = pd.DataFrame({"u": unit_codes, "v": volunteer_codes}).drop_duplicates()
        seen_weight = np.bincount(seen["u"].to_numpy(), weight_of[seen["v"].to_numpy()], n_units)

        keep = self._usable(x, y, r, unit_codes, volunteer_codes, n_units)
        rows = np.flatnonzero(keep)
        point_unit = ~np.bincount(unit_codes[rows], np.isfinite(r[rows]), n_units).astype(bool)
        is_point = point_unit[unit_codes[rows]]
        rows = rows[is_point | np.isfinite(r[rows])]
        is_point = point_unit[unit_codes[rows]]

        cluster = self._cluster(x[rows], y[rows], np.where(is_point, 0.0, r[rows]), is_point,
                                unit_codes[rows], volunteer_codes[rows])
        self.labels_ = np.full(n_rows, -1)
        self.labels_[rows] = cluster
        n_clusters = int(cluster.max()) + 1 if len(cluster) else 0

        w = weight_of[volunteer_codes[rows]]
        cx = weighted_median(cluster, x[rows], w, n_clusters)
        cy = weighted_median(cluster, y[rows], w, n_clusters)
        cr = weighted_median(cluster, np.where(is_point, np.nan, r[rows]), w, n_clusters)
        c_unit = np.zeros(n_clusters, dtype=int)
        c_unit[cluster] = unit_codes[rows]
        c_point = np.zeros(n_clusters, dtype=bool)
        c_point[cluster] = is_point
        cr[c_point] = np.nan
        support = np.bincount(cluster, minlength=n_clusters)
        weighted = np.bincount(cluster, w, n_clusters)
        share = np.divide(weighted, seen_weight[c_unit], out=np.zeros(n_clusters),
                          where=seen_weight[c_unit] > 0)
        centre_spread = weighted_median(cluster, np.hypot(x[rows] - cx[cluster], y[rows] - cy[cluster]), w,
                                        n_clusters)
        radius_spread = weighted_median(cluster, np.abs(r[rows] - cr[cluster]), w, n_clusters)
        self.clusters_ = pd.DataFrame({
            "unit": units.take(c_unit) if n_clusters else pd.Series([], dtype=object), "x": cx, "y": cy, "r": cr,
            "support": support, "weighted_support": weighted, "confidence": share,
            "centre_spread": centre_spread, "radius_spread": radius_spread})
        kept = (share >= self.min_share - 1e-12) & (support >= self.min_volunteers) & (weighted > 0)
        craters = self.clusters_[kept]
        order = np.lexsort((craters["x"].to_numpy(), craters["y"].to_numpy(), c_unit[kept]))
        self.craters_ = craters.iloc[order].reset_index(drop=True)

        decisiveness = np.bincount(c_unit, np.maximum(share, 1 - share), n_units)
        n_candidates = np.bincount(c_unit, minlength=n_units)
        unit_confidence = np.where(n_candidates > 0, decisiveness / np.maximum(n_candidates, 1), 1.0)
        self.confidences_ = pd.Series(unit_confidence, index=units, name="confidence", dtype=float)
        self.marks_ = pd.Series(self._as_lists(units, c_unit[kept][order]), index=units, name="marks",
                                dtype=object)
        return self

    def fit_predict(self, marks: pd.DataFrame, weights: Mapping[Any, float] | pd.Series | None = None
                    ) -> pd.Series:
        """Fit and return ``marks_``: unit -> list of consensus marks."""
        return self.fit(marks, weights).marks_

    # -- steps ------------------------------------------------------------------------------

    @staticmethod
    def _volunteer_weights(volunteers: pd.Index, weights: Mapping[Any, float] | pd.Series | None
                           ) -> np.ndarray:
        if weights is None:
            return np.ones(len(volunteers))
        given = pd.Series(weights, dtype=float) if not isinstance(weights, pd.Series) else weights.astype(float)
        if not np.all(np.isfinite(given.to_numpy())) or (given < 0).any():
            raise ValueError("weights must be finite and not negative")
        default = float(given.median()) if len(given) else 1.0
        return given.reindex(volunteers).fillna(default).to_numpy(float)

    def _usable(self, x: np.ndarray, y: np.ndarray, r: np.ndarray, unit_codes: np.ndarray,
                volunteer_codes: np.ndarray, n_units: int) -> np.ndarray:
        keep = np.isfinite(x) & np.isfinite(y)
        if self.width is not None:
            keep &= (x >= 0) & (x <= self.width)
        if self.height is not None:
            keep &= (y >= 0) & (y <= self.height)
        max_radius = self.max_radius
        if max_radius is None and (self.width is not None or self.height is not None):
            max_radius = max(self.width or 0.0, self.height or 0.0) / 2
        has_radius = ~np.isnan(r)
        bad_radius = has_radius & ~((r >= self.min_radius) & np.isfinite(r))
        if max_radius is not None:
            bad_radius |= has_radius & (r > max_radius)
        keep &= ~bad_radius
        # the first max_marks_per_volunteer usable marks of each (unit, volunteer)
        idx = np.flatnonzero(keep)
        pair = unit_codes[idx].astype(np.int64) * (int(volunteer_codes.max(initial=0)) + 1) + volunteer_codes[idx]
        rank = pd.Series(pair).groupby(pair).cumcount().to_numpy()
        keep[idx[rank >= self.max_marks_per_volunteer]] = False
        return keep

    def _cluster(self, x: np.ndarray, y: np.ndarray, r: np.ndarray, is_point: np.ndarray, unit: np.ndarray,
                 volunteer: np.ndarray) -> np.ndarray:
        """Cluster id (0..k-1) of each mark; clusters never span units."""
        n = len(x)
        if n == 0:
            return np.zeros(0, dtype=int)
        # search radius around each mark that contains every mark it may be compatible with
        reach = np.where(is_point, self.point_tolerance,
                         self.centre_tolerance * (r * (2 + self.radius_tolerance) + self.pixel_tolerance) / 2
                         + self.pixel_tolerance)
        # lay units side by side so one sweep serves them all
        span = float(np.nanmax(np.abs(np.concatenate([x, y])))) + float(reach.max()) + 1.0
        offset = unit.astype(float) * 3 * span
        i, j = _candidate_pairs(x + offset, y, reach)
        pair = (volunteer[i] != volunteer[j]) & (unit[i] == unit[j])
        i, j = i[pair], j[pair]
        d = np.where(is_point[i], np.hypot(x[i] - x[j], y[i] - y[j]) / self.point_tolerance,
                     circle_dissimilarity(x[i], y[i], r[i], x[j], y[j], r[j], self.centre_tolerance,
                                          self.radius_tolerance, self.pixel_tolerance))
        ok = d <= 1.0
        i, j, d = i[ok], j[ok], d[ok]
        graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
        n_groups, group = connected_components(graph, directed=False)
        size = np.bincount(group, minlength=n_groups)
        edges = np.bincount(group[i], minlength=n_groups)
        # a group whose marks are all pairwise compatible is one cluster; the others need the linkage
        complete = edges == size * (size - 1) // 2
        hard = ~complete
        # position of each mark within its group; marks of a complete group share sub-cluster 0
        member_order = np.argsort(group, kind="stable")
        starts = np.concatenate(([0], np.cumsum(size)[:-1]))
        local = np.empty(n, dtype=np.int64)
        local[member_order] = np.arange(n) - starts[group[member_order]]
        sub = np.where(hard[group], local, 0)
        marks = (x, y, r, is_point, volunteer)
        lower = 2
        for pad in _BATCH_SIZES:  # small groups: agglomerated in lockstep, batched by padded size
            chosen = np.flatnonzero(hard & (size > lower) & (size <= pad))
            lower = pad
            if len(chosen):
                sub = self._batched_linkage(chosen, pad, group, local, marks, sub, n_groups)
        large = np.flatnonzero(hard & (size > _BATCH_SIZES[-1]))  # rare: crowded or adversarial input
        for g in large[size[large] <= _DENSE_LIMIT]:  # one by one, the exact linkage on a dense matrix
            members = member_order[starts[g]:starts[g] + size[g]]
            square = self._dissimilarities(*(a[members][None, :] for a in marks),
                                           np.ones((1, len(members)), bool))[0]
            sub[members] = _linkage_cut(square[_upper(len(members))], len(members), self.linkage)
        huge = large[size[large] > _DENSE_LIMIT]
        if len(huge):  # too big for a dense matrix: greedy complete linkage over the compatible pairs
            inside = np.isin(group[i], huge)
            sub = sub.copy()
            sub[np.isin(group, huge)] = _sparse_complete_cut(n, i[inside], j[inside], d[inside],
                                                             volunteer)[np.isin(group, huge)]
        label = group.astype(np.int64) * n + sub  # sub < n: local index, or a mark index (sparse path)
        return pd.factorize(label)[0]

    def _dissimilarities(self, x: np.ndarray, y: np.ndarray, r: np.ndarray, is_point: np.ndarray,
                         volunteer: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Pairwise dissimilarities (m, k, k) of m padded groups of k marks; cannot-links and padding huge."""
        d = np.where(is_point[:, :, None],
                     np.hypot(x[:, :, None] - x[:, None, :], y[:, :, None] - y[:, None, :]) / self.point_tolerance,
                     circle_dissimilarity(x[:, :, None], y[:, :, None], r[:, :, None], x[:, None, :], y[:, None, :],
                                          r[:, None, :], self.centre_tolerance, self.radius_tolerance,
                                          self.pixel_tolerance))
        apart = (volunteer[:, :, None] == volunteer[:, None, :]) | ~(valid[:, :, None] & valid[:, None, :])
        return np.where(apart | ~np.isfinite(d), _APART, d)

    def _batched_linkage(self, chosen: np.ndarray, pad: int, group: np.ndarray, local: np.ndarray,
                         marks: tuple[np.ndarray, ...], sub: np.ndarray, n_groups: int) -> np.ndarray:
        """Agglomerative clustering cut at 1 in each group of ``chosen`` (at most ``pad`` marks), all at once.

        Each step merges, in every group still able to, its two closest clusters (the least
        entry of its dissimilarity matrix, first in row order on ties) and updates their row
        by the linkage rule (maximum for complete, size-weighted mean for average linkage),
        the textbook Lance-Williams update, vectorised over groups.
        """
        m = len(chosen)
        slot = np.full(n_groups, -1)
        slot[chosen] = np.arange(m)
        inside = np.flatnonzero(slot[group] >= 0)
        c, k = slot[group[inside]], local[inside]
        padded = []
        for values, fill in zip(marks, (0.0, 0.0, 1.0, False, -1)):
            block = np.full((m, pad), fill, dtype=np.asarray(values).dtype)
            block[c, k] = values[inside]
            padded.append(block)
        valid = np.zeros((m, pad), dtype=bool)
        valid[c, k] = True
        matrix = self._dissimilarities(*padded, valid)
        sizes = valid.astype(float)
        labels = np.tile(np.arange(pad), (m, 1))
        live = np.arange(m)  # the groups still merging: rows of matrix and sizes, rows of labels
        for _ in range(pad - 1):
            rows = np.arange(len(live))
            a, b = np.divmod(matrix.reshape(len(live), -1).argmin(axis=1), pad)
            active = matrix[rows, a, b] <= 1.0
            if not active.any():
                break
            if active.sum() < 0.75 * len(live):  # a group that stops merging never starts again: drop them
                matrix, sizes, live, a, b = matrix[active], sizes[active], live[active], a[active], b[active]
                rows, active = np.arange(len(live)), np.ones(len(live), dtype=bool)
            r_, a_, b_ = rows[active], a[active], b[active]
            if self.linkage == "complete":
                merged = np.maximum(matrix[r_, a_, :], matrix[r_, b_, :])
            else:
                na, nb = sizes[r_, a_][:, None], sizes[r_, b_][:, None]
                merged = (na * matrix[r_, a_, :] + nb * matrix[r_, b_, :]) / (na + nb)
            sizes[r_, a_] += sizes[r_, b_]
            sizes[r_, b_] = 0
            matrix[r_, a_, :] = merged
            matrix[r_, :, a_] = merged
            matrix[r_, a_, a_] = _APART
            matrix[r_, b_, :] = _APART
            matrix[r_, :, b_] = _APART
            at = live[r_]
            labels[at] = np.where(labels[at] == b_[:, None], a_[:, None], labels[at])
        sub = sub.copy()
        sub[inside] = labels[c, k]
        return sub

    def _as_lists(self, units: pd.Index, kept_units: np.ndarray) -> list[list[dict[str, float]]]:
        lists: list[list[dict[str, float]]] = [[] for _ in range(len(units))]
        table = self.craters_
        xs = table["x"].to_numpy(float).round(2).tolist()
        ys = table["y"].to_numpy(float).round(2).tolist()
        radii = table["r"].to_numpy(float)
        rs = radii.round(2).tolist()
        has_r = (~np.isnan(radii)).tolist()
        supports = table["support"].to_numpy(int).tolist()
        shares = table["confidence"].to_numpy(float).round(4).tolist()
        for code, x, y, r, circle, support, share in zip(kept_units.tolist(), xs, ys, rs, has_r, supports, shares):
            lists[code].append({"x": x, "y": y, "r": r, "support": support, "confidence": share} if circle else
                               {"x": x, "y": y, "support": support, "confidence": share})
        return lists
