"""Label aggregators (Wawa, Dawid–Skene, one-coin, Bayesian) and the redundancy planner on small tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microtasks.consensus import (
    DEFAULT_LABEL_METHOD,
    LABEL_METHODS,
    BayesianDawidSkene,
    DawidSkene,
    MajorityVote,
    OneCoinDawidSkene,
    Wawa,
)
from microtasks.consensus.planner import keep_at_most, plan_redundancy, smallest_redundancy

AGGREGATORS = [Wawa, DawidSkene, OneCoinDawidSkene, BayesianDawidSkene]
EM_MODELS = [DawidSkene, OneCoinDawidSkene, BayesianDawidSkene]
CONFUSION_MODELS = [DawidSkene, BayesianDawidSkene]


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["unit", "volunteer", "label"])


def truth_and_spammers(spammer: str, n_units: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Two volunteers always right, three spammers ("no" always, or a coin flip); the truth."""
    rng = np.random.default_rng(seed)
    truth = pd.Series(np.where(np.arange(n_units) % 2 == 0, "yes", "no"), index=np.arange(n_units))
    rows = [(u, v, truth[u]) for u in truth.index for v in ("r1", "r2")]
    for v in ("s1", "s2", "s3"):
        said = ["no"] * n_units if spammer == "always_no" else rng.choice(["yes", "no"], size=n_units)
        rows += [(u, v, label) for u, label in zip(truth.index, said)]
    return table(rows), truth


def fitted_outputs(model) -> list[pd.Series | pd.DataFrame]:
    return [model.probas_, model.labels_, model.confidences_, model.skills_, model.skills_std_]


# Known answers -----------------------------------------------------------------------------------


def test_wawa_skill_is_agreement_with_the_majority():
    """A volunteer who agrees with the majority on one unit of two has skill 0.5; the others 1."""
    model = Wawa().fit(table([(1, "a", "x"), (1, "b", "x"), (1, "c", "y"),
                              (2, "a", "y"), (2, "b", "y"), (2, "c", "y")]))
    assert model.skills_.to_dict() == {"a": 1.0, "b": 1.0, "c": 0.5}
    assert model.probas_.loc[1].to_dict() == pytest.approx({"x": 0.8, "y": 0.2})


def test_majority_vote_follows_spammers_who_always_say_no():
    """The baseline the weighted methods must beat: three "always no" spammers outvote two reliable volunteers."""
    answers, truth = truth_and_spammers("always_no")
    assert (MajorityVote().fit_predict(answers) == truth).mean() == 0.5


@pytest.mark.parametrize("model", CONFUSION_MODELS)
def test_confusion_models_ignore_spammers_who_always_say_no(model):
    """Dawid–Skene learns that "always no" carries no information and follows the reliable pair."""
    answers, truth = truth_and_spammers("always_no")
    assert (model().fit_predict(answers) == truth).all()


@pytest.mark.parametrize("model", [*CONFUSION_MODELS, OneCoinDawidSkene])
def test_em_models_outvote_coin_flipping_spammers(model):
    """Two reliable volunteers beat three coin-flippers on every unit, where majority vote does not."""
    answers, truth = truth_and_spammers("coin")
    assert (MajorityVote().fit_predict(answers) == truth).mean() < 0.9
    assert (model().fit_predict(answers) == truth).all()


@pytest.mark.parametrize("model", EM_MODELS)
def test_em_models_rank_reliable_volunteers_above_spammers(model):
    """Every reliable volunteer's estimated skill is above every spammer's."""
    skills = model().fit(truth_and_spammers("coin")[0]).skills_
    assert skills[["r1", "r2"]].min() > skills[["s1", "s2", "s3"]].max()


def test_dawid_skene_learns_a_volunteer_who_swaps_the_labels():
    """A volunteer who always gives the other label gets an off-diagonal confusion matrix."""
    answers, truth = truth_and_spammers("coin")
    swapped = answers[answers["volunteer"] == "r1"].assign(volunteer="swapper")
    swapped["label"] = swapped["label"].map({"yes": "no", "no": "yes"})
    errors = DawidSkene().fit(pd.concat([answers, swapped])).errors_.loc["swapper"]
    assert errors.loc["yes", "no"] > 0.95 and errors.loc["no", "yes"] > 0.95


def test_dawid_skene_class_prior_follows_the_labels():
    """With unanimous volunteers, the class prior is the share of units of each class."""
    rows = [(u, v, "a" if u < 3 else "b") for u in range(4) for v in ("p", "q")]
    assert DawidSkene().fit(table(rows)).priors_.to_dict() == pytest.approx({"a": 0.75, "b": 0.25})


def test_bayesian_prior_keeps_a_new_volunteer_short_of_certainty():
    """A volunteer seen twice gets a skill below 1 with a wide uncertainty; plain DS calls them perfect."""
    answers, _ = truth_and_spammers("coin")
    answers = pd.concat([answers, table([(0, "new", "yes"), (1, "new", "no")])])
    bayes, plain = BayesianDawidSkene().fit(answers), DawidSkene().fit(answers)
    assert plain.skills_["new"] == pytest.approx(1.0)
    assert bayes.skills_["new"] < 0.8
    assert bayes.skills_std_["new"] > 3 * bayes.skills_std_["r1"]


@pytest.mark.parametrize("model", AGGREGATORS)
def test_probabilities_of_each_unit_sum_to_one(model):
    """Every row of probas_ is a distribution and the confidence is its largest value."""
    fitted = model().fit(truth_and_spammers("coin")[0])
    assert np.allclose(fitted.probas_.sum(axis=1), 1.0)
    assert np.allclose(fitted.confidences_, fitted.probas_.max(axis=1))


@pytest.mark.parametrize("model", EM_MODELS)
def test_em_loss_never_increases(model):
    """EM climbs the (penalised) likelihood: loss_history_ is non-increasing."""
    fitted = model(tol=0.0, max_iter=30).fit(truth_and_spammers("coin")[0])
    assert len(fitted.loss_history_) > 3
    assert np.all(np.diff(fitted.loss_history_) <= 1e-12)


@pytest.mark.parametrize("model", EM_MODELS)
def test_em_stops_at_max_iter(model):
    """max_iter bounds the number of EM iterations."""
    assert model(max_iter=1).fit(truth_and_spammers("coin")[0]).n_iter_ == 1


@pytest.mark.parametrize("model", EM_MODELS)
def test_em_stops_when_the_loss_settles(model):
    """A loose tolerance stops EM long before max_iter."""
    fitted = model(tol=1.0, max_iter=50).fit(truth_and_spammers("coin")[0])
    assert fitted.n_iter_ == 2


# Labels of any type --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", AGGREGATORS)
def test_labels_are_returned_exactly_as_given(model):
    """'01' and '1' are different labels and come back as the same strings, never numbers."""
    fitted = model().fit(table([(1, "a", "01"), (1, "b", "01"), (2, "a", "1"), (2, "b", "1")]))
    assert fitted.labels_.to_dict() == {1: "01", 2: "1"}
    assert list(fitted.probas_.columns) == ["01", "1"]


@pytest.mark.parametrize("model", AGGREGATORS)
def test_labels_of_mixed_types_are_kept(model):
    """Labels that cannot be sorted together (an int, a string, a tuple) are kept as they were."""
    fitted = model().fit(table([(1, "a", 3), (1, "b", 3), (2, "a", "x"), (2, "b", "x"),
                                (3, "a", ("p", 1)), (3, "b", ("p", 1))]))
    assert fitted.labels_.to_dict() == {1: 3, 2: "x", 3: ("p", 1)}


# Gold ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", AGGREGATORS)
def test_gold_fixes_a_units_label(model):
    """A gold unit takes its known label with confidence 1, whatever the volunteers said."""
    answers = table([(1, "a", "cat"), (1, "b", "cat"), (1, "c", "dog"), (2, "a", "dog"), (2, "b", "dog")])
    fitted = model().fit(answers, gold=pd.Series({1: "dog"}))
    assert fitted.labels_[1] == "dog" and fitted.confidences_[1] == 1.0


@pytest.mark.parametrize("model", AGGREGATORS)
def test_gold_raises_the_skill_of_a_volunteer_the_crowd_outvoted(model):
    """An expert who disagrees with a wrong crowd is rated higher once gold shows they were right."""
    rows = [(u, v, "cat") for u in range(10) for v in ("a", "b", "c")] + [(u, "expert", "dog") for u in range(10)]
    rows += [(u, v, "cat") for u in range(10, 20) for v in ("a", "b", "c", "expert")]
    answers = table(rows)
    gold = pd.Series({u: "dog" for u in range(5)})
    without, with_gold = model().fit(answers), model().fit(answers, gold=gold)
    assert with_gold.skills_["expert"] > without.skills_["expert"] + 0.1


@pytest.mark.parametrize("model", AGGREGATORS)
def test_a_gold_label_nobody_gave_becomes_a_column(model):
    """Gold may name a label no volunteer used; it joins the label set."""
    fitted = model().fit(table([(1, "a", "cat"), (2, "a", "cat")]), gold=pd.Series({2: "owl"}))
    assert fitted.labels_[2] == "owl"
    assert set(fitted.probas_.columns) == {"cat", "owl"}


@pytest.mark.parametrize("model", AGGREGATORS)
def test_gold_for_units_nobody_answered_is_ignored(model):
    """Gold on a unit without answers adds no unit and no label."""
    fitted = model().fit(table([(1, "a", "cat")]), gold=pd.Series({9: "owl"}))
    assert list(fitted.labels_.index) == [1] and list(fitted.probas_.columns) == ["cat"]


def test_gold_giving_a_unit_two_labels_is_refused():
    """Gold with a repeated unit is an error, not a silent choice."""
    with pytest.raises(ValueError, match="more than one label"):
        DawidSkene().fit(table([(1, "a", "x")]), gold=pd.Series(["x", "y"], index=[1, 1]))


# Degenerate input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", AGGREGATORS)
def test_empty_input_gives_empty_outputs(model):
    """No answers: every output is empty, nothing raises."""
    fitted = model().fit(table([]))
    assert all(len(output) == 0 for output in fitted_outputs(fitted))


@pytest.mark.parametrize("model", AGGREGATORS)
def test_a_single_volunteer_decides_every_unit(model):
    """With one volunteer, each unit takes that volunteer's label."""
    labels = model().fit_predict(table([(1, "a", "x"), (2, "a", "y"), (3, "a", "x")]))
    assert labels.to_dict() == {1: "x", 2: "y", 3: "x"}


@pytest.mark.parametrize("model", AGGREGATORS)
def test_a_single_label_is_certain(model):
    """When everyone gave the same one label, every unit has it with confidence 1."""
    fitted = model().fit(table([(1, "a", "x"), (2, "b", "x"), (2, "a", "x")]))
    assert fitted.labels_.to_dict() == {1: "x", 2: "x"} and (fitted.confidences_ == 1.0).all()


@pytest.mark.parametrize("model", AGGREGATORS)
def test_degenerate_tables_never_give_nan(model):
    """Units with one answer, a label one volunteer used once, one-answer volunteers: no NaN anywhere."""
    answers, _ = truth_and_spammers("coin", n_units=10)
    answers = pd.concat([answers, table([(100, "lonely", "maybe"), (101, "r1", "yes"), (0, "once", "odd")])])
    fitted = model().fit(answers)
    assert not any(output.isna().to_numpy().any() for output in fitted_outputs(fitted))
    assert fitted.labels_[101] == "yes"


@pytest.mark.parametrize("model", AGGREGATORS)
def test_a_table_without_the_needed_columns_is_refused(model):
    """A missing column is named."""
    with pytest.raises(ValueError, match="label"):
        model().fit(pd.DataFrame({"unit": [1], "volunteer": ["a"]}))


@pytest.mark.parametrize("model", AGGREGATORS)
def test_an_empty_cell_is_refused(model):
    """An answer without a label is an error, not a label called NaN."""
    with pytest.raises(ValueError, match="empty"):
        model().fit(table([(1, "a", "x"), (1, "b", None)]))


def test_bayesian_pseudo_counts_below_one_are_refused():
    """A Dirichlet pseudo-count under 1 has no posterior mode, so it is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        BayesianDawidSkene(correct_prior=0.5)


# Determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", AGGREGATORS)
def test_the_same_seed_gives_the_same_result(model):
    """Ties are broken by the injected generator: the same seed gives the same labels."""
    ties = table([(u, v, lab) for u in range(30) for v, lab in (("a", "cat"), ("b", "dog"))])
    first = model(rng=np.random.default_rng(5)).fit_predict(ties)
    again = model(rng=np.random.default_rng(5)).fit_predict(ties)
    assert first.equals(again) and set(first) == {"cat", "dog"}


def test_the_default_method_is_the_bayesian_dawid_skene():
    """The command line's default is the recommended Bayesian Dawid–Skene."""
    assert LABEL_METHODS[DEFAULT_LABEL_METHOD] is BayesianDawidSkene


# Redundancy planner ------------------------------------------------------------------------------


def noisy_crowd(n_units: int = 60, n_volunteers: int = 7, accuracy: float = 0.7) -> tuple[pd.DataFrame, pd.Series]:
    """Every volunteer answers every unit, right with the given probability (seeded); the truth."""
    rng = np.random.default_rng(3)
    truth = pd.Series(rng.choice(["a", "b"], size=n_units))
    right = rng.random((n_units, n_volunteers)) < accuracy
    rows = [(u, f"v{v}", truth[u] if right[u, v] else ("b" if truth[u] == "a" else "a"))
            for u in range(n_units) for v in range(n_volunteers)]
    return table(rows), truth


def test_the_planner_keeps_at_most_r_answers_per_unit():
    """A simulated redundancy keeps r answers of each unit, or all of a unit that has fewer."""
    answers = table([(1, v, "x") for v in "abcde"] + [(2, "a", "y")])
    kept = keep_at_most(answers, 3, np.random.default_rng(0))
    assert kept.groupby("unit").size().to_dict() == {1: 3, 2: 1}


def test_simulated_accuracy_grows_with_redundancy():
    """Against gold, seven noisy volunteers per unit are more accurate than one."""
    answers, truth = noisy_crowd()
    result = plan_redundancy(answers, truth, redundancies=[1, 7], method="majority_vote", repeats=3)
    one, seven = result["accuracy"]
    assert one < 0.8 and seven > 0.9 and list(result["reference"].unique()) == ["gold"]


def test_the_planner_names_the_least_redundancy_reaching_a_target():
    """smallest_redundancy picks the first redundancy at the target, or None when none reaches it."""
    plan = pd.DataFrame({"redundancy": [1, 3, 5], "accuracy": [0.7, 0.91, 0.95]})
    assert smallest_redundancy(plan, 0.9) == 3 and smallest_redundancy(plan, 0.99) is None


def test_the_plan_of_no_answers_is_empty():
    """Nothing to simulate gives an empty plan, not rows of zeros."""
    assert plan_redundancy(table([])).empty
