"""The spam and carelessness rules (pure)."""

from __future__ import annotations

import pandas as pd

from microtasks.quarantine import Rules, suspects


def volunteer(n=40, ms=4000.0, top="a", share=0.3, skill=0.85, std=0.03):
    return {"n_answers": n, "median_ms": ms, "top_label": top, "top_share": share, "skill": skill, "skill_std": std}


def judge(**volunteers) -> dict:
    return suspects(pd.DataFrame.from_dict(volunteers, orient="index"), n_labels=4)


def test_a_careful_volunteer_is_left_alone():
    """Plausible times, varied answers and good skill break no rule."""
    assert judge(careful=volunteer(), other=volunteer(top="b")) == {}


def test_one_label_for_everything_is_spam_when_that_label_is_not_that_common():
    """Giving one label to 98% of units is quarantined when others do not."""
    found = judge(spam=volunteer(top="a", share=0.98), b=volunteer(top="b", share=0.3), c=volunteer(top="c"))
    assert list(found) == ["spam"] and "same answer" in found["spam"]


def test_chance_level_agreement_is_quarantined():
    """A skill whose upper end is at chance (1/4 here) marks a volunteer who is guessing."""
    assert "chance level" in judge(guess=volunteer(skill=0.24, std=0.02))["guess"]


def test_a_volunteer_with_few_answers_is_not_judged():
    """Below the minimum number of answers no rule applies, however odd they look."""
    assert judge(new=volunteer(n=Rules().min_answers - 1, ms=100.0)) == {}
