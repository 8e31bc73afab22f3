"""Answer validation per task type (pure functions)."""

from __future__ import annotations

import pytest

from microtasks.errors import ValidationError
from microtasks.tasktypes import MAX_MARKS, TaskSpec, validate_answer

TAGS = TaskSpec("tagging", labels=("cat", "dog"))
MULTI = TaskSpec("tagging", labels=("cat", "dog", "bird"), multi_select=True)
CIRCLES = TaskSpec("marking", marking_tool="circle", width=100, height=50)
POINTS = TaskSpec("marking", marking_tool="point", width=100, height=50)


def test_multi_select_labels_come_back_in_project_order():
    """A multi-label answer is stored in the project's label order."""
    assert validate_answer(MULTI, {"labels": ["bird", "cat"]}) == {"labels": ["cat", "bird"]}


@pytest.mark.parametrize(("spec", "payload", "field"), [
    (TAGS, {"label": "horse"}, "payload.label"),
    (TAGS, {"label": 3}, "payload.label"),
    (TAGS, {}, "payload"),
    (TAGS, {"label": "cat", "extra": 1}, "payload"),
    (TAGS, ["cat"], "payload"),
    (TAGS, {"unsure": False}, "payload.unsure"),
    (TAGS, {"unsure": True, "label": "cat"}, "payload"),
    (MULTI, {"labels": ["cat", "cat"]}, "payload.labels"),
    (MULTI, {"labels": "cat"}, "payload.labels"),
    (CIRCLES, {"marks": [{"x": 101, "y": 10, "r": 3}]}, "payload.marks[0]"),
    (CIRCLES, {"marks": [{"x": 10, "y": -1, "r": 3}]}, "payload.marks[0]"),
    (CIRCLES, {"marks": [{"x": 10, "y": 10, "r": 0}]}, "payload.marks[0].r"),
    (CIRCLES, {"marks": [{"x": 10, "y": 10, "r": 1000}]}, "payload.marks[0].r"),
    (CIRCLES, {"marks": [{"x": "10", "y": 10, "r": 3}]}, "payload.marks[0].x"),
    (CIRCLES, {"marks": [{"x": float("nan"), "y": 10, "r": 3}]}, "payload.marks[0].x"),
    (CIRCLES, {"marks": [{"x": 10, "y": 10}]}, "payload.marks[0]"),
    (CIRCLES, {"marks": [{"x": 1, "y": 1, "r": 1}] * (MAX_MARKS + 1)}, "payload.marks"),
    (POINTS, {"marks": [{"x": 10, "y": 10, "r": 2}]}, "payload.marks[0]"),
])
def test_invalid_answers_name_the_bad_field(spec, payload, field):
    """Each malformed answer is refused with the offending field named."""
    with pytest.raises(ValidationError) as caught:
        validate_answer(spec, payload)
    assert caught.value.field == field


def test_empty_marks_mean_nothing_is_there():
    """An empty list of marks is a valid answer."""
    assert validate_answer(CIRCLES, {"marks": []}) == {"marks": []}


def test_a_circle_on_the_image_edge_is_accepted():
    """A centre exactly on the border is inside the image."""
    assert validate_answer(CIRCLES, {"marks": [{"x": 100, "y": 50, "r": 5}]}) == {
        "marks": [{"x": 100.0, "y": 50.0, "r": 5.0}]}


def test_not_sure_is_a_valid_tagging_answer():
    """'Not sure' is accepted for single and multi-label tagging alike."""
    assert validate_answer(TAGS, {"unsure": True}) == validate_answer(MULTI, {"unsure": True}) == {"unsure": True}
