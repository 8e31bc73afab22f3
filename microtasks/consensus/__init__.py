"""Consensus: turn several volunteers' answers to a unit into one result with a confidence.

Aggregators follow crowd-kit's shape: ``fit(answers) -> self``, ``fit_predict`` and
``fit_predict_proba`` over a long table (a pandas DataFrame) with one row per answer.
Fitted results live in attributes ending in ``_``.
"""

from __future__ import annotations

from microtasks.consensus.majority import MajorityVote, MultiLabelMajority
from microtasks.consensus.marks import MarkMajority

__all__ = ["MajorityVote", "MultiLabelMajority", "MarkMajority"]
