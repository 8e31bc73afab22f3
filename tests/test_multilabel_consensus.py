"""Multi-label consensus (MultiLabelDawidSkene) on small tables, and its incremental model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microtasks.consensus import MultiLabelDawidSkene, MultiLabelMajority
from microtasks.consensus.incremental import ReliabilityModel, TagReliabilityModel

TAGS = ["bird", "tree", "water", "car"]


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["unit", "volunteer", "labels"])


def careful_and_careless(n_units: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two careful volunteers tick exactly the true tags; three careless ones tick each tag at random."""
    rng = np.random.default_rng(seed)
    truth = rng.random((n_units, len(TAGS))) < 0.3
    rows = []
    for unit in range(n_units):
        true_tags = [t for t, on in zip(TAGS, truth[unit]) if on]
        rows += [(unit, v, true_tags) for v in ("c1", "c2")]
        rows += [(unit, v, [t for t in TAGS if rng.random() < 0.5]) for v in ("x1", "x2", "x3")]
    return table(rows), truth


def crowd(n_units: int, n_volunteers: int, per_unit: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Volunteers of mixed sensitivity (0.4-0.95) and specificity (0.7-0.99) over tags of prevalence 0.1-0.5."""
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.1, 0.5, len(TAGS))
    truth = rng.random((n_units, len(TAGS))) < prevalence
    sensitivity, specificity = rng.uniform(0.4, 0.95, n_volunteers), rng.uniform(0.7, 0.99, n_volunteers)
    rows = []
    for unit in range(n_units):
        for v in rng.choice(n_volunteers, per_unit, replace=False):
            draw = rng.random(len(TAGS))
            ticked = np.where(truth[unit], draw < sensitivity[v], draw > specificity[v])
            rows.append((unit, int(v), [t for t, on in zip(TAGS, ticked) if on]))
    return table(rows), truth


def as_matrix(labels: pd.Series, units) -> np.ndarray:
    return np.array([[tag in labels[u] for tag in TAGS] for u in units])


def test_reliable_volunteers_outweigh_careless_ones():
    """Three careless volunteers outvote two careful ones under a majority, not under the model."""
    answers, truth = careful_and_careless()
    model = as_matrix(MultiLabelDawidSkene(labels=TAGS).fit_predict(answers), range(len(truth)))
    majority = as_matrix(MultiLabelMajority().fit_predict(answers), range(len(truth)))
    assert (model == truth).all()
    assert (majority != truth).any()


def test_careful_volunteers_get_the_higher_skill():
    """Skills are balanced accuracies: near 1 for the careful, near chance (1/2) for the careless."""
    fitted = MultiLabelDawidSkene(labels=TAGS).fit(careful_and_careless()[0])
    assert fitted.skills_[["c1", "c2"]].min() > 0.9
    assert fitted.skills_[["x1", "x2", "x3"]].max() < 0.7


def test_a_volunteer_who_never_ticks_has_a_low_sensitivity_and_a_high_specificity():
    """Leaving every box empty is a specific failure: it misses present tags but never adds absent ones."""
    answers, _ = careful_and_careless()
    lazy = table([(unit, "lazy", []) for unit in answers.unit.unique()])
    fitted = MultiLabelDawidSkene(labels=TAGS).fit(pd.concat([answers, lazy], ignore_index=True))
    assert fitted.sensitivities_["lazy"] < 0.1 and fitted.specificities_["lazy"] > 0.9


def test_each_tag_learns_its_own_prevalence():
    """A tag on most units gets a high prior, a tag on none a low one."""
    rows = [(u, v, ["tree"] + (["bird"] if u == 0 else [])) for u in range(20) for v in ("a", "b", "c")]
    priors = MultiLabelDawidSkene(labels=TAGS).fit(table(rows)).priors_
    assert priors["tree"] > 0.9 and priors["car"] < 0.1 and priors["car"] < priors["bird"] < priors["tree"]


def test_a_tag_nobody_ticked_gets_a_probability():
    """The project's tags are all columns, each unit's probability of an unticked tag is low."""
    fitted = MultiLabelDawidSkene(labels=TAGS).fit(table([(1, "a", ["bird"]), (1, "b", ["bird"])]))
    assert list(fitted.probas_.columns) == TAGS
    assert fitted.probas_.loc[1, "car"] < 0.5 and fitted.labels_[1] == ["bird"]


def test_gold_fixes_a_units_tags_and_measures_its_volunteers():
    """A gold unit keeps its known tags, and a volunteer who agrees with gold gains skill."""
    answers, truth = careful_and_careless(n_units=10)
    gold_units = list(range(10))
    gold = pd.Series([[t for t, on in zip(TAGS, truth[u]) if on] for u in gold_units], index=gold_units)
    without = MultiLabelDawidSkene(labels=TAGS).fit(answers)
    with_gold = MultiLabelDawidSkene(labels=TAGS).fit(answers, gold)
    assert all(with_gold.labels_[u] == gold[u] for u in gold_units)
    assert with_gold.skills_["c1"] >= without.skills_["c1"]
    assert with_gold.skills_std_["c1"] > 0


def test_gold_for_a_unit_nobody_answered_is_ignored():
    fitted = MultiLabelDawidSkene(labels=TAGS).fit(table([(1, "a", ["bird"])]), pd.Series({99: ["car"]}))
    assert list(fitted.labels_.index) == [1]


def test_em_loss_never_increases():
    fitted = MultiLabelDawidSkene(labels=TAGS).fit(crowd(300, 30, 5, seed=1)[0])
    assert np.all(np.diff(fitted.loss_history_) <= 1e-9)


def test_confidence_is_the_least_decisive_tag():
    fitted = MultiLabelDawidSkene(labels=TAGS).fit(crowd(200, 20, 5, seed=2)[0])
    probas = fitted.probas_.to_numpy()
    assert np.allclose(fitted.confidences_.to_numpy(), np.maximum(probas, 1 - probas).min(axis=1))


def test_tags_are_returned_exactly_as_given():
    """Tags keep their type: integer tags stay integers, and their order is the project's."""
    fitted = MultiLabelDawidSkene(labels=[3, 1, 2]).fit(table([(1, "a", [1, 2]), (1, "b", [1, 2])]))
    assert list(fitted.probas_.columns) == [3, 1, 2] and fitted.labels_[1] == [1, 2]


def test_empty_input_gives_empty_outputs():
    fitted = MultiLabelDawidSkene(labels=TAGS).fit(table([]))
    assert fitted.labels_.empty and fitted.probas_.shape == (0, len(TAGS)) and fitted.skills_.empty


def test_degenerate_tables_never_give_nan():
    """One volunteer, one answer per unit, only empty answers: numbers, never NaN."""
    for rows in ([(1, "a", [])], [(1, "a", ["bird"]), (2, "a", [])], [(u, "a", ["car"]) for u in range(5)]):
        fitted = MultiLabelDawidSkene().fit(table(rows))
        for output in (fitted.probas_, fitted.confidences_, fitted.skills_, fitted.skills_std_, fitted.priors_):
            assert not output.isna().to_numpy().any()


@pytest.mark.parametrize("cell", ["bird", 3, {"tag": "bird"}])
def test_a_cell_that_is_not_a_list_of_tags_is_refused(cell):
    """A bare string is not a list of tags (it would read as its letters); the error names the row."""
    answers = table([(1, "a", ["bird"]), (1, "b", cell)])
    with pytest.raises(ValueError, match="answers row 1"):
        MultiLabelDawidSkene().fit(answers)


def test_a_table_without_the_labels_column_is_refused():
    with pytest.raises(ValueError, match="labels"):
        MultiLabelDawidSkene().fit(pd.DataFrame({"unit": [1], "volunteer": ["a"], "label": ["bird"]}))


def test_pseudo_counts_below_one_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        MultiLabelDawidSkene(correct_prior=0.5)


def test_incremental_updates_stay_within_half_a_point_of_a_refit():
    """Units answered after the last fit, scored from its reliabilities, are as accurate as a refit (per tag)."""
    answers, truth = crowd(3000, 100, 5, seed=3)
    early, late = answers[answers.unit < 2400], answers[answers.unit >= 2400]
    model = TagReliabilityModel.from_fitted(MultiLabelDawidSkene(labels=TAGS).fit(early))
    units = sorted(late.unit.unique())
    incremental = np.array([model.posterior(list(zip(g.volunteer, g.labels))) > 0.5
                            for _, g in late.groupby("unit")])
    refit = as_matrix(MultiLabelDawidSkene(labels=TAGS).fit_predict(answers), units)
    majority = as_matrix(MultiLabelMajority().fit_predict(late), units)
    accuracy = {name: (found == truth[units]).mean()
                for name, found in (("incremental", incremental), ("refit", refit), ("majority", majority))}
    assert abs(accuracy["incremental"] - accuracy["refit"]) <= 0.005
    assert accuracy["incremental"] > accuracy["majority"] + 0.01


def test_the_tag_model_survives_a_json_round_trip():
    """Stored as JSON (and read back by the single-label loader) it is the same model."""
    answers, _ = crowd(200, 10, 5, seed=5)
    model = TagReliabilityModel.from_fitted(MultiLabelDawidSkene(labels=TAGS).fit(answers))
    again = ReliabilityModel.from_json(model.to_json(), {v: m.tolist() for v, m in model.confusions.items()})
    unit = [(0, ["bird"]), (1, ["bird", "car"]), ("newcomer", [])]
    assert isinstance(again, TagReliabilityModel)
    assert np.allclose(model.posterior(unit), again.posterior(unit))


def test_no_volunteer_is_certain_in_the_incremental_model():
    """A volunteer the fit found flawless still cannot veto a tag on a new unit alone."""
    answers, _ = careful_and_careless()
    model = TagReliabilityModel.from_fitted(MultiLabelDawidSkene(labels=TAGS).fit(answers))
    assert all(0 < p < 1 for m in model.confusions.values() for p in m.ravel())
    posterior = model.posterior([("c1", []), ("c2", ["bird"]), ("newcomer", ["bird"])])
    assert 0 < posterior[0] < 1
