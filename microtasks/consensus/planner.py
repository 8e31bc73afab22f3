"""Redundancy planner: how accurate would consensus be with r answers per unit? A pure simulation.

An owner gives the answers collected so far (a pilot batch, or a similar past project),
ideally with gold for some units. For each redundancy *r* the planner keeps a random
*r* answers of every unit (all of them when a unit has fewer), aggregates them, and
scores the result; repeating this with fresh draws gives a mean and a spread. The owner
then knows before launch whether 3 or 7 volunteers per unit are needed.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from microtasks.consensus import DEFAULT_LABEL_METHOD, LABEL_METHODS


def keep_at_most(answers: pd.DataFrame, per_unit: int, rng: np.random.Generator) -> pd.DataFrame:
    """A random ``per_unit`` answers of each unit (every answer of a unit that has fewer)."""
    units = pd.factorize(answers["unit"])[0]
    order = np.lexsort((rng.random(len(answers)), units))
    sorted_units = units[order]
    starts = np.flatnonzero(np.r_[True, sorted_units[1:] != sorted_units[:-1]]) if len(order) else order
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first_of_group
    return answers[rank < per_unit]


def plan_redundancy(answers: pd.DataFrame, gold: pd.Series | None = None, redundancies: Iterable[int] = range(1, 8),
                    method: str = DEFAULT_LABEL_METHOD, repeats: int = 5,
                    rng: np.random.Generator | None = None) -> pd.DataFrame:
    """Simulated accuracy of ``method`` for each redundancy.

    Args:
        answers: long table (``unit``, ``volunteer``, ``label``) of the answers collected so far.
        gold: known labels (unit -> label). Accuracy is measured on the answered gold units. Without
            gold, it is agreement with the consensus of *all* the answers: an optimistic figure, the
            more so the closer a redundancy comes to the number of answers collected.
        redundancies: answers per unit to simulate.
        method: a name from :data:`microtasks.consensus.LABEL_METHODS`.
        repeats: random draws per redundancy.
        rng: random generator for the draws and tie-breaking; ``np.random.default_rng(0)`` when omitted.

    Returns:
        One row per redundancy: ``redundancy``, ``answers_per_unit`` (mean actually kept),
        ``accuracy`` (mean over draws), ``accuracy_std`` (over draws), ``units`` (how many scored)
        and ``reference`` (``"gold"`` or ``"consensus"``). No answers give an empty table.

    Example:
        >>> answers = pd.DataFrame({"unit": [u for u in range(4) for _ in range(3)],
        ...                         "volunteer": ["a", "b", "c"] * 4, "label": ["x", "x", "y"] * 4})
        >>> plan_redundancy(answers, redundancies=[1, 3], repeats=2)[["redundancy", "accuracy"]].to_dict("list")
        {'redundancy': [1, 3], 'accuracy': [0.625, 1.0]}
    """
    if method not in LABEL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(LABEL_METHODS)}")
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    rng = rng if rng is not None else np.random.default_rng(0)
    columns = ["redundancy", "answers_per_unit", "accuracy", "accuracy_std", "units", "reference"]
    if answers.empty:
        return pd.DataFrame(columns=columns)
    factory = LABEL_METHODS[method]
    if gold is not None and len(gold):
        reference = gold[gold.index.isin(answers["unit"])]
        kind = "gold"
    else:
        reference = factory(rng=rng).fit(answers).labels_
        kind = "consensus"
    rows = []
    for redundancy in redundancies:
        if redundancy < 1:
            raise ValueError("a redundancy must be at least 1")
        scores, kept = [], []
        for _ in range(repeats):
            sample = keep_at_most(answers, redundancy, rng)
            labels = factory(rng=rng).fit(sample).labels_
            common = reference.index.intersection(labels.index)
            matches = labels.loc[common].to_numpy() == reference.loc[common].to_numpy()
            scores.append(float(matches.mean()) if len(common) else 0.0)
            kept.append(len(sample) / max(sample["unit"].nunique(), 1))
        rows.append({"redundancy": int(redundancy), "answers_per_unit": float(np.mean(kept)),
                     "accuracy": float(np.mean(scores)), "accuracy_std": float(np.std(scores)),
                     "units": int(len(reference)), "reference": kind})
    return pd.DataFrame(rows, columns=columns)


def smallest_redundancy(plan: pd.DataFrame, target: float) -> int | None:
    """The least redundancy whose mean simulated accuracy reaches ``target``, or None."""
    reached = plan.loc[plan["accuracy"] >= target, "redundancy"]
    return int(reached.min()) if len(reached) else None
