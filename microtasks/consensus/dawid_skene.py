"""Dawid–Skene family: volunteers' confusion matrices and units' true labels estimated together by EM.

All three models share one vectorised EM loop. Answers are held in a sparse
units x (volunteer, label) matrix :math:`A`, so each iteration is two sparse products:

* M-step: expected confusion counts :math:`N_{w,k,l} = \\sum_u T_{u,k} A_{u,(w,l)}`, i.e. ``A.T @ T``;
* E-step: log-posteriors :math:`\\log \\rho_k + \\sum_{(w,l)} A_{u,(w,l)} \\log \\pi_{w,k,l}`,
  i.e. ``A @ log_pi`` plus the log class prior, normalised with a row-max shift.

No Python loop runs over answers, units or volunteers.
"""

from __future__ import annotations

from typing import Any

from abc import abstractmethod

import numpy as np
import pandas as pd

from microtasks.consensus._labels import EPS, Coded, LabelAggregator, beta_std, log_normalize


class _ConfusionEM(LabelAggregator):
    """EM over per-volunteer confusion matrices; subclasses give the M-step."""

    def __init__(self, max_iter: int = 100, tol: float = 1e-5, rng: np.random.Generator | None = None) -> None:
        super().__init__(rng)
        if max_iter < 1:
            raise ValueError("max_iter must be at least 1")
        if tol < 0:
            raise ValueError("tol must not be negative")
        self.max_iter = max_iter
        self.tol = tol

    @property
    def parameters(self) -> dict[str, Any]:
        return {"max_iter": self.max_iter, "tol": self.tol}

    @abstractmethod
    def _m_step(self, counts: np.ndarray, class_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """From expected counts ``counts[w, k_true, l_given]`` and ``class_counts[k]``, return
        ``(log_pi[w, k, l], log_prior[k], log density of the parameters under their prior)``."""

    def _skills(self, counts: np.ndarray, log_pi: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected accuracy :math:`\\sum_k \\rho_k \\pi_{w,k,k}` and its posterior standard deviation.

        Each confusion row is treated as Dirichlet(expected counts + the model's pseudo-counts);
        its diagonal cell is then Beta-distributed, and rows are independent.
        """
        n_labels = counts.shape[1]
        diagonal = np.arange(n_labels)
        accuracy = np.exp(log_pi[:, diagonal, diagonal])
        skills = accuracy @ prior
        concentration = counts + self._pseudo_counts(n_labels)
        hits = concentration[:, diagonal, diagonal]
        total = concentration.sum(axis=2)
        variance = hits * (total - hits) / (total * total * (total + 1.0))
        return np.clip(skills, 0.0, 1.0), np.sqrt(variance @ (prior * prior))

    def _pseudo_counts(self, n_labels: int) -> np.ndarray:
        return np.ones((n_labels, n_labels))

    def _fit(self, coded: Coded) -> None:
        n_volunteers, n_labels = coded.n_volunteers, coded.n_labels
        answers = coded.answer_matrix()
        answers_t = answers.T  # CSC: its products stream through the units in order
        votes = coded.vote_counts()
        posteriors = coded.fix_gold(votes / votes.sum(axis=1, keepdims=True))
        self.loss_history_: list[float] = []
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            counts = np.asarray(answers_t @ posteriors).reshape(n_volunteers, n_labels, n_labels).transpose(0, 2, 1)
            log_pi, log_prior, log_parameter_prior = self._m_step(counts, posteriors.sum(axis=0))
            logits = np.asarray(answers @ log_pi.transpose(0, 2, 1).reshape(n_volunteers * n_labels, n_labels))
            logits += log_prior
            # Gold units contribute their complete-data likelihood at the known label.
            gold_evidence = logits[coded.gold_unit, coded.gold_label]
            posteriors, log_evidence = log_normalize(logits)
            coded.fix_gold(posteriors)
            log_evidence[coded.gold_unit] = gold_evidence
            loss = -(float(log_evidence.sum()) + log_parameter_prior) / coded.n_answers
            self.loss_history_.append(loss)
            self.n_iter_ += 1
            if len(self.loss_history_) > 1 and abs(self.loss_history_[-2] - loss) <= self.tol:
                break
        prior = np.exp(log_prior)
        prior = prior / prior.sum()
        skills, skills_std = self._skills(counts, log_pi, prior)
        pi = np.exp(log_pi)
        self.errors_ = pd.DataFrame(
            pi.reshape(n_volunteers * n_labels, n_labels),
            index=pd.MultiIndex.from_product([coded.volunteers, coded.labels], names=["volunteer", "true_label"]),
            columns=coded.labels,
        )
        self.priors_ = pd.Series(prior, index=coded.labels, name="prior")
        self._publish(coded, posteriors, skills, skills_std)

    def _publish_empty(self, coded: Coded) -> None:
        super()._publish_empty(coded)
        self.loss_history_ = []
        self.n_iter_ = 0
        self.errors_ = pd.DataFrame(np.empty((0, 0)),
                                    index=pd.MultiIndex.from_arrays([[], []], names=["volunteer", "true_label"]))
        self.priors_ = pd.Series(np.empty(0), index=coded.labels, name="prior")


def _normalized_log(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """``log(counts / totals)`` with epsilon clipping; a row with no mass becomes uniform."""
    n = counts.shape[-1]
    ratio = np.divide(counts, totals, out=np.full(counts.shape, 1.0 / n), where=totals > 0)
    return np.log(np.clip(ratio, EPS, 1.0))


class DawidSkene(_ConfusionEM):
    r"""Dawid–Skene: each volunteer has a full confusion matrix, fitted by maximum likelihood with EM.

    Unit *u*'s true label :math:`z_u` has prior :math:`\rho`; volunteer *w* who sees a
    unit of class *k* answers *l* with probability :math:`\pi^{(w)}_{kl}`:

    .. math:: p(z_u = k \mid y) \propto \rho_k \prod_{w} \pi^{(w)}_{k, y_{uw}}, \qquad
              \pi^{(w)}_{kl} = \frac{\sum_u T_{uk} [y_{uw} = l]}{\sum_u T_{uk} [w \text{ answered } u]}, \qquad
              \rho_k = \frac{1}{|U|} \sum_u T_{uk}

    where :math:`T_{uk} = p(z_u = k \mid y)`. EM starts from the majority-vote shares,
    alternates M and E steps in log space (row-max shift, probabilities clipped at
    ``1e-12``), and stops after ``max_iter`` iterations or when the negative
    log-likelihood per answer (``loss_history_``) changes by at most ``tol``.
    A confusion row with no expected mass (a class a volunteer never met) is uniform.

    ``skills_`` is each volunteer's expected accuracy :math:`\sum_k \rho_k \pi^{(w)}_{kk}`;
    ``skills_std_`` its standard deviation when each row is read as a
    Dirichlet(expected counts + 1); ``errors_`` holds the confusion matrices and
    ``priors_`` the class prior.

    Dawid, A. P. and Skene, A. M. (1979). Maximum Likelihood Estimation of Observer
    Error-Rates Using the EM Algorithm. Applied Statistics 28(1):20–28, doi:10.2307/2346806.

    Args:
        max_iter: most EM iterations.
        tol: stop when the loss changes by at most this much.
        rng: random generator for tie-breaking; ``np.random.default_rng(0)`` when omitted.

    Example:
        >>> answers = pd.DataFrame({"unit": [1, 1, 1, 2, 2, 2], "volunteer": ["a", "b", "c"] * 2,
        ...                         "label": ["yes", "yes", "no", "no", "no", "no"]})
        >>> DawidSkene().fit_predict(answers).to_dict()
        {1: 'yes', 2: 'no'}
    """

    name = "dawid_skene"

    def _m_step(self, counts: np.ndarray, class_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        log_pi = _normalized_log(counts, counts.sum(axis=2, keepdims=True))
        log_prior = _normalized_log(class_counts, class_counts.sum())
        return log_pi, log_prior, 0.0


class OneCoinDawidSkene(_ConfusionEM):
    r"""One-coin Dawid–Skene: each volunteer has one accuracy; mistakes are spread evenly over the other labels.

    .. math:: \pi^{(w)}_{kl} = \begin{cases} p_w & l = k \\ \frac{1 - p_w}{K - 1} & l \ne k \end{cases},
              \qquad p_w = \frac{\sum_{u} T_{u, y_{uw}}}{|U_w|}

    with the same EM as :class:`DawidSkene` (majority-vote start, log-space E-step,
    ``tol``, ``max_iter``, ``loss_history_``). It has one parameter per volunteer instead
    of :math:`K(K-1)`, so it is steadier for volunteers with few answers but cannot
    learn that someone confuses two particular classes. ``skills_`` is :math:`p_w`,
    ``skills_std_`` the standard deviation of Beta(expected hits + 1, expected misses + 1).

    Zhang, Y., Chen, X., Zhou, D. and Jordan, M. I. (2016). Spectral Methods Meet EM:
    A Provably Optimal Algorithm for Crowdsourcing. JMLR 17(102):1–44
    (the one-coin model, section 2); Dawid and Skene (1979), doi:10.2307/2346806.

    Args:
        max_iter: most EM iterations.
        tol: stop when the loss changes by at most this much.
        rng: random generator for tie-breaking; ``np.random.default_rng(0)`` when omitted.

    Example:
        >>> answers = pd.DataFrame({"unit": [1, 1, 1, 2, 2, 2], "volunteer": ["a", "b", "c"] * 2,
        ...                         "label": [0, 0, 1, 1, 1, 0]})
        >>> OneCoinDawidSkene().fit_predict(answers).to_dict()
        {1: 0, 2: 1}
    """

    name = "one_coin_dawid_skene"

    def _m_step(self, counts: np.ndarray, class_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        n_labels = counts.shape[1]
        hits = np.trace(counts, axis1=1, axis2=2)
        accuracy = np.clip(hits / counts.sum(axis=(1, 2)), EPS, 1.0 - EPS)
        log_pi = np.empty_like(counts)
        off = np.log(np.clip((1.0 - accuracy) / max(n_labels - 1, 1), EPS, 1.0))
        log_pi[:] = off[:, None, None]
        diagonal = np.arange(n_labels)
        log_pi[:, diagonal, diagonal] = np.log(accuracy)[:, None]
        return log_pi, _normalized_log(class_counts, class_counts.sum()), 0.0

    def _skills(self, counts: np.ndarray, log_pi: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hits = np.trace(counts, axis1=1, axis2=2)
        total = counts.sum(axis=(1, 2))
        accuracy = np.exp(log_pi[:, 0, 0])
        return accuracy, beta_std(hits + 1.0, total - hits + 1.0)


class BayesianDawidSkene(_ConfusionEM):
    r"""Dawid–Skene with Dirichlet priors on every confusion row and on the class prior (MAP by EM).

    The recommended default for an unknown project. Same model as :class:`DawidSkene`,
    with conjugate priors

    .. math:: \pi^{(w)}_{k\cdot} \sim \operatorname{Dir}(\alpha_{k\cdot}), \quad
              \alpha_{kl} = \begin{cases} a_{\text{correct}} & l = k \\ a_{\text{wrong}} & l \ne k \end{cases},
              \qquad \rho \sim \operatorname{Dir}(b, \dots, b)

    and EM climbing the posterior instead of the likelihood, so the M-step adds
    :math:`\alpha - 1` pseudo-answers to the expected counts:

    .. math:: \pi^{(w)}_{kl} = \frac{N^{(w)}_{kl} + \alpha_{kl} - 1}{\sum_{l'} (N^{(w)}_{kl'} + \alpha_{kl'} - 1)},
              \qquad \rho_k = \frac{\sum_u T_{uk} + b - 1}{|U| + K (b - 1)}

    With the defaults (:math:`a_{\text{correct}} = 2`, :math:`a_{\text{wrong}} = 1`, :math:`b = 1`)
    each confusion row starts with one imaginary correct answer and the class
    proportions have a flat prior: a volunteer seen on a handful of units is pulled
    towards "better than chance" instead of being fitted exactly (plain Dawid–Skene gives
    such a volunteer a confusion matrix of zeros and ones, and a label a volunteer never
    used a probability of zero).
    This is the maximum-a-posteriori counterpart of the Bayesian classifier combination
    of Kim and Ghahramani (2012) and of the Beta priors of Raykar et al.'s "learning from
    crowds" (LFC). ``loss_history_`` is the negative log-posterior per answer.

    ``skills_`` is each volunteer's posterior-mean accuracy
    :math:`\sum_k \rho_k \operatorname{E}[\pi^{(w)}_{kk}]` under the Dirichlet posterior
    :math:`\operatorname{Dir}(N^{(w)}_{k\cdot} + \alpha_{k\cdot})`, and ``skills_std_`` its
    posterior standard deviation: a volunteer with three answers has a wide one, a
    volunteer with three hundred a narrow one.

    Kim, H.-C. and Ghahramani, Z. (2012). Bayesian Classifier Combination. AISTATS,
    PMLR 22:619–627. Raykar, V. C. et al. (2010). Learning From Crowds. JMLR 11:1297–1322.
    Dawid and Skene (1979), doi:10.2307/2346806.

    Args:
        correct_prior: Dirichlet pseudo-count on a confusion row's diagonal (at least 1).
        wrong_prior: Dirichlet pseudo-count off the diagonal (at least 1).
        class_prior: Dirichlet pseudo-count of each class in the class prior (at least 1).
        max_iter: most EM iterations.
        tol: stop when the loss changes by at most this much.
        rng: random generator for tie-breaking; ``np.random.default_rng(0)`` when omitted.

    Example:
        >>> answers = pd.DataFrame({"unit": [1, 1, 1, 2, 2, 2], "volunteer": ["a", "b", "c"] * 2,
        ...                         "label": ["yes", "yes", "no", "no", "no", "no"]})
        >>> BayesianDawidSkene().fit_predict(answers).to_dict()
        {1: 'yes', 2: 'no'}
    """

    name = "bayesian_dawid_skene"

    def __init__(self, correct_prior: float = 2.0, wrong_prior: float = 1.0, class_prior: float = 1.0,
                 max_iter: int = 100, tol: float = 1e-5, rng: np.random.Generator | None = None) -> None:
        super().__init__(max_iter=max_iter, tol=tol, rng=rng)
        if min(correct_prior, wrong_prior, class_prior) < 1.0:
            raise ValueError("Dirichlet pseudo-counts must be at least 1 for the posterior mode to exist")
        self.correct_prior = correct_prior
        self.wrong_prior = wrong_prior
        self.class_prior = class_prior

    @property
    def parameters(self) -> dict[str, Any]:
        return {"correct_prior": self.correct_prior, "wrong_prior": self.wrong_prior,
                "class_prior": self.class_prior, **super().parameters}

    def _pseudo_counts(self, n_labels: int) -> np.ndarray:
        alpha = np.full((n_labels, n_labels), self.wrong_prior)
        np.fill_diagonal(alpha, self.correct_prior)
        return alpha

    def _m_step(self, counts: np.ndarray, class_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        extra = self._pseudo_counts(counts.shape[1]) - 1.0
        smoothed = counts + extra
        log_pi = _normalized_log(smoothed, smoothed.sum(axis=2, keepdims=True))
        classes = class_counts + (self.class_prior - 1.0)
        log_prior = _normalized_log(classes, classes.sum())
        log_density = float((extra * log_pi).sum()) + float((self.class_prior - 1.0) * log_prior.sum())
        return log_pi, log_prior, log_density

    def _skills(self, counts: np.ndarray, log_pi: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diagonal = np.arange(counts.shape[1])
        concentration = counts + self._pseudo_counts(counts.shape[1])
        hits = concentration[:, diagonal, diagonal]
        total = concentration.sum(axis=2)
        variance = hits * (total - hits) / (total * total * (total + 1.0))
        return np.clip((hits / total) @ prior, 0.0, 1.0), np.sqrt(variance @ (prior * prior))
