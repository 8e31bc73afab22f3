"""Multi-label tagging: a two-coin Dawid–Skene model over every (unit, tag) pair, fitted by MAP EM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Hashable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from microtasks.consensus._labels import EPS, _factorize, beta_std
from microtasks.consensus.majority import _require_columns

COLUMNS = ("unit", "volunteer", "labels")


class MultiLabelDawidSkene:
    r"""Several tags per unit: each tag's presence is decided from volunteers' sensitivity and specificity.

    Model (the "two-coin" model of Raykar et al. 2010, applied to every tag, as binary
    relevance does). Tag *k* is on unit *u* (:math:`z_{uk} = 1`) with prior probability
    :math:`\rho_k`, the tag's prevalence. A volunteer *w* who answers the unit ticks a
    present tag with probability :math:`\alpha_w` (sensitivity) and leaves an absent tag
    unticked with probability :math:`\beta_w` (specificity); tags are independent given the
    truth:

    .. math:: p(z_{uk} = 1 \mid y) = \sigma\Big(\log\frac{\rho_k}{1 - \rho_k}
              + \sum_{w \in u} y_{uwk} \log\frac{\alpha_w}{1 - \beta_w}
              + (1 - y_{uwk}) \log\frac{1 - \alpha_w}{\beta_w}\Big)

    A volunteer's two numbers are shared by all tags, so a volunteer who answered twenty
    units has been measured on twenty times as many tag decisions; the tags keep their
    own prevalence, so a rare tag needs stronger evidence than a common one. EM starts from
    the share of each unit's volunteers who ticked each tag and climbs the posterior under
    Beta(``correct_prior``, ``wrong_prior``) priors on :math:`\alpha_w` and :math:`\beta_w`
    (one imaginary correct decision each with the defaults, as :class:`BayesianDawidSkene`)
    and a Beta(``tag_prior``, ``tag_prior``) prior on each :math:`\rho_k`, until the negative
    log-posterior per (answer, tag) changes by at most ``tol``.

    Gold units (unit -> its list of tags) are held at their known tags and so measure the
    volunteers who answered them.

    A tag is kept on a unit when its posterior is above 1/2. The unit's confidence is its
    least decisive tag, :math:`\min_k \max(p_{uk}, 1 - p_{uk})`, as for
    :class:`MultiLabelMajority`. ``skills_`` is each volunteer's balanced accuracy
    :math:`(\alpha_w + \beta_w) / 2` under the posterior means of the Beta posteriors (0.5 is
    chance) and ``skills_std_`` its posterior standard deviation; ``sensitivities_`` and
    ``specificities_`` are the fitted point estimates, ``decisions_`` the expected decisions
    behind them, and ``priors_`` the tags' prevalences.

    Raykar, V. C. et al. (2010). Learning From Crowds. JMLR 11:1297–1322 (section 2, the
    two-coin model); Dawid, A. P. and Skene, A. M. (1979), doi:10.2307/2346806.

    Args:
        labels: every tag of the project, so a tag nobody ticked still gets a posterior;
            tags seen in the answers or gold are added. None: the tags seen.
        correct_prior: Beta pseudo-count of correct decisions in each volunteer's two coins (at least 1).
        wrong_prior: Beta pseudo-count of wrong decisions (at least 1).
        tag_prior: Beta pseudo-count of each tag's presence and absence (at least 1).
        max_iter: most EM iterations.
        tol: stop when the loss changes by at most this much.

    Example:
        >>> answers = pd.DataFrame({"unit": [1, 1, 1, 2, 2, 2], "volunteer": ["a", "b", "c"] * 2,
        ...                         "labels": [["sky"], ["sky", "sea"], ["sky"], ["sea"], ["sea"], []]})
        >>> MultiLabelDawidSkene().fit_predict(answers).to_dict()
        {1: ['sky'], 2: ['sea']}
    """

    name = "multilabel_dawid_skene"

    def __init__(self, labels: Sequence[Hashable] | None = None, correct_prior: float = 2.0,
                 wrong_prior: float = 1.0, tag_prior: float = 1.0, max_iter: int = 100, tol: float = 1e-5) -> None:
        if min(correct_prior, wrong_prior, tag_prior) < 1.0:
            raise ValueError("Beta pseudo-counts must be at least 1 for the posterior mode to exist")
        if max_iter < 1:
            raise ValueError("max_iter must be at least 1")
        if tol < 0:
            raise ValueError("tol must not be negative")
        self.labels = None if labels is None else list(labels)
        self.correct_prior = correct_prior
        self.wrong_prior = wrong_prior
        self.tag_prior = tag_prior
        self.max_iter = max_iter
        self.tol = tol

    @property
    def parameters(self) -> dict[str, Any]:
        """Hyperparameters, for recording beside a result."""
        return {"correct_prior": self.correct_prior, "wrong_prior": self.wrong_prior, "tag_prior": self.tag_prior,
                "max_iter": self.max_iter, "tol": self.tol}

    def fit(self, answers: pd.DataFrame, gold: pd.Series | None = None) -> "MultiLabelDawidSkene":
        """Fit on a long table (``unit``, ``volunteer``, ``labels``: a list of tags per answer).

        ``gold`` maps units to their known list of tags; gold units nobody answered are ignored.

        Raises:
            ValueError: a column is missing, a unit or volunteer is empty, or a ``labels``
                cell is not a list of tags.
        """
        _require_columns(answers, COLUMNS)
        table = answers[list(COLUMNS)]
        empty = table[["unit", "volunteer"]].isna().any(axis=1).to_numpy()
        if empty.any():
            raise ValueError(f"answers table has {int(empty.sum())} row(s) with an empty unit or volunteer "
                             f"(first at index {table.index[np.flatnonzero(empty)[0]]!r})")
        given = [_tags(value, f"answers row {index!r}") for index, value in zip(table.index, table["labels"])]
        gold = pd.Series([], dtype=object) if gold is None else gold
        if gold.index.has_duplicates:
            raise ValueError("gold gives some unit more than one list of tags")
        gold_tags = [_tags(value, f"gold for unit {unit!r}") for unit, value in gold.items()]
        seen = pd.unique(pd.Series([t for tags in given + gold_tags for t in tags], dtype=object))
        tags = pd.Index(list(self.labels or []) + [t for t in seen if t not in set(self.labels or [])],
                        name="label")
        unit, units = _factorize(table["unit"])
        volunteer, volunteers = _factorize(table["volunteer"])
        units, volunteers = units.rename("unit"), volunteers.rename("volunteer")
        ticked = np.zeros((len(table), len(tags)))
        rows = np.repeat(np.arange(len(table)), [len(t) for t in given])
        ticked[rows, tags.get_indexer([t for t in given for t in t])] = 1.0
        gold_unit = units.get_indexer(gold.index) if len(gold) else np.empty(0, dtype=np.int64)
        known = np.zeros((len(gold_tags), len(tags)))
        for j, t in enumerate(gold_tags):
            known[j, tags.get_indexer(t)] = 1.0
        keep = gold_unit >= 0
        self._fit(unit, volunteer, ticked, units, volunteers, tags, gold_unit[keep], known[keep])
        return self

    def fit_predict(self, answers: pd.DataFrame, gold: pd.Series | None = None) -> pd.Series:
        """Fit and return ``labels_``: unit -> list of tags."""
        return self.fit(answers, gold).labels_

    def fit_predict_proba(self, answers: pd.DataFrame, gold: pd.Series | None = None) -> pd.DataFrame:
        """Fit and return ``probas_``: units x tags, the probability that each tag is on the unit."""
        return self.fit(answers, gold).probas_

    def _fit(self, unit: np.ndarray, volunteer: np.ndarray, ticked: np.ndarray, units: pd.Index,
             volunteers: pd.Index, tags: pd.Index, gold_unit: np.ndarray, known: np.ndarray) -> None:
        n_answers, n_tags = ticked.shape
        n_units, n_volunteers = len(units), len(volunteers)
        # sums over a unit's answers and over a volunteer's answers, as sparse products
        by_unit = sp.csr_matrix((np.ones(n_answers), (unit, np.arange(n_answers))), shape=(n_units, n_answers))
        by_volunteer = sp.csr_matrix((np.ones(n_answers), (volunteer, np.arange(n_answers))),
                                     shape=(n_volunteers, n_answers))
        answered = np.asarray(by_unit.sum(axis=1)).ravel()
        truth = np.asarray(by_unit @ ticked) / np.maximum(answered, 1.0)[:, None]
        truth[gold_unit] = known
        extra_right, extra_wrong, extra_tag = self.correct_prior - 1.0, self.wrong_prior - 1.0, self.tag_prior - 1.0
        absent = 1.0 - ticked
        self.loss_history_: list[float] = []
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            # M-step: expected decisions of each volunteer on present and absent tags
            mine = truth[unit]
            present_hit = np.asarray(by_volunteer @ (mine * ticked).sum(axis=1)).ravel()
            present = np.asarray(by_volunteer @ mine.sum(axis=1)).ravel()
            absent_hit = np.asarray(by_volunteer @ ((1.0 - mine) * absent).sum(axis=1)).ravel()
            absent_all = np.asarray(by_volunteer @ (1.0 - mine).sum(axis=1)).ravel()
            sensitivity = _ratio(present_hit + extra_right, present + extra_right + extra_wrong)
            specificity = _ratio(absent_hit + extra_right, absent_all + extra_right + extra_wrong)
            prevalence = _ratio(truth.sum(axis=0) + extra_tag, n_units + 2 * extra_tag)
            # E-step: log-likelihood of the answers under "present" and under "absent", per (unit, tag)
            log_s, log_not_s = np.log(sensitivity), np.log1p(-sensitivity)
            log_f, log_not_f = np.log(specificity), np.log1p(-specificity)
            if_present = np.asarray(by_unit @ (ticked * log_s[volunteer, None] + absent * log_not_s[volunteer, None]))
            if_absent = np.asarray(by_unit @ (ticked * log_not_f[volunteer, None] + absent * log_f[volunteer, None]))
            if_present += np.log(prevalence)
            if_absent += np.log1p(-prevalence)
            evidence = np.logaddexp(if_present, if_absent)
            truth = np.exp(if_present - evidence)
            truth[gold_unit] = known
            evidence[gold_unit] = np.where(known > 0, if_present[gold_unit], if_absent[gold_unit])
            density = (extra_right * (log_s + log_f).sum() + extra_wrong * (log_not_s + log_not_f).sum()
                       + extra_tag * (np.log(prevalence) + np.log1p(-prevalence)).sum())
            loss = -(float(evidence.sum()) + float(density)) / max(n_answers * n_tags, 1)
            self.loss_history_.append(loss)
            self.n_iter_ += 1
            if len(self.loss_history_) > 1 and abs(self.loss_history_[-2] - loss) <= self.tol:
                break
        self.probas_ = pd.DataFrame(truth, index=units, columns=tags)
        chosen = truth > 0.5
        names = tags.tolist()
        self.labels_ = pd.Series([[names[k] for k in np.flatnonzero(row)] for row in chosen], index=units,
                                 name="labels", dtype=object)
        decisive = np.maximum(truth, 1.0 - truth)
        self.confidences_ = pd.Series(decisive.min(axis=1) if n_tags else np.ones(n_units), index=units,
                                      name="confidence")
        self.sensitivities_ = pd.Series(sensitivity, index=volunteers, name="sensitivity")
        self.specificities_ = pd.Series(specificity, index=volunteers, name="specificity")
        self.priors_ = pd.Series(prevalence, index=tags, name="prior")
        # expected decisions of each volunteer: hits and all on present tags, then on absent tags
        self.decisions_ = pd.DataFrame({"present_hits": present_hit, "present": present, "absent_hits": absent_hit,
                                        "absent": absent_all}, index=volunteers)
        # posterior Beta distributions of the two coins; the skill is the mean of the two
        hits_s, miss_s = present_hit + self.correct_prior, present - present_hit + self.wrong_prior
        hits_f, miss_f = absent_hit + self.correct_prior, absent_all - absent_hit + self.wrong_prior
        skill = (hits_s / (hits_s + miss_s) + hits_f / (hits_f + miss_f)) / 2
        spread = np.sqrt(beta_std(hits_s, miss_s) ** 2 + beta_std(hits_f, miss_f) ** 2) / 2
        self.skills_ = pd.Series(skill, index=volunteers, name="skill")
        self.skills_std_ = pd.Series(spread, index=volunteers, name="skill_std")


def _ratio(numerator: np.ndarray, denominator: np.ndarray | float) -> np.ndarray:
    """``numerator / denominator`` kept inside [EPS, 1 - EPS]; 1/2 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=float)
    ratio = np.divide(numerator, denominator, out=np.full(numerator.shape, 0.5), where=np.asarray(denominator) > 0)
    return np.clip(ratio, EPS, 1.0 - EPS)


def _tags(value: Any, where: str) -> list[Hashable]:
    """A cell's tags as a list without repeats (a list, tuple, set or array of tags; None is no tag)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        raise ValueError(f"{where}: labels must be a list of tags, not {value!r}")
    return list(dict.fromkeys(value))

