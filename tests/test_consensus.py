"""Consensus aggregators on small tables with known answers (no database, no server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microtasks.consensus import MajorityVote, MarkMajority, MultiLabelMajority


def labels(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["unit", "volunteer", "label"])


def marks(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["unit", "volunteer", "x", "y", "r"]).astype({"x": float, "y": float, "r": float})


def test_majority_vote_takes_the_most_common_label():
    """The label most volunteers gave wins, with the share of agreeing answers as confidence."""
    model = MajorityVote().fit(labels([(1, "a", "cat"), (1, "b", "dog"), (1, "c", "cat"), (2, "a", "dog")]))
    assert model.labels_.to_dict() == {1: "cat", 2: "dog"}
    assert model.confidences_.round(3).to_dict() == {1: 0.667, 2: 1.0}


def test_majority_vote_breaks_ties_with_the_injected_generator():
    """A tie is broken by the given generator: the same seed always gives the same label."""
    table = labels([(u, v, lab) for u in range(20) for v, lab in (("a", "cat"), ("b", "dog"))])
    first = MajorityVote(np.random.default_rng(7)).fit_predict(table)
    again = MajorityVote(np.random.default_rng(7)).fit_predict(table)
    assert first.equals(again)
    assert set(first) == {"cat", "dog"}


def test_majority_vote_breaks_a_units_tie_the_same_way_whatever_else_is_in_the_table():
    """A tied unit gets the same label fitted alone or among others: workers decide units in batches."""
    tied = [(u, v, lab) for u in range(20) for v, lab in (("a", "cat"), ("b", "dog"))]
    alone = {u: MajorityVote().fit_predict(labels([row for row in tied if row[0] == u]))[u] for u in range(20)}
    others = [(100 + u, v, lab) for u in range(30) for v, lab in (("a", "bird"), ("b", "fish"), ("c", "bird"))]
    together = MajorityVote().fit_predict(labels(others + tied))
    assert {u: together[u] for u in range(20)} == alone


def test_majority_vote_of_nothing_is_empty():
    """Empty input gives an empty result, not an error."""
    assert MajorityVote().fit_predict(labels([])).empty


def test_majority_vote_names_missing_columns():
    """A table without the needed columns is refused with the columns named."""
    with pytest.raises(ValueError, match="label"):
        MajorityVote().fit(pd.DataFrame({"unit": [1], "volunteer": ["a"]}))


def test_multilabel_keeps_labels_chosen_by_most_volunteers():
    """A tag is kept when more than half the volunteers chose it; an empty answer counts as a vote against."""
    table = pd.DataFrame({"unit": [1, 1, 1], "volunteer": ["a", "b", "c"],
                          "labels": [["sky", "sea"], ["sky"], []]})
    model = MultiLabelMajority().fit(table)
    assert model.labels_.to_dict() == {1: ["sky"]}
    assert model.confidences_[1] == pytest.approx(2 / 3)


def test_marks_agreed_by_most_volunteers_are_kept():
    """Two of three volunteers mark the same crater: it is kept at the median centre."""
    result = MarkMajority().fit_predict(marks([(1, "a", 100, 100, 20), (1, "b", 104, 98, 22),
                                               (1, "c", None, None, None)]))
    assert result[1] == [{"x": 102.0, "y": 99.0, "r": 21.0, "support": 2, "confidence": 0.6667}]


def test_one_eager_volunteer_cannot_make_a_crater():
    """Marks from one volunteer never share a cluster, so marking twice does not outvote the others."""
    result = MarkMajority().fit_predict(marks([(1, "a", 50, 50, 10), (1, "a", 51, 50, 10),
                                               (1, "b", None, None, None), (1, "c", None, None, None)]))
    assert result[1] == []


def test_close_craters_of_different_size_stay_apart():
    """A small crater beside a large one is not merged into it: radii must agree too."""
    rows = [(1, v, 100, 100, 40) for v in "abc"] + [(1, v, 110, 100, 8) for v in "abc"]
    result = MarkMajority().fit_predict(marks(rows))[1]
    assert sorted(m["r"] for m in result) == [8.0, 40.0]


def test_nobody_marking_anything_is_a_confident_empty_result():
    """When every volunteer saw nothing, the unit's result is empty with full confidence."""
    model = MarkMajority().fit(marks([(1, v, None, None, None) for v in "abc"]))
    assert model.marks_[1] == [] and model.confidences_[1] == 1.0


def test_points_cluster_within_the_point_tolerance():
    """Points (no radius) within the pixel tolerance are one mark."""
    result = MarkMajority(point_tolerance=5).fit_predict(marks([(1, "a", 10, 10, None), (1, "b", 12, 11, None),
                                                                (1, "c", 40, 40, None)]))
    assert result[1] == [{"x": 11.0, "y": 10.5, "support": 2, "confidence": 0.6667}]
