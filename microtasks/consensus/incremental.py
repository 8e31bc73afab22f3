"""Updating one unit's consensus at once, from the volunteer reliabilities of the last full fit.

A full fit (Dawid–Skene family) estimates, for each volunteer *w*, a confusion matrix
:math:`\\pi^{(w)}_{k\\ell}` (the probability of answer :math:`\\ell` when the truth is *k*)
and a class prior :math:`\\rho_k`. Between fits, a unit's posterior is its E-step with
those parameters held fixed:

.. math:: p(y_u = k \\mid \\text{answers}) \\propto \\rho_k \\prod_{w} \\pi^{(w)}_{k \\ell_{uw}}

which costs one row of a matrix per answer. A volunteer the fit has not seen yet is given
the *typical* volunteer's matrix (the mean of the fitted ones). Periodic refits re-estimate
everything; see ``tests/test_incremental.py`` for how close the two stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
import pandas as pd

_EPS = 1e-9


@dataclass(frozen=True)
class ReliabilityModel:
    """Parameters of a fitted label model, enough to score new answers one unit at a time.

    Example:
        >>> model = ReliabilityModel(labels=("cat", "dog"), prior=np.array([0.5, 0.5]),
        ...                          typical=np.array([[0.8, 0.2], [0.2, 0.8]]), confusions={})
        >>> model.posterior([("a", "cat"), ("b", "cat"), ("c", "dog")]).round(3).tolist()
        [0.8, 0.2]
    """

    labels: tuple[Hashable, ...]
    prior: np.ndarray
    #: The confusion matrix given to volunteers the fit has not seen.
    typical: np.ndarray
    #: Confusion matrix of each fitted volunteer (rows: truth, columns: answer; label order above).
    confusions: dict[Hashable, np.ndarray]

    @classmethod
    def from_fitted(cls, fitted: Any, answers_per_volunteer: pd.Series) -> "ReliabilityModel":
        r"""From a fitted Dawid–Skene-family aggregator (``errors_`` and ``priors_``).

        The fit's point estimates can hold zeros (a volunteer never seen giving some answer
        for some truth), harmless on the units it was fitted on but ruinous on a new unit,
        where one unusual answer would veto a class. So each row is replaced by its
        posterior mean under a flat Dirichlet, with the row's expected count
        :math:`n_w \rho_k` from the volunteer's ``answers_per_volunteer``:
        :math:`(\pi_{k\ell} n_w \rho_k + 1) / (n_w \rho_k + L)`.
        """
        labels = tuple(fitted.priors_.index)
        errors: pd.DataFrame = fitted.errors_.reindex(columns=list(labels), fill_value=0.0)
        n = len(labels)
        volunteers = errors.index.get_level_values(0).unique()
        stacked = errors.to_numpy(dtype=float).reshape(len(volunteers), n, n) if n else np.empty((0, 0, 0))
        prior = fitted.priors_.to_numpy(dtype=float)
        rows = answers_per_volunteer.reindex(volunteers, fill_value=0).to_numpy(dtype=float)[:, None] * prior[None, :]
        stacked = (stacked * rows[:, :, None] + 1.0) / (rows[:, :, None] + n)
        confusions = {v: stacked[i] for i, v in enumerate(volunteers)}
        typical = stacked.mean(axis=0) if len(volunteers) else np.full((n, n), 1.0 / max(n, 1))
        return cls(labels=labels, prior=prior, typical=typical, confusions=confusions)

    def posterior(self, answers: Sequence[tuple[Hashable, Hashable]]) -> np.ndarray:
        """Posterior over :attr:`labels` for one unit's ``(volunteer, label)`` answers.

        An answer with a label the model does not know carries no evidence and is skipped.
        """
        index = {label: i for i, label in enumerate(self.labels)}
        logits = np.log(np.clip(self.prior, _EPS, None))
        for volunteer, label in answers:
            column = index.get(label)
            if column is None:
                continue
            matrix = self.confusions.get(volunteer, self.typical)
            logits = logits + np.log(np.clip(matrix[:, column], _EPS, None))
        logits -= logits.max()
        weights = np.exp(logits)
        return weights / weights.sum()

    def to_json(self) -> dict[str, Any]:
        """The shared parameters as JSON (each volunteer's matrix is stored with the volunteer)."""
        return {"labels": list(self.labels), "prior": self.prior.tolist(), "typical": self.typical.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any], confusions: dict[Hashable, Any]) -> "ReliabilityModel":
        """The model :meth:`to_json` wrote (a :class:`TagReliabilityModel` when it says so)."""
        kind = TagReliabilityModel if data.get("kind") == TagReliabilityModel.kind else ReliabilityModel
        return kind(labels=tuple(data["labels"]), prior=np.asarray(data["prior"], dtype=float),
                    typical=np.asarray(data["typical"], dtype=float),
                    confusions={k: np.asarray(v, dtype=float) for k, v in confusions.items()})


@dataclass(frozen=True)
class TagReliabilityModel(ReliabilityModel):
    r"""Parameters of a fitted multi-label model (:class:`~microtasks.consensus.MultiLabelDawidSkene`).

    :attr:`labels` are the tags and :attr:`prior` their prevalences; each volunteer's matrix is
    2 x 2, rows the truth (absent, present) and columns the answer (unticked, ticked):
    :math:`\begin{pmatrix} \beta & 1 - \beta \\ 1 - \alpha & \alpha \end{pmatrix}` with
    :math:`\alpha` the sensitivity and :math:`\beta` the specificity.

    Example:
        >>> model = TagReliabilityModel(labels=("sky", "sea"), prior=np.array([0.5, 0.2]),
        ...                             typical=np.array([[0.9, 0.1], [0.2, 0.8]]), confusions={})
        >>> model.posterior([("a", ["sky"]), ("b", ["sky", "sea"])]).round(3).tolist()
        [0.985, 0.308]
    """

    kind = "tags"

    @classmethod
    def from_fitted(cls, fitted: Any, answers_per_volunteer: pd.Series | None = None) -> "TagReliabilityModel":
        """From a fitted :class:`~microtasks.consensus.MultiLabelDawidSkene`.

        Each coin is its posterior mean under the fit's Beta prior rather than the fit's
        mode, so no volunteer is ever certain: one unusual tick on a new unit must not veto it.
        """
        decisions: pd.DataFrame = fitted.decisions_
        right, wrong = fitted.correct_prior, fitted.wrong_prior
        sensitivity = ((decisions["present_hits"] + right) / (decisions["present"] + right + wrong)).to_numpy()
        specificity = ((decisions["absent_hits"] + right) / (decisions["absent"] + right + wrong)).to_numpy()
        stacked = np.stack([np.column_stack([specificity, 1 - specificity]),
                            np.column_stack([1 - sensitivity, sensitivity])], axis=1)
        confusions = {v: stacked[i] for i, v in enumerate(decisions.index)}
        typical = stacked.mean(axis=0) if len(stacked) else np.array([[right, wrong], [wrong, right]]) / (right + wrong)
        return cls(labels=tuple(fitted.priors_.index), prior=fitted.priors_.to_numpy(dtype=float), typical=typical,
                   confusions=confusions)

    def posterior(self, answers: Sequence[tuple[Hashable, Sequence[Hashable]]]) -> np.ndarray:
        """Probability that each tag of :attr:`labels` is on one unit, from its ``(volunteer, tags)`` answers.

        A tag the model does not know is skipped.
        """
        index = {label: i for i, label in enumerate(self.labels)}
        prior = np.clip(self.prior, _EPS, 1 - _EPS)
        logits = np.log(prior) - np.log1p(-prior)
        for volunteer, tags in answers:
            matrix = np.clip(self.confusions.get(volunteer, self.typical), _EPS, 1.0)
            ticked = np.zeros(len(self.labels), dtype=bool)
            ticked[[index[t] for t in tags if t in index]] = True
            logits = logits + np.where(ticked, np.log(matrix[1, 1] / matrix[0, 1]), np.log(matrix[1, 0] / matrix[0, 0]))
        return 1.0 / (1.0 + np.exp(-logits))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "kind": self.kind}
