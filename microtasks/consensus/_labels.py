"""Shared machinery for label aggregators: integer coding, gold, tie-breaking and published results.

Every label aggregator reads a long table with one row per answer (``unit``, ``volunteer``,
``label``), codes the three columns as integers once, fits on the integer arrays and
publishes its results indexed by the original unit values, with the original label
values as columns: a label is returned exactly as it was given (``'01'`` stays a string,
``3`` stays an integer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

#: Probabilities are clipped to at least this before their logarithm is taken.
EPS = 1e-12
#: Two posterior probabilities closer than this count as a tie, broken by the injected generator.
TIE_TOLERANCE = 1e-9
COLUMNS = ("unit", "volunteer", "label")


@dataclass(frozen=True)
class Coded:
    """Answers coded as integers: ``unit[i]``, ``volunteer[i]``, ``label[i]`` for answer *i*.

    ``units``, ``volunteers`` and ``labels`` hold the original values in code order.
    ``gold_unit[j]`` is the code of a unit whose true label (code ``gold_label[j]``) is known.
    """

    units: pd.Index
    volunteers: pd.Index
    labels: pd.Index
    unit: np.ndarray
    volunteer: np.ndarray
    label: np.ndarray
    gold_unit: np.ndarray
    gold_label: np.ndarray

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def n_volunteers(self) -> int:
        return len(self.volunteers)

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def n_answers(self) -> int:
        return len(self.unit)

    def vote_counts(self) -> np.ndarray:
        """Units x labels matrix of how many answers gave each label."""
        flat = np.bincount(self.unit * self.n_labels + self.label, minlength=self.n_units * self.n_labels)
        return flat.reshape(self.n_units, self.n_labels).astype(float)

    def fix_gold(self, posteriors: np.ndarray) -> np.ndarray:
        """Overwrite the rows of gold units with their one-hot known label (in place) and return the array."""
        if len(self.gold_unit):
            posteriors[self.gold_unit] = 0.0
            posteriors[self.gold_unit, self.gold_label] = 1.0
        return posteriors

    def answer_matrix(self) -> sp.csr_matrix:
        """Sparse units x (volunteer, label) count matrix; column ``v * n_labels + k`` is "volunteer v said k"."""
        shape = (self.n_units, self.n_volunteers * self.n_labels)
        columns = self.volunteer * self.n_labels + self.label
        return sp.csr_matrix((np.ones(self.n_answers), (self.unit, columns)), shape=shape)


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and uniques, sorted when the values can be ordered, in order of appearance otherwise."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(values, sort=False)
    return np.asarray(codes, dtype=np.int64), pd.Index(uniques)


def encode(answers: pd.DataFrame, gold: pd.Series | None = None) -> Coded:
    """Check the answers table (and optional gold Series, unit -> true label) and code it as integers.

    Raises:
        ValueError: a column is missing, a cell is empty, or gold gives one unit two labels.
    """
    missing = [c for c in COLUMNS if c not in answers.columns]
    if missing:
        raise ValueError(f"answers table lacks column(s) {missing}; it needs {list(COLUMNS)}")
    table = answers[list(COLUMNS)]
    empty = table.isna().any(axis=1).to_numpy()
    if empty.any():
        first = table.index[np.flatnonzero(empty)[0]]
        raise ValueError(f"answers table has {int(empty.sum())} row(s) with an empty unit, volunteer or label "
                         f"(first at index {first!r})")
    unit, units = _factorize(table["unit"])
    volunteer, volunteers = _factorize(table["volunteer"])
    gold_values = pd.Series([], dtype=object) if gold is None else gold
    if gold_values.index.has_duplicates:
        raise ValueError("gold gives some unit more than one label")
    if gold_values.isna().any():
        raise ValueError("gold has an empty label")
    gold_codes = units.get_indexer(gold_values.index) if len(gold_values) else np.empty(0, dtype=np.int64)
    known = gold_codes >= 0  # gold units nobody answered play no part in the fit
    gold_values = gold_values[known]
    both = pd.concat([table["label"], gold_values.reset_index(drop=True)], ignore_index=True)
    label_codes, labels = _factorize(both)
    return Coded(
        units=units.rename("unit"),
        volunteers=volunteers.rename("volunteer"),
        labels=labels.rename("label"),
        unit=unit,
        volunteer=volunteer,
        label=label_codes[: len(table)],
        gold_unit=np.asarray(gold_codes[known], dtype=np.int64),
        gold_label=label_codes[len(table):],
    )


def argmax_with_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Column of the largest value in each row; rows with several (near-)equal maxima pick one at random.

    The generator is always drawn from, once per cell, so a fixed seed gives a fixed result.
    """
    noise = rng.random(values.shape)
    if values.shape[1] == 0:
        return np.zeros(len(values), dtype=np.int64)
    top = values.max(axis=1, keepdims=True)
    tied = values >= top - TIE_TOLERANCE
    return np.argmax(np.where(tied, noise, -1.0), axis=1)


def log_normalize(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise softmax of log-scores with a row-max shift; returns (probabilities, log normalisers).

    Works column by column (there are few labels and many units): numpy's row reductions
    over a short last axis are several times slower than elementwise passes. ``logits`` is
    overwritten.
    """
    n_columns = logits.shape[1]
    shift = logits[:, 0].copy()
    for k in range(1, n_columns):
        np.maximum(shift, logits[:, k], out=shift)
    logits -= shift[:, None]
    np.exp(logits, out=logits)
    totals = logits[:, 0].copy()
    for k in range(1, n_columns):
        totals += logits[:, k]
    logits /= totals[:, None]
    return logits, shift + np.log(totals)


def beta_std(successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
    """Standard deviation of Beta(successes, failures) (both > 0)."""
    total = successes + failures
    return np.sqrt(successes * failures / (total * total * (total + 1.0)))


class LabelAggregator(ABC):
    """Base of the label aggregators: ``fit(answers, gold=None) -> self``, ``fit_predict``, ``fit_predict_proba``.

    After :meth:`fit`:

    * ``probas_``: DataFrame, units x labels, each row a probability distribution;
    * ``labels_``: Series, unit -> most probable label (ties broken by ``rng``);
    * ``confidences_``: Series, unit -> probability of that label;
    * ``skills_`` and ``skills_std_``: Series, volunteer -> reliability in [0, 1] and its uncertainty.

    No output ever holds NaN; empty input gives empty outputs.
    """

    name = "label_aggregator"

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(0)

    # The public surface -------------------------------------------------------------------------

    def fit(self, answers: pd.DataFrame, gold: pd.Series | None = None) -> "LabelAggregator":
        """Fit on a long table of answers; ``gold`` (unit -> true label) fixes those units' results.

        Args:
            answers: one row per answer, columns ``unit``, ``volunteer`` and ``label``.
            gold: known true labels of some units. They are held at the known label while fitting,
                so they inform the volunteers' reliability. Gold units nobody answered are ignored.

        Returns:
            The fitted aggregator.
        """
        coded = encode(answers, gold)
        if coded.n_units == 0:
            self._publish_empty(coded)
        else:
            self._fit(coded)
        return self

    def fit_predict(self, answers: pd.DataFrame, gold: pd.Series | None = None) -> pd.Series:
        """Fit and return ``labels_``."""
        return self.fit(answers, gold).labels_

    def fit_predict_proba(self, answers: pd.DataFrame, gold: pd.Series | None = None) -> pd.DataFrame:
        """Fit and return ``probas_``."""
        return self.fit(answers, gold).probas_

    @property
    def parameters(self) -> dict[str, Any]:
        """Hyperparameters, for recording beside a result."""
        return {}

    # For subclasses ----------------------------------------------------------------------------

    @abstractmethod
    def _fit(self, coded: Coded) -> None:
        """Fit the model to the coded answers and call :meth:`_publish`."""

    def _publish(self, coded: Coded, posteriors: np.ndarray, skills: np.ndarray, skills_std: np.ndarray) -> None:
        posteriors = np.nan_to_num(posteriors, nan=0.0)
        best = argmax_with_ties(posteriors, self.rng)
        self.probas_ = pd.DataFrame(posteriors, index=coded.units, columns=coded.labels)
        self.labels_ = pd.Series(coded.labels.to_numpy()[best], index=coded.units, name="label")
        self.confidences_ = pd.Series(posteriors[np.arange(coded.n_units), best], index=coded.units,
                                      name="confidence")
        self.skills_ = pd.Series(np.nan_to_num(skills, nan=0.0), index=coded.volunteers, name="skill")
        self.skills_std_ = pd.Series(np.nan_to_num(skills_std, nan=0.0), index=coded.volunteers,
                                     name="skill_std")

    def _publish_empty(self, coded: Coded) -> None:
        self.probas_ = pd.DataFrame(np.empty((0, coded.n_labels)), index=coded.units, columns=coded.labels)
        self.labels_ = pd.Series(coded.labels[:0].to_numpy(), index=coded.units, name="label")
        self.confidences_ = pd.Series(np.empty(0), index=coded.units, name="confidence")
        self.skills_ = pd.Series(np.empty(0), index=coded.volunteers, name="skill")
        self.skills_std_ = pd.Series(np.empty(0), index=coded.volunteers, name="skill_std")
