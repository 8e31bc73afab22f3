"""Scoring an answer to a gold unit against its known answer: a number from 0 (wrong) to 1 (right)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

#: A marked circle matches a known one when its centre is within this share of the known radius...
CENTRE_TOLERANCE = 0.5
#: ...and its radius within this share of the known radius.
RADIUS_TOLERANCE = 0.3
#: A marked point matches a known one within this many pixels.
POINT_TOLERANCE = 10.0


def score(known: dict[str, Any], given: dict[str, Any]) -> float:
    """Agreement of ``given`` with the ``known`` answer (both in canonical answer form).

    Single label: 1 when equal, else 0. Several labels: the Jaccard index of the two sets
    (1 when both are empty). Marks: the F1 of a one-to-one matching of given to known marks
    under the tolerances above (1 when both are empty).
    """
    if "label" in known:
        return 1.0 if given.get("label") == known["label"] else 0.0
    if "labels" in known:
        want, got = set(known["labels"]), set(given.get("labels", []))
        return 1.0 if not want and not got else len(want & got) / len(want | got)
    matched, n_known, n_given = match_marks(known.get("marks", []), given.get("marks", []))
    if n_known == 0 and n_given == 0:
        return 1.0
    return 2 * matched / (n_known + n_given)


def match_marks(known: list[dict[str, float]], given: list[dict[str, float]]) -> tuple[int, int, int]:
    """How many given marks match a known mark one-to-one (Hungarian matching on centre distance)."""
    return len(_matched_pairs(known, given)[0]), len(known), len(given)


def mark_feedback(known: list[dict[str, float]], given: list[dict[str, float]]) -> dict[str, list[int]]:
    """What a volunteer's marks on a gold unit got right and wrong, for the feedback on the page:
    ``missed``, the positions of the known marks no given mark matched, and ``false_marks``, the
    positions of the given marks that match no known mark.

    Example:
        >>> mark_feedback([{"x": 10, "y": 10, "r": 4}, {"x": 50, "y": 50, "r": 8}],
        ...               [{"x": 51, "y": 49, "r": 8}, {"x": 90, "y": 10, "r": 5}])
        {'missed': [0], 'false_marks': [1]}
    """
    rows, cols = _matched_pairs(known, given)
    return {"missed": sorted(set(range(len(known))) - set(rows.tolist())),
            "false_marks": sorted(set(range(len(given))) - set(cols.tolist()))}


def _matched_pairs(known: list[dict[str, float]], given: list[dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in known, in given) of the marks matched one-to-one under the tolerances above."""
    if not known or not given:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    k = np.array([[m["x"], m["y"], m.get("r", 0.0)] for m in known], dtype=float)
    g = np.array([[m["x"], m["y"], m.get("r", 0.0)] for m in given], dtype=float)
    distance = np.hypot(k[:, None, 0] - g[None, :, 0], k[:, None, 1] - g[None, :, 1])
    if "r" in known[0]:
        ok = (distance <= CENTRE_TOLERANCE * k[:, None, 2]) & (
            np.abs(g[None, :, 2] - k[:, None, 2]) <= RADIUS_TOLERANCE * k[:, None, 2])
    else:
        ok = distance <= POINT_TOLERANCE
    rows, cols = linear_sum_assignment(np.where(ok, distance, 1e9))
    good = ok[rows, cols]
    return rows[good], cols[good]
