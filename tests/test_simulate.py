"""The volunteer simulator: documented noise, seeded by an injected generator."""

from __future__ import annotations

import numpy as np
import pandas as pd

from microtasks.simulate import CrowdModel, detection_probability, make_crowd, simulate_marks

TRUTH = pd.DataFrame({"unit": ["t"] * 3, "x": [50.0, 120.0, 200.0], "y": [50.0, 120.0, 200.0],
                      "r": [4.0, 12.0, 40.0]})


def simulate(seed: int, **model: float) -> pd.DataFrame:
    """Marks of a 10-volunteer crowd on TRUTH plus an empty unit, from one seed."""
    rng = np.random.default_rng(seed)
    crowd = make_crowd(10, rng, CrowdModel(**model))
    return simulate_marks(TRUTH, crowd, rng, width=250, height=250, model=CrowdModel(**model),
                          units=["t", "empty"])


def test_the_same_seed_gives_the_same_marks():
    """Two runs from the same seed are identical; another seed differs."""
    pd.testing.assert_frame_equal(simulate(7), simulate(7))
    assert not simulate(7).equals(simulate(8))


def test_small_craters_are_missed_more_often():
    """The chance of marking grows with the crater's radius."""
    p = detection_probability(np.array([3.5, 8.0, 16.0, 40.0]))
    assert np.all(np.diff(p) > 0) and p[0] < 0.5 < p[-1]


def test_marks_stay_on_the_tile_and_empty_answers_are_recorded():
    """Every centre lies on the tile; a volunteer who draws nothing leaves one NaN row."""
    marks = simulate(1, false_marks=0.0, spammer_share=0.0)
    drawn = marks.dropna(subset=["x"])
    assert drawn["x"].between(0, 250).all() and drawn["y"].between(0, 250).all()
    empty = marks[marks["unit"] == "empty"]
    assert len(empty) == 10 and empty["x"].isna().all()


def test_spammers_draw_many_random_marks():
    """A crowd of spammers draws tens of marks per tile, far more than the three craters."""
    marks = simulate(2, spammer_share=1.0, careless_share=0.0)
    per_volunteer = marks[marks["unit"] == "t"].groupby("volunteer").size()
    assert per_volunteer.mean() > 20
