"""Incremental consensus from fitted reliabilities, against a full refit (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from microtasks.consensus import BayesianDawidSkene, MajorityVote
from microtasks.consensus.incremental import ReliabilityModel
from microtasks.results import adaptive_need


def crowd(n_units: int, n_volunteers: int, per_unit: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    truth = pd.Series(rng.integers(0, 4, n_units))
    skill = rng.uniform(0.35, 0.95, n_volunteers)
    rows = []
    for unit in range(n_units):
        for volunteer in rng.choice(n_volunteers, per_unit, replace=False):
            right = rng.random() < skill[volunteer]
            rows.append((unit, volunteer, truth[unit] if right else rng.choice([k for k in range(4) if k != truth[unit]])))
    return pd.DataFrame(rows, columns=["unit", "volunteer", "label"]), truth


def test_incremental_updates_stay_within_half_a_point_of_a_refit():
    """Units answered after the last fit, scored incrementally, are as accurate as a full refit (within 0.5 pt)."""
    answers, truth = crowd(4000, 120, 5, seed=3)
    early = answers[answers.unit < 3200]
    late = answers[answers.unit >= 3200]
    model = ReliabilityModel.from_fitted(BayesianDawidSkene().fit(early), early.groupby("volunteer").size())
    incremental = {unit: model.labels[int(np.argmax(model.posterior(list(zip(g.volunteer, g.label)))))]
                   for unit, g in late.groupby("unit")}
    refit = BayesianDawidSkene().fit(answers).labels_
    late_units = sorted(incremental)
    accuracy_incremental = np.mean([incremental[u] == truth[u] for u in late_units])
    accuracy_refit = np.mean([refit[u] == truth[u] for u in late_units])
    majority = MajorityVote().fit_predict(late)
    accuracy_majority = np.mean([majority[u] == truth[u] for u in late_units])
    assert abs(accuracy_incremental - accuracy_refit) <= 0.005
    assert accuracy_incremental > accuracy_majority + 0.01


def test_an_unseen_volunteer_counts_as_a_typical_one():
    """A volunteer the fit never saw is scored with the mean confusion matrix, not ignored."""
    answers, _ = crowd(300, 20, 5, seed=4)
    model = ReliabilityModel.from_fitted(BayesianDawidSkene().fit(answers), answers.groupby("volunteer").size())
    alone = model.posterior([("newcomer", model.labels[2])])
    assert int(np.argmax(alone)) == 2 and alone.max() < 1.0


def test_the_model_survives_a_json_round_trip():
    """Stored as JSON and rebuilt, the model gives the same posterior."""
    answers, _ = crowd(200, 15, 5, seed=5)
    model = ReliabilityModel.from_fitted(BayesianDawidSkene().fit(answers), answers.groupby("volunteer").size())
    volunteers = list(model.confusions)[:3]
    again = ReliabilityModel.from_json(model.to_json(), {v: model.confusions[v].tolist() for v in volunteers})
    unit = [(volunteers[0], model.labels[1]), (volunteers[1], model.labels[1]), (volunteers[2], model.labels[0])]
    assert np.allclose(model.posterior(unit), again.posterior(unit))


def test_adaptive_redundancy_retires_confident_units_early():
    """After its minimum answers, a unit whose confidence passes the threshold stops there."""
    assert adaptive_need(count=2, need=5, minimum=2, maximum=9, threshold=0.9, confidence=0.95) == 2


def test_adaptive_redundancy_asks_for_more_when_volunteers_disagree():
    """A full unit below the threshold asks for one more answer, up to the maximum."""
    assert adaptive_need(count=5, need=5, minimum=2, maximum=9, threshold=0.9, confidence=0.6) == 6
    assert adaptive_need(count=9, need=9, minimum=2, maximum=9, threshold=0.9, confidence=0.6) is None


def test_adaptive_redundancy_waits_for_the_minimum_and_can_be_off():
    """Before its minimum answers, or with no threshold set, a unit's need does not change."""
    assert adaptive_need(count=1, need=5, minimum=2, maximum=9, threshold=0.9, confidence=0.99) is None
    assert adaptive_need(count=5, need=5, minimum=2, maximum=9, threshold=None, confidence=0.1) is None


def test_a_consensus_that_stops_changing_retires_the_unit():
    """A marking unit whose consensus is unchanged by its latest answer retires, even below the threshold."""
    assert adaptive_need(count=3, need=6, minimum=2, maximum=9, threshold=0.95, confidence=0.7, stable=True) == 3
    assert adaptive_need(count=6, need=6, minimum=2, maximum=9, threshold=0.95, confidence=0.7, stable=True) is None


def test_marks_are_stable_when_every_crater_is_found_again():
    """The same craters within tolerance are stable; a crater more or moved away is not."""
    from microtasks.results import marks_stable

    before = {"marks": [{"x": 100.0, "y": 100.0, "r": 20.0}]}
    assert marks_stable(before, {"marks": [{"x": 103.0, "y": 99.0, "r": 21.0}]})
    assert not marks_stable(before, {"marks": [{"x": 130.0, "y": 100.0, "r": 20.0}]})
    assert not marks_stable(before, {"marks": before["marks"] + [{"x": 10.0, "y": 10.0, "r": 5.0}]})
    assert marks_stable({"marks": []}, {"marks": []}) and not marks_stable(None, {"marks": []})
