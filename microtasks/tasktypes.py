"""What a valid answer looks like for each task type, checked against the project and the unit.

Answer payloads (JSON):

* tagging, single label: ``{"label": "crater"}``
* tagging, several labels: ``{"labels": ["crater", "boulder"]}`` (an empty list means none apply)
* tagging, either kind: ``{"unsure": true}`` when the volunteer cannot tell (stored, never counted)
* marking with circles: ``{"marks": [{"x": 10.5, "y": 20, "r": 4}]}``; ``{"marks": []}`` means nothing there
* marking with points: ``{"marks": [{"x": 10.5, "y": 20}]}``

Coordinates are image pixels, origin top left; a mark's centre must lie inside the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from microtasks.errors import ValidationError

#: More marks than this on one unit is not a plausible answer.
MAX_MARKS = 500


@dataclass(frozen=True)
class TaskSpec:
    """The parts of a project and a unit that decide whether an answer is valid."""

    task_type: str
    labels: tuple[str, ...] = ()
    multi_select: bool = False
    marking_tool: str | None = None
    width: int | None = None
    height: int | None = None


def spec_for(project: Any, width: int | None, height: int | None) -> TaskSpec:
    """The task spec of a project (a :class:`~microtasks.models.Project`) for an image of the given size."""
    return TaskSpec(
        task_type=project.task_type.value,
        labels=tuple(project.labels),
        multi_select=project.multi_select,
        marking_tool=project.marking_tool.value if project.marking_tool else None,
        width=width,
        height=height,
    )


def validate_answer(spec: TaskSpec, payload: Any) -> dict[str, Any]:
    """Return the answer in canonical form, or raise :class:`ValidationError` naming the bad field."""
    if not isinstance(payload, dict):
        raise ValidationError("The answer must be a JSON object.", field="payload")
    if spec.task_type == "tagging":
        return _validate_tagging(spec, payload)
    if spec.task_type == "marking":
        return _validate_marking(spec, payload)
    raise ValidationError(f"Unknown task type {spec.task_type!r}.", field="task_type")


def _validate_tagging(spec: TaskSpec, payload: dict[str, Any]) -> dict[str, Any]:
    if "unsure" in payload:
        _only_keys(payload, {"unsure"})
        if payload["unsure"] is not True:
            raise ValidationError("'unsure' can only be true.", field="payload.unsure")
        return {"unsure": True}
    allowed = set(spec.labels)
    if spec.multi_select:
        _only_keys(payload, {"labels"})
        labels = payload.get("labels")
        if not isinstance(labels, list) or not all(isinstance(item, str) for item in labels):
            raise ValidationError("'labels' must be a list of label strings.", field="payload.labels")
        unknown = [label for label in labels if label not in allowed]
        if unknown:
            raise ValidationError(f"Unknown label(s) {unknown}; allowed: {list(spec.labels)}.", field="payload.labels")
        if len(set(labels)) != len(labels):
            raise ValidationError("A label is given more than once.", field="payload.labels")
        order = {label: i for i, label in enumerate(spec.labels)}
        return {"labels": sorted(labels, key=order.__getitem__)}
    _only_keys(payload, {"label"})
    label = payload.get("label")
    if not isinstance(label, str):
        raise ValidationError("'label' must be one of the project's labels.", field="payload.label")
    if label not in allowed:
        raise ValidationError(f"Unknown label {label!r}; allowed: {list(spec.labels)}.", field="payload.label")
    return {"label": label}


def _validate_marking(spec: TaskSpec, payload: dict[str, Any]) -> dict[str, Any]:
    _only_keys(payload, {"marks"})
    marks = payload.get("marks")
    if not isinstance(marks, list):
        raise ValidationError("'marks' must be a list (empty when nothing is there).", field="payload.marks")
    if len(marks) > MAX_MARKS:
        raise ValidationError(f"At most {MAX_MARKS} marks per answer.", field="payload.marks")
    circle = spec.marking_tool == "circle"
    keys = ("x", "y", "r") if circle else ("x", "y")
    width, height = spec.width or 0, spec.height or 0
    clean = []
    for i, mark in enumerate(marks):
        where = f"payload.marks[{i}]"
        if not isinstance(mark, dict):
            raise ValidationError("A mark must be an object.", field=where)
        _only_keys(mark, set(keys), where=where)
        values = {}
        for key in keys:
            value = mark.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValidationError(f"'{key}' must be a finite number.", field=f"{where}.{key}")
            values[key] = round(float(value), 2)
        if not (0 <= values["x"] <= width and 0 <= values["y"] <= height):
            raise ValidationError(
                f"Mark centre ({values['x']}, {values['y']}) is outside the {width}x{height} image.", field=where
            )
        if circle and not (0 < values["r"] <= max(width, height)):
            raise ValidationError(
                f"Radius {values['r']} must be positive and at most {max(width, height)} pixels.", field=f"{where}.r"
            )
        clean.append(values)
    return {"marks": clean}


def _only_keys(obj: dict[str, Any], allowed: set[str], where: str = "payload") -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ValidationError(f"Unexpected field(s) {extra}; expected {sorted(allowed)}.", field=where)
    missing = sorted(allowed - set(obj))
    if missing:
        raise ValidationError(f"Missing field(s) {missing}.", field=where)
