"""Consensus: turn several volunteers' answers to a unit into one result with a confidence.

Aggregators follow crowd-kit's shape: ``fit(answers) -> self``, ``fit_predict`` and
``fit_predict_proba`` over a long table (a pandas DataFrame) with one row per answer.
Fitted results live in attributes ending in ``_``.

Label aggregators (:class:`Wawa`, :class:`DawidSkene`, :class:`OneCoinDawidSkene`,
:class:`BayesianDawidSkene`) also take ``gold`` (unit -> known label) in ``fit`` and give
each volunteer a reliability (``skills_``) with its uncertainty (``skills_std_``).
:class:`MultiLabelDawidSkene` does the same for multi-label tagging (a list of tags per
answer), where :class:`MultiLabelMajority` only counts.
:data:`LABEL_METHODS` names them for the command line; :data:`DEFAULT_LABEL_METHOD`
is the one recommended for a project whose volunteers are not yet known
(see ``benchmarks/RESULTS.md``).

Mark aggregators (:class:`MarkMajority`, :class:`CraterClustering`) take a long table of
``unit, volunteer, x, y, r`` marks and give each unit a list of consensus marks.
"""

from __future__ import annotations

from microtasks.consensus._labels import LabelAggregator
from microtasks.consensus.craters import CraterClustering
from microtasks.consensus.dawid_skene import BayesianDawidSkene, DawidSkene, OneCoinDawidSkene
from microtasks.consensus.majority import MajorityVote, MultiLabelMajority
from microtasks.consensus.marks import MarkMajority
from microtasks.consensus.multilabel import MultiLabelDawidSkene
from microtasks.consensus.wawa import Wawa

#: Label aggregators by the name the command line uses.
LABEL_METHODS: dict[str, type] = {
    "majority_vote": MajorityVote,
    "wawa": Wawa,
    "dawid_skene": DawidSkene,
    "one_coin_dawid_skene": OneCoinDawidSkene,
    "bayesian_dawid_skene": BayesianDawidSkene,
}
#: The recommended method for an unknown project.
DEFAULT_LABEL_METHOD = "bayesian_dawid_skene"

__all__ = [
    "BayesianDawidSkene",
    "CraterClustering",
    "DEFAULT_LABEL_METHOD",
    "DawidSkene",
    "LABEL_METHODS",
    "LabelAggregator",
    "MajorityVote",
    "MarkMajority",
    "MultiLabelDawidSkene",
    "MultiLabelMajority",
    "OneCoinDawidSkene",
    "Wawa",
]
