"""Majority vote over labels, single and multi-label."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MajorityVote:
    r"""Each unit takes the label most volunteers gave it.

    .. math:: \hat y_u = \arg\max_k \sum_{w} [y_{uw} = k], \qquad
              p_u(k) = \frac{1}{n_u} \sum_{w} [y_{uw} = k]

    The confidence of a unit is :math:`p_u(\hat y_u)`, the share of its answers
    that agree with the result. Ties are broken at random by a hash of the unit and the
    label keyed by a number drawn from the injected generator: a fixed seed gives a fixed
    result, and a unit's result does not depend on the other units in the table (the
    consensus workers decide units in batches of any make-up).

    Args:
        rng: random generator for tie-breaking; ``np.random.default_rng(0)`` when omitted.

    Example:
        >>> answers = pd.DataFrame({"unit": [1, 1, 1, 2], "volunteer": ["a", "b", "c", "a"],
        ...                         "label": ["cat", "cat", "dog", "dog"]})
        >>> MajorityVote().fit_predict(answers).to_dict()
        {1: 'cat', 2: 'dog'}
    """

    name = "majority_vote"

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.key = np.uint64(self.rng.integers(2**63))

    def fit(self, answers: pd.DataFrame) -> "MajorityVote":
        _require_columns(answers, ("unit", "volunteer", "label"))
        if answers.empty:
            self.probas_ = pd.DataFrame(dtype=float)
            self.labels_ = pd.Series(dtype=object, name="label")
            return self
        counts = answers.groupby(["unit", "label"]).size().unstack(fill_value=0)
        totals = counts.sum(axis=1).to_numpy(dtype=float)
        self.probas_ = counts.div(totals, axis=0)
        values = counts.to_numpy(dtype=float)
        # Random tie-break: jitter smaller than one vote, keyed by the generator's draw.
        jitter = _cell_noise(counts.index.to_numpy(), counts.columns.to_numpy(), self.key) * 0.5
        best = np.argmax(np.where(values == values.max(axis=1, keepdims=True), values + jitter, -1.0), axis=1)
        self.labels_ = pd.Series(counts.columns.to_numpy()[best], index=counts.index, name="label")
        return self

    def fit_predict(self, answers: pd.DataFrame) -> pd.Series:
        return self.fit(answers).labels_

    def fit_predict_proba(self, answers: pd.DataFrame) -> pd.DataFrame:
        return self.fit(answers).probas_

    @property
    def confidences_(self) -> pd.Series:
        """The share of each unit's answers that agree with its result."""
        if self.labels_.empty:
            return pd.Series(dtype=float, name="confidence")
        values = self.probas_.to_numpy()
        columns = self.probas_.columns.get_indexer(self.labels_.to_numpy())
        return pd.Series(values[np.arange(len(values)), columns], index=self.labels_.index, name="confidence")


class MultiLabelMajority:
    r"""Multi-label tagging: a label belongs to a unit when more than half its volunteers chose it.

    Each answer is a set of labels (possibly empty). For a label *k*,
    :math:`p_u(k)` is the share of the unit's volunteers who chose it, and the label is
    kept when :math:`p_u(k) > 1/2`. The unit's confidence is the least decisive of its
    per-label votes, :math:`\min_k \max(p_u(k), 1 - p_u(k))`.

    Input: a long table with columns ``unit``, ``volunteer`` and ``labels`` (a list per answer).

    Example:
        >>> answers = pd.DataFrame({"unit": [1, 1, 1], "volunteer": ["a", "b", "c"],
        ...                         "labels": [["sky"], ["sky", "sea"], []]})
        >>> MultiLabelMajority().fit_predict(answers).to_dict()
        {1: ['sky']}
    """

    name = "multilabel_majority"

    def fit(self, answers: pd.DataFrame) -> "MultiLabelMajority":
        _require_columns(answers, ("unit", "volunteer", "labels"))
        if answers.empty:
            self.probas_ = pd.DataFrame(dtype=float)
            self.labels_ = pd.Series(dtype=object, name="labels")
            self.confidences_ = pd.Series(dtype=float, name="confidence")
            return self
        n_answers = answers.groupby("unit").size()
        chosen = answers[["unit", "labels"]].explode("labels").dropna()
        counts = chosen.groupby(["unit", "labels"]).size().unstack(fill_value=0)
        counts = counts.reindex(n_answers.index, fill_value=0)
        self.probas_ = counts.div(n_answers.to_numpy(dtype=float), axis=0)
        columns = list(self.probas_.columns)
        mask = self.probas_.to_numpy() > 0.5
        self.labels_ = pd.Series([[columns[j] for j in np.flatnonzero(row)] for row in mask],
                                 index=self.probas_.index, name="labels")
        decisiveness = np.maximum(self.probas_.to_numpy(), 1.0 - self.probas_.to_numpy())
        least = decisiveness.min(axis=1) if decisiveness.shape[1] else np.ones(len(decisiveness))
        self.confidences_ = pd.Series(least, index=self.probas_.index, name="confidence")
        return self

    def fit_predict(self, answers: pd.DataFrame) -> pd.Series:
        return self.fit(answers).labels_

    def fit_predict_proba(self, answers: pd.DataFrame) -> pd.DataFrame:
        return self.fit(answers).probas_


def _cell_noise(rows: np.ndarray, columns: np.ndarray, key: np.uint64) -> np.ndarray:
    """Noise in [0, 1) for each (row, column) pair of values: a hash keyed by ``key``, the same for a
    pair whatever else is in the table (splitmix64's finaliser mixes the values' hashes)."""
    def mix(z: np.ndarray) -> np.ndarray:
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    with np.errstate(over="ignore"):
        cell = mix(pd.util.hash_array(rows)[:, None] ^ mix(pd.util.hash_array(columns)[None, :] ^ key))
    return (cell >> np.uint64(11)).astype(float) / 2.0**53


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"answers table lacks column(s) {missing}; it needs {list(columns)}")
