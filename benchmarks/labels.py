"""Label consensus benchmark (issue 4): accuracy on five real data sets and speed on 1M synthetic answers.

crowd-kit is compared in the same run when it can be imported. It lives only in the
benchmark's own environment, never in the project's dependencies (it needs scikit-learn < 1.6):

    python3 -m venv /tmp/ck-venv && /tmp/ck-venv/bin/pip install crowd-kit 'scikit-learn<1.6' -e /work/main

Run (prints Markdown tables; about 6 minutes on 2 shared cores, most of it crowd-kit):

    /tmp/ck-venv/bin/python benchmarks/labels.py

Data: ``../shared/data/labels/<name>/{label,truth}.csv`` beside the checkout (see that
folder's README). Repeated (item, worker) pairs are de-duplicated keeping the FIRST answer.
Accuracy is over the truth items that have at least one answer; d_product also gets the
F1 score of class 1 (the rare class). Every method runs with its default configuration:
nothing is tuned per data set. Ties are broken with ``np.random.default_rng(0)`` (ours) and
``np.random.seed(0)`` (crowd-kit, which uses numpy's global state).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from microtasks.consensus import (
    BayesianDawidSkene,
    DawidSkene,
    MajorityVote,
    MultiLabelDawidSkene,
    MultiLabelMajority,
    OneCoinDawidSkene,
    Wawa,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "labels"
DATA_SETS = ("d_product", "d_possent", "s_rel", "s_adult", "bluebird")
#: Best published or crowd-kit accuracy per data set (../shared/data/labels/README.md).
TARGETS = {"d_product": 0.9378, "d_possent": 0.9600, "s_rel": 0.6164, "s_adult": 0.766, "bluebird": 0.898}

OURS: dict[str, Callable[[], object]] = {
    "MajorityVote": MajorityVote,
    "Wawa": Wawa,
    "DawidSkene": DawidSkene,
    "OneCoinDawidSkene": OneCoinDawidSkene,
    "BayesianDawidSkene (default)": BayesianDawidSkene,
}


def crowdkit_methods(include_glad: bool = True) -> dict[str, Callable[[], object]]:
    """crowd-kit's aggregators by name, or nothing when crowd-kit is not importable."""
    try:
        from crowdkit import aggregation as ck
    except ImportError:
        return {}
    methods: dict[str, Callable[[], object]] = {"ck MajorityVote": ck.MajorityVote, "ck Wawa": ck.Wawa,
                                                "ck DawidSkene": ck.DawidSkene}
    if hasattr(ck, "OneCoinDawidSkene"):
        methods["ck OneCoinDawidSkene"] = ck.OneCoinDawidSkene
    if include_glad:
        methods["ck GLAD"] = ck.GLAD
    return methods


def load(name: str, root: Path = DATA) -> tuple[pd.DataFrame, pd.Series, int]:
    """Answers (unit, volunteer, label) with repeats dropped (first kept), the truth, and how many were dropped."""
    raw = pd.read_csv(root / name / "label.csv")
    answers = raw.drop_duplicates(["item", "worker"], keep="first")
    answers = answers.rename(columns={"item": "unit", "worker": "volunteer"}).reset_index(drop=True)
    truth = pd.read_csv(root / name / "truth.csv").set_index("item")["truth"]
    return answers, truth, len(raw) - len(answers)


def score(labels: pd.Series, truth: pd.Series) -> tuple[float, float]:
    """Accuracy over the answered truth items, and F1 of class 1."""
    common = truth.index.intersection(labels.index)
    predicted, actual = labels.loc[common].to_numpy(), truth.loc[common].to_numpy()
    accuracy = float((predicted == actual).mean())
    hits = float(((predicted == 1) & (actual == 1)).sum())
    f1 = 2 * hits / max(float((predicted == 1).sum() + (actual == 1).sum()), 1.0)
    return accuracy, f1


def run_ours(factory: Callable[[], object], answers: pd.DataFrame) -> tuple[pd.Series, float]:
    start = time.perf_counter()
    model = factory()
    labels = model.fit_predict(answers)  # type: ignore[attr-defined]
    return labels, time.perf_counter() - start


def run_crowdkit(factory: Callable[[], object], answers: pd.DataFrame) -> tuple[pd.Series, float]:
    table = answers.rename(columns={"unit": "task", "volunteer": "worker"})
    np.random.seed(0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = factory().fit_predict(table)  # type: ignore[attr-defined]
    return labels, time.perf_counter() - start


def accuracy_tables(with_crowdkit: bool) -> None:
    methods = [(name, run_ours, f) for name, f in OURS.items()]
    if with_crowdkit:
        methods += [(name, run_crowdkit, f) for name, f in crowdkit_methods().items()]
    data = {name: load(name) for name in DATA_SETS}
    print("### Accuracy on real data (fraction of truth items correct; d_product: accuracy / F1 of class 1)\n")
    for name, (answers, truth, dropped) in data.items():
        answered = len(truth.index.intersection(answers["unit"].unique()))
        print(f"- {name}: {len(answers):,} answers after dropping {dropped:,} repeated (item, worker) pairs "
              f"(first answer kept); {answered:,} answered truth items")
    print()
    print("| method | " + " | ".join(DATA_SETS) + " | seconds (all five) |")
    print("|---|" + "---|" * (len(DATA_SETS) + 1))
    best: dict[str, float] = {}
    for method, runner, factory in methods:
        cells, total = [], 0.0
        for name, (answers, truth, _) in data.items():
            labels, seconds = runner(factory, answers)
            total += seconds
            accuracy, f1 = score(labels, truth)
            if not method.startswith("ck "):
                best[name] = max(best.get(name, 0.0), accuracy)
            cells.append(f"{accuracy:.4f} / {f1:.4f}" if name == "d_product" else f"{accuracy:.4f}")
        print(f"| {method} | " + " | ".join(cells) + f" | {total:.1f} |", flush=True)
    print("| target (best published or crowd-kit) | " + " | ".join(f"{TARGETS[n]:.4f}" for n in DATA_SETS) + " | |")
    print("| our best method, target met? | " + " | ".join(
        f"{best[n]:.4f} {'yes' if round(best[n], 4) >= TARGETS[n] else 'no'}" for n in DATA_SETS) + " | |")
    print()


def gold_table(fraction: float = 0.1) -> None:
    """Held-out accuracy when a random share of the truth (seeded) is given as gold."""
    print(f"### Gold: {fraction:.0%} of each data set's truth items given as gold (seed 0); accuracy on the "
          f"other 90%, without and with that gold\n")
    print("| method | " + " | ".join(DATA_SETS) + " |")
    print("|---|" + "---|" * len(DATA_SETS))
    data = {name: load(name) for name in DATA_SETS}
    for method, factory in (("Wawa", Wawa), ("DawidSkene", DawidSkene), ("BayesianDawidSkene", BayesianDawidSkene)):
        cells = []
        for answers, truth, _ in data.values():
            answered = truth[truth.index.isin(answers["unit"])]
            gold = answered.sample(frac=fraction, random_state=0)
            held_out = answered.drop(gold.index)
            without = score(factory().fit_predict(answers), held_out)[0]
            with_gold = score(factory().fit_predict(answers, gold=gold), held_out)[0]
            cells.append(f"{without:.4f} → {with_gold:.4f}")
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)
    print()


def sensitivity_table() -> None:
    """How much the default's accuracy moves with its prior strength and tolerance (not used to tune it)."""
    print("### Sensitivity of BayesianDawidSkene to its hyperparameters (default: correct 2, wrong 1, "
          "class 1, tol 1e-5)\n")
    print("| correct_prior / wrong_prior, tol | " + " | ".join(DATA_SETS) + " |")
    print("|---|" + "---|" * len(DATA_SETS))
    data = {name: load(name) for name in DATA_SETS}
    grid = [(2.0, 1.0, 1e-5), (1.5, 1.0, 1e-5), (3.0, 1.0, 1e-5), (5.0, 1.0, 1e-5), (4.0, 2.0, 1e-5),
            (2.0, 1.0, 1e-4), (2.0, 1.0, 1e-6), (2.0, 1.0, 1e-7)]
    for correct, wrong, tol in grid:
        cells = []
        for answers, truth, _ in data.values():
            model = BayesianDawidSkene(correct_prior=correct, wrong_prior=wrong, tol=tol)
            cells.append(f"{score(model.fit_predict(answers), truth)[0]:.4f}")
        print(f"| {correct:g} / {wrong:g}, {tol:g} | " + " | ".join(cells) + " |", flush=True)
    print()


def pilot_crowd(seed: int, n_labels: int, n_units: int = 60, n_volunteers: int = 7,
                accuracy: float = 0.7) -> tuple[pd.DataFrame, pd.Series]:
    """A small pilot: every volunteer equally good (errors uniform over the other labels), all answer every unit."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n_units)
    right = rng.random((n_units, n_volunteers)) < accuracy
    wrong = (truth[:, None] + rng.integers(1, max(n_labels, 2), (n_units, n_volunteers))) % n_labels
    label = np.where(right, truth[:, None], wrong)
    answers = pd.DataFrame({"unit": np.repeat(np.arange(n_units), n_volunteers),
                            "volunteer": np.tile(np.arange(n_volunteers), n_units), "label": label.ravel()})
    return answers, pd.Series(truth)


def pilot_table() -> None:
    """The regime where majority vote should win: few units, equally good volunteers, few answers per unit."""
    from microtasks.consensus.planner import keep_at_most

    print("### Small pilots with equally good volunteers (60 units, 7 volunteers at 70% accuracy, 2 and 4 "
          "labels, 6 seeds, keeping 2, 3 or 5 answers per unit): mean accuracy\n")
    print("| method | mean accuracy over 36 pilots |")
    print("|---|---|")
    for method, factory in (("MajorityVote", MajorityVote), ("Wawa", Wawa), ("DawidSkene", DawidSkene),
                            ("OneCoinDawidSkene", OneCoinDawidSkene), ("BayesianDawidSkene", BayesianDawidSkene)):
        scores = []
        for seed in range(6):
            for n_labels in (2, 4):
                answers, truth = pilot_crowd(seed, n_labels)
                rng = np.random.default_rng(seed)
                for per_unit in (2, 3, 5):
                    scores.append(score(factory().fit_predict(keep_at_most(answers, per_unit, rng)), truth)[0])
        print(f"| {method} | {np.mean(scores):.4f} |", flush=True)
    print()


def synthetic(n_units: int = 200_000, n_volunteers: int = 5_000, n_labels: int = 4, per_unit: int = 5,
              seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Seeded synthetic answers: 5 distinct volunteers per unit, volunteers of varied skill.

    70% of volunteers are good (accuracy uniform in [0.6, 0.95]), 20% mediocre ([0.3, 0.6]),
    10% spammers (answer uniformly at random). A volunteer's errors are split over the
    other labels by a Dirichlet(1) draw per true class. Class proportions 0.4/0.3/0.2/0.1.
    """
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n_volunteers, p=[0.7, 0.2, 0.1])
    accuracy = np.where(kind == 0, rng.uniform(0.6, 0.95, n_volunteers), rng.uniform(0.3, 0.6, n_volunteers))
    errors = rng.dirichlet(np.ones(n_labels - 1), size=(n_volunteers, n_labels))
    confusion = np.empty((n_volunteers, n_labels, n_labels))
    for k in range(n_labels):  # a loop over the 4 classes, building the generator's matrices
        others = [j for j in range(n_labels) if j != k]
        confusion[:, k, k] = accuracy
        confusion[:, k, others] = (1.0 - accuracy)[:, None] * errors[:, k, :]
    confusion[kind == 2] = 1.0 / n_labels
    prior = np.array([0.4, 0.3, 0.2, 0.1])[:n_labels]
    truth = rng.choice(n_labels, size=n_units, p=prior / prior.sum())
    # Distinct volunteers per unit: a random start and a stride coprime with the number of volunteers.
    start = rng.integers(0, n_volunteers, n_units)
    stride = rng.integers(1, n_volunteers, n_units)
    stride = np.where(np.gcd(stride, n_volunteers) == 1, stride, 1)
    volunteer = (start[:, None] + np.arange(per_unit)[None, :] * stride[:, None]) % n_volunteers
    unit = np.repeat(np.arange(n_units), per_unit)
    volunteer = volunteer.ravel()
    rows = confusion[volunteer, truth[unit]]
    label = (rng.random(len(unit))[:, None] > np.cumsum(rows, axis=1)).sum(axis=1)
    label = np.minimum(label, n_labels - 1)
    answers = pd.DataFrame({"unit": unit, "volunteer": volunteer, "label": label})
    return answers, pd.Series(truth, name="truth")


def speed_table(with_crowdkit: bool) -> None:
    answers, truth = synthetic()
    print(f"### Speed on {len(answers):,} synthetic answers ({answers['unit'].nunique():,} units, "
          f"{answers['volunteer'].nunique():,} volunteers, 4 classes, seed 0), one run each, same process\n")
    rows = [("ours DawidSkene", run_ours, DawidSkene), ("ours BayesianDawidSkene", run_ours, BayesianDawidSkene),
            ("ours OneCoinDawidSkene", run_ours, OneCoinDawidSkene), ("ours Wawa", run_ours, Wawa),
            ("ours MajorityVote", run_ours, MajorityVote)]
    if with_crowdkit:
        ck = crowdkit_methods(include_glad=False)
        rows += [(name.replace("ck ", "crowd-kit "), run_crowdkit, f) for name, f in ck.items()]
    print("| method | seconds | accuracy |")
    print("|---|---|---|")
    seconds = {}
    for name, runner, factory in rows:
        labels, elapsed = runner(factory, answers)
        seconds[name] = elapsed
        print(f"| {name} | {elapsed:.2f} | {score(labels, truth)[0]:.4f} |", flush=True)
    for ours, theirs in (("ours DawidSkene", "crowd-kit DawidSkene"),
                         ("ours OneCoinDawidSkene", "crowd-kit OneCoinDawidSkene")):
        if theirs in seconds:
            print(f"\n{ours} / {theirs} time: {seconds[ours] / seconds[theirs]:.3f} "
                  f"({seconds[theirs] / seconds[ours]:.1f}x faster)")
    print()


#: Tags of the synthetic multi-label crowd and how common each is.
TAG_PREVALENCE = {"bird": 0.5, "tree": 0.4, "water": 0.3, "grass": 0.25, "car": 0.15, "person": 0.1, "dog": 0.05,
                  "boat": 0.02}


def multilabel_crowd(seed: int, n_units: int = 20_000, n_volunteers: int = 1_000,
                     per_unit: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """Seeded multi-label answers: each unit's tags drawn by :data:`TAG_PREVALENCE`, ``per_unit`` distinct volunteers.

    There is no public multi-label crowdsourcing data set with ground truth beside the
    checkout, so the crowd is simulated. Volunteers: 60% careful (tick a present tag with
    probability U[0.6, 0.95], leave an absent one with U[0.9, 0.99]), 25% careless (U[0.3, 0.6]
    and U[0.75, 0.9]), 10% who tick at random (each tag with probability 0.3, whatever is
    there) and 5% who always tick only "bird", the commonest tag.
    """
    rng = np.random.default_rng(seed)
    names = list(TAG_PREVALENCE)
    truth = rng.random((n_units, len(names))) < np.array(list(TAG_PREVALENCE.values()))
    kind = rng.choice(4, size=n_volunteers, p=[0.6, 0.25, 0.1, 0.05])
    sensitivity = np.select([kind == 0, kind == 1, kind == 2], [rng.uniform(0.6, 0.95, n_volunteers),
                                                              rng.uniform(0.3, 0.6, n_volunteers), 0.3], 0.0)
    specificity = np.select([kind == 0, kind == 1, kind == 2], [rng.uniform(0.9, 0.99, n_volunteers),
                                                              rng.uniform(0.75, 0.9, n_volunteers), 0.7], 1.0)
    volunteer = np.argsort(rng.random((n_units, n_volunteers)), axis=1)[:, :per_unit].ravel()
    unit = np.repeat(np.arange(n_units), per_unit)
    draw = rng.random((len(unit), len(names)))
    ticked = np.where(truth[unit], draw < sensitivity[volunteer, None], draw > specificity[volunteer, None])
    ticked[kind[volunteer] == 3] = np.array(names) == "bird"
    labels = [[names[k] for k in np.flatnonzero(row)] for row in ticked]
    return pd.DataFrame({"unit": unit, "volunteer": volunteer, "labels": labels}), truth


def multilabel_table(with_crowdkit: bool, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """Multi-label accuracy on simulated crowds: ours against crowd-kit's binary relevance."""
    print("### Multi-label tagging on simulated crowds (20,000 units, 1,000 volunteers, 8 tags of prevalence "
          "0.02-0.5, 5 volunteers per unit; means over seeds " + ", ".join(map(str, seeds)) + ")\n")
    print("Tag accuracy: share of (unit, tag) decisions right; exact: share of units with exactly the true tags; "
          "micro-F1 over all tags; rare-tag F1: 'dog' and 'boat' (prevalence 0.05 and 0.02).\n")
    methods: list[tuple[str, Callable[[pd.DataFrame], pd.Series]]] = [
        ("MultiLabelMajority", lambda a: MultiLabelMajority().fit_predict(a)),
        ("**MultiLabelDawidSkene (default)**", lambda a: MultiLabelDawidSkene(labels=list(TAG_PREVALENCE))
         .fit_predict(a))]
    if with_crowdkit:
        from crowdkit.aggregation import BinaryRelevance
        from crowdkit.aggregation import DawidSkene as CkDawidSkene
        from crowdkit.aggregation import MajorityVote as CkMajorityVote

        def crowdkit(base: Callable[[], object]) -> Callable[[pd.DataFrame], pd.Series]:
            def run(answers: pd.DataFrame) -> pd.Series:
                table = answers.rename(columns={"unit": "task", "volunteer": "worker", "labels": "label"})
                np.random.seed(0)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return BinaryRelevance(base()).fit_predict(table)
            return run
        methods += [("ck BinaryRelevance(MajorityVote)", crowdkit(CkMajorityVote)),
                    ("ck BinaryRelevance(DawidSkene)", crowdkit(CkDawidSkene))]
    names = list(TAG_PREVALENCE)
    rare = [names.index("dog"), names.index("boat")]
    crowds = [multilabel_crowd(seed) for seed in seeds]
    print("| method | tag accuracy | exact | micro-F1 | rare-tag F1 | seconds per crowd |")
    print("|---|---|---|---|---|---|")
    for method, run in methods:
        rows = []
        for answers, truth in crowds:
            start = time.perf_counter()
            labels = run(answers)
            seconds = time.perf_counter() - start
            found = np.array([[tag in labels.get(u, []) for tag in names] for u in range(len(truth))])
            hits = (found & truth).sum(axis=0)
            f1 = 2 * hits / np.maximum(found.sum(axis=0) + truth.sum(axis=0), 1)
            rows.append([(found == truth).mean(), (found == truth).all(axis=1).mean(),
                         2 * hits.sum() / (found.sum() + truth.sum()), f1[rare].mean(), seconds])
        mean = np.mean(rows, axis=0)
        print(f"| {method} | {mean[0]:.4f} | {mean[1]:.4f} | {mean[2]:.4f} | {mean[3]:.4f} | {mean[4]:.2f} |",
              flush=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-crowdkit", action="store_true", help="Skip crowd-kit even when it is importable.")
    parser.add_argument("--no-speed", action="store_true", help="Skip the 1M-answer speed table.")
    parser.add_argument("--no-accuracy", action="store_true", help="Skip the real-data accuracy table.")
    parser.add_argument("--no-multilabel", action="store_true", help="Skip the simulated multi-label table.")
    args = parser.parse_args()
    with_crowdkit = not args.no_crowdkit and bool(crowdkit_methods())
    print(f"crowd-kit: {'compared' if with_crowdkit else 'not compared (not importable or --no-crowdkit)'}\n")
    if not args.no_accuracy:
        accuracy_tables(with_crowdkit)
        gold_table()
        sensitivity_table()
        pilot_table()
    if not args.no_multilabel:
        multilabel_table(with_crowdkit)
    if not args.no_speed:
        speed_table(with_crowdkit)


if __name__ == "__main__":
    main()
