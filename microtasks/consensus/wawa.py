"""Worker Agreement With Aggregate (Wawa): majority vote weighted by agreement with the majority."""

from __future__ import annotations

import numpy as np
import pandas as pd  # noqa: F401  (the doctest uses it)

from microtasks.consensus._labels import Coded, LabelAggregator, argmax_with_ties, beta_std


class Wawa(LabelAggregator):
    r"""Weight each volunteer by how often they agree with the plain majority, then vote again.

    With :math:`\bar y_u` the (unweighted) majority label of unit *u* (or its gold label),
    volunteer *w*'s skill is their agreement rate with it, and the result is the
    skill-weighted vote:

    .. math:: s_w = \frac{1}{|U_w|} \sum_{u \in U_w} [y_{uw} = \bar y_u], \qquad
              p_u(k) = \frac{\sum_w s_w [y_{uw} = k]}{\sum_w s_w}

    A unit whose volunteers all have skill 0 falls back to the unweighted vote shares.
    ``skills_std_`` is the standard deviation of a Beta(agreements + 1, disagreements + 1)
    posterior on the agreement rate. Two votes on a unit that tie in weight are broken
    by the injected generator.

    Described in Toloka's crowd-kit (Ustalov et al. 2024, "Learning from Crowds with
    Crowd-Kit", JOSS 9(96):6227, doi:10.21105/joss.06227), after the Appen/CrowdFlower
    "worker agreement with aggregate" score.

    Args:
        rng: random generator for tie-breaking; ``np.random.default_rng(0)`` when omitted.

    Example:
        >>> answers = pd.DataFrame({"unit": [1, 1, 1, 2, 2, 2], "volunteer": ["a", "b", "c"] * 2,
        ...                         "label": ["cat", "cat", "dog", "dog", "dog", "cat"]})
        >>> Wawa().fit_predict(answers).to_dict()
        {1: 'cat', 2: 'dog'}
    """

    name = "wawa"

    def _fit(self, coded: Coded) -> None:
        votes = coded.vote_counts()
        shares = votes / votes.sum(axis=1, keepdims=True)
        reference = argmax_with_ties(shares, self.rng)
        if len(coded.gold_unit):
            reference[coded.gold_unit] = coded.gold_label
        agree = (coded.label == reference[coded.unit]).astype(float)
        n = np.bincount(coded.volunteer, minlength=coded.n_volunteers).astype(float)
        hits = np.bincount(coded.volunteer, weights=agree, minlength=coded.n_volunteers)
        skills = hits / n
        weighted = np.bincount(coded.unit * coded.n_labels + coded.label, weights=skills[coded.volunteer],
                               minlength=coded.n_units * coded.n_labels).reshape(coded.n_units, coded.n_labels)
        totals = weighted.sum(axis=1, keepdims=True)
        posteriors = np.where(totals > 0, weighted / np.where(totals > 0, totals, 1.0), shares)
        coded.fix_gold(posteriors)
        self._publish(coded, posteriors, skills, beta_std(hits + 1.0, n - hits + 1.0))


__all__ = ["Wawa"]

