"""CraterClustering: scale-relative clustering of volunteers' circles, one mark per volunteer per crater."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from microtasks.consensus import CraterClustering
from microtasks.consensus.craters import weighted_median
from web.cli_research import aggregate_marks

NAN = float("nan")


def table(rows: list[tuple]) -> pd.DataFrame:
    """A marks table from (unit, volunteer, x, y, r) tuples."""
    return pd.DataFrame(rows, columns=["unit", "volunteer", "x", "y", "r"])


def crowd_on(x: float, y: float, r: float, volunteers: str, unit: str = "u", jitter: float = 0.3) -> list[tuple]:
    """One mark per volunteer near (x, y, r), offset a little differently by each."""
    return [(unit, v, x + jitter * (i % 3 - 1), y + jitter * (i % 2), r + jitter * (i % 2))
            for i, v in enumerate(volunteers)]


def test_two_close_craters_stay_apart():
    """Two touching craters of similar size, marked by everyone, give two consensus craters."""
    marks = table(crowd_on(100, 100, 10, "abcde") + crowd_on(118, 100, 9, "abcde"))
    found = CraterClustering().fit_predict(marks)["u"]
    assert [round(m["x"]) for m in sorted(found, key=lambda m: m["x"])] == [100, 118]
    assert [m["support"] for m in found] == [5, 5]


def test_one_volunteer_marking_twice_counts_once():
    """A volunteer's repeated marks of one crater add one to its support, not two."""
    marks = table(crowd_on(50, 50, 8, "ab") + [("u", "a", 50.2, 50.1, 8.1), ("u", "c", NAN, NAN, NAN),
                                               ("u", "d", NAN, NAN, NAN)])
    found = CraterClustering().fit_predict(marks)["u"]
    assert [(m["support"], m["confidence"]) for m in found] == [(2, 0.5)]


def test_an_eager_volunteer_alone_cannot_make_a_crater():
    """One volunteer's ten marks on one spot, with others seeing nothing, make no crater."""
    marks = table([("u", "a", 30 + 0.1 * k, 30.0, 6.0) for k in range(10)] +
                  [("u", v, NAN, NAN, NAN) for v in "bcd"])
    assert CraterClustering().fit_predict(marks)["u"] == []


def test_a_spammers_random_marks_make_no_craters():
    """A spammer's 400 random circles next to an honest crowd add no crater."""
    rng = np.random.default_rng(3)
    spam = [("u", "spammer", x, y, r) for x, y, r in zip(rng.uniform(0, 250, 400), rng.uniform(0, 250, 400),
                                                          rng.uniform(3, 30, 400))]
    marks = table(crowd_on(60, 60, 12, "abcd") + crowd_on(180, 150, 6, "abcd") + spam)
    found = CraterClustering(width=250, height=250).fit_predict(marks)["u"]
    assert sorted((round(m["x"]), round(m["y"])) for m in found) == [(60, 60), (180, 150)]


def test_trust_weights_decide_a_split_vote():
    """With weights, a crater marked by the trusted half of the crowd is kept and by the untrusted half not."""
    marks = table(crowd_on(40, 40, 10, "ab") + crowd_on(120, 40, 10, "cd"))
    weights = {"a": 1.0, "b": 1.0, "c": 0.1, "d": 0.1}
    found = CraterClustering(min_share=0.5).fit_predict(marks, weights=weights)["u"]
    assert [round(m["x"]) for m in found] == [40]


def test_the_weighted_median_is_the_median_of_values_repeated_by_their_weights():
    """Integer weights: the same as numpy's median of each value repeated by its weight (ties, even
    counts and zero weights included)."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        groups = rng.integers(0, 4, 30)
        values = rng.choice([1.0, 2.0, 3.5, 7.0, rng.normal() * 50], 30)
        weights = rng.choice([0, 1, 2], 30)
        found = weighted_median(groups, values, weights.astype(float), 4)
        for g in range(4):
            mine = groups == g
            expected = np.median(np.repeat(values[mine], weights[mine])) if weights[mine].sum() else \
                (np.median(values[mine]) if mine.any() else np.nan)
            assert found[g] == pytest.approx(expected, nan_ok=True)


def test_empty_units_give_empty_results():
    """Units where nobody marked anything, and an empty table, give no craters and full unit confidence."""
    model = CraterClustering().fit(table([("u", "a", NAN, NAN, NAN), ("u", "b", NAN, NAN, NAN)]))
    assert model.marks_["u"] == [] and model.confidences_["u"] == 1.0
    assert CraterClustering().fit(table([])).craters_.empty


@pytest.mark.parametrize("bad", [
    ("u", "e", 400.0, 50.0, 10.0),      # centre outside the image
    ("u", "e", -5.0, 50.0, 10.0),       # negative coordinate
    ("u", "e", 50.0, 50.0, -10.0),      # negative radius
    ("u", "e", 50.0, 50.0, 1e9),        # absurd radius
    ("u", "e", float("inf"), 50.0, 10.0),  # not finite
])
def test_absurd_marks_are_dropped(bad):
    """Marks off the image, with a negative or absurd radius or not finite are ignored; the rest stands."""
    marks = table(crowd_on(50, 50, 10, "abcd") + [bad])
    model = CraterClustering(width=250, height=250).fit(marks)
    assert len(model.craters_) == 1 and model.labels_[-1] == -1


def test_thousands_of_marks_from_one_volunteer_are_capped_and_fast():
    """5,000 marks from one volunteer are cut to max_marks_per_volunteer and clustered in well under a second."""
    rng = np.random.default_rng(0)
    flood = [("u", "z", x, y, 5.0) for x, y in zip(rng.uniform(0, 250, 5000), rng.uniform(0, 250, 5000))]
    marks = table(crowd_on(100, 100, 10, "abc") + flood)
    start = time.perf_counter()
    model = CraterClustering(width=250, height=250, max_marks_per_volunteer=500).fit(marks)
    assert time.perf_counter() - start < 1.0
    assert (model.labels_[3:] >= 0).sum() == 500
    assert [round(m["x"]) for m in model.marks_["u"]] == [100]


def test_a_crowd_flooding_a_unit_is_clustered_in_bounded_time():
    """20,000 random circles from 40 volunteers (one huge group of touching marks) cluster quickly, one mark
    per volunteer per cluster."""
    rng = np.random.default_rng(1)
    n = 20000
    marks = pd.DataFrame({"unit": 0, "volunteer": rng.integers(0, 40, n), "x": rng.uniform(0, 1000, n),
                          "y": rng.uniform(0, 1000, n), "r": rng.uniform(2, 30, n)})
    start = time.perf_counter()
    model = CraterClustering().fit(marks)
    assert time.perf_counter() - start < 3.0
    clustered = pd.DataFrame({"cluster": model.labels_, "volunteer": marks["volunteer"]})
    assert not clustered[clustered["cluster"] >= 0].duplicated().any()


def test_points_cluster_within_the_point_tolerance():
    """Point marks (no radius) cluster within point_tolerance pixels and come back without r."""
    marks = table([("u", v, 20.0 + i, 20.0, NAN) for i, v in enumerate("abc")] + [("u", "d", 90.0, 90.0, NAN)])
    assert CraterClustering().fit_predict(marks)["u"] == [
        {"x": 21.0, "y": 20.0, "support": 3, "confidence": 0.75}]


def run_cli(tmp_path: Path, text: str) -> tuple[object, list[dict[str, str]]]:
    """Run aggregate-marks on the given CSV text; return the click result and the rows written."""
    marks, out = tmp_path / "marks.csv", tmp_path / "consensus.csv"
    marks.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(aggregate_marks, ["--marks", str(marks), "--out", str(out)])
    return result, list(csv.DictReader(out.open(encoding="utf-8"))) if out.exists() else []


def test_cli_round_trip(tmp_path):
    """aggregate-marks reads circles, points and 'nothing here' rows and writes unit,x,y,r,support,confidence."""
    result, rows = run_cli(tmp_path, "unit,volunteer,x,y,r\nt1,a,10,10,5\nt1,b,10.5,10,5\nt1,c,,,\n"
                                     "t2,a,40,40,\nt2,b,41,40,\n")
    assert result.exit_code == 0, result.output
    assert rows == [{"unit": "t1", "x": "10.25", "y": "10.00", "r": "5.00", "support": "2", "confidence": "0.6667"},
                    {"unit": "t2", "x": "40.50", "y": "40.00", "r": "", "support": "2", "confidence": "1.0000"}]


def test_cli_names_a_bad_line(tmp_path):
    """A malformed row fails with 'marks.csv, line N: reason' and a non-zero exit."""
    result, _ = run_cli(tmp_path, "unit,volunteer,x,y,r\nt1,a,10,10,5\nt1,b,ten,10,5\n")
    assert result.exit_code != 0
    assert "marks.csv, line 3: x is not a number: 'ten'" in result.output
