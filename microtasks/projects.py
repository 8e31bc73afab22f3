"""Projects: creation, settings and progress."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from microtasks.errors import Conflict, NotFound, ValidationError
from microtasks.models import (
    Answer,
    ConsensusResult,
    MarkingTool,
    Owner,
    Project,
    Strategy,
    TaskType,
    Unit,
    UnitState,
)


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60] or "project"


#: Settings that shape answers: fixed once a project has answers, so old and new answers stay comparable.
ANSWER_SHAPE = ("task_type", "labels", "multi_select", "marking_tool")
#: Settings the serving cache holds: a change rebuilds it.
SERVING = ("redundancy", "max_redundancy", "min_redundancy", "strategy", "lease_seconds", "gold_warmup_rate",
           "gold_warmup", "gold_rate", "qualification", "published")
#: Plain settings copied as given (the API schema or the CLI checked their types and ranges).
PLAIN = ("name", "description", "instructions", "redundancy", "max_redundancy", "min_redundancy",
         "confidence_threshold", "lease_seconds", "gold_warmup_rate", "gold_warmup", "gold_rate", "qualification",
         "published", "topics")
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
TRANSLATABLE = ("name", "description", "instructions")


def create_project(session: Session, owner: Owner, settings: dict[str, Any]) -> Project:
    """Create a project from already-typed settings (the API schema or the CLI checked the types)."""
    slug = settings.get("slug") or slugify(settings["name"])
    if session.scalars(select(Project.id).where(Project.slug == slug)).first() is not None:
        raise Conflict(f"A project with slug {slug!r} already exists.", field="slug")
    project = Project(owner=owner, slug=slug, name=settings["name"], task_type=TaskType(settings["task_type"]),
                      labels=[], field_guide=[], tutorial=[], languages=["en"], translations={}, topics=[])
    settings = dict(settings)
    for name, default in (("redundancy", 3), ("lease_seconds", 600),
                          ("strategy", Strategy.depth_first.value), ("gold_warmup_rate", 0.4), ("gold_warmup", 20),
                          ("gold_rate", 0.1), ("published", False), ("description", ""), ("instructions", "")):
        settings.setdefault(name, default)
    _apply(project, settings, has_answers=False)
    session.add(project)
    session.flush()
    return project


def update_project(session: Session, project: Project, changes: dict[str, Any]) -> set[str]:
    """Change a project's settings; returns the names of the settings that changed.

    The settings that shape answers (task type, labels, multi-select, marking tool) are
    fixed once the project has answers. A new redundancy applies to every unit without
    its own: units that now have enough answers retire, retired units that now need
    more open again. The caller commits, then rebuilds the serving cache when a
    setting in :data:`SERVING` changed.
    """
    has_answers = session.scalar(
        select(func.count()).select_from(Answer).join(Unit).where(Unit.project_id == project.id).limit(1)) > 0
    before = {name: getattr(project, name) for name in changes if hasattr(project, name)}
    _apply(project, {**_current(project), **changes}, has_answers=has_answers)
    changed = {name for name, value in before.items() if getattr(project, name) != value}
    if "redundancy" in changed:
        need = project.redundancy
        session.execute(update(Unit).where(Unit.project_id == project.id, Unit.redundancy.is_(None),
                                           Unit.gold.is_(None))
                        .values(state=case((Unit.answer_count >= need, UnitState.retired.value),
                                           else_=UnitState.open.value)))
    if project.completed_at is not None and session.scalar(
            select(func.count()).select_from(Unit).where(Unit.project_id == project.id,
                                                         Unit.state == UnitState.open, Unit.gold.is_(None))):
        project.completed_at = None  # more work was asked for: the project will complete again
    session.flush()
    return changed


def _current(project: Project) -> dict[str, Any]:
    return {"task_type": project.task_type, "labels": project.labels, "multi_select": project.multi_select,
            "marking_tool": project.marking_tool, "field_guide": project.field_guide, "tutorial": project.tutorial,
            "languages": project.languages, "translations": project.translations,
            "webhook_url": project.webhook_url, "strategy": project.strategy,
            **{name: getattr(project, name) for name in PLAIN}}


def _apply(project: Project, settings: dict[str, Any], has_answers: bool) -> None:
    """Check a complete set of settings together and write them to ``project``."""
    task_type = TaskType(settings["task_type"])
    labels = list(settings.get("labels") or [])
    tool = settings.get("marking_tool")
    if task_type is TaskType.tagging:
        if len(labels) < 2:
            raise ValidationError("A tagging project needs at least two labels.", field="labels")
        if len(set(labels)) != len(labels):
            raise ValidationError("Labels must be distinct.", field="labels")
        if tool:
            raise ValidationError("'marking_tool' is only for marking projects.", field="marking_tool")
    else:
        if labels:
            raise ValidationError("'labels' are only for tagging projects.", field="labels")
        if settings.get("multi_select"):
            raise ValidationError("'multi_select' is only for tagging projects.", field="multi_select")
        tool = tool or MarkingTool.circle.value
    shape = {"task_type": task_type, "labels": labels, "multi_select": bool(settings.get("multi_select")),
             "marking_tool": MarkingTool(tool) if tool else None}
    if has_answers:
        for name, value in shape.items():
            if getattr(project, name) != value:
                raise Conflict(f"'{name}' cannot change once the project has answers: old and new answers "
                               "would not be comparable. Make a new project instead.", field=name)
    settings["max_redundancy"] = settings.get("max_redundancy") or max(10, settings["redundancy"])
    if settings["redundancy"] > settings["max_redundancy"]:
        raise ValidationError("'max_redundancy' must be at least 'redundancy'.", field="max_redundancy")
    if settings.get("min_redundancy") and settings["min_redundancy"] > settings["redundancy"]:
        raise ValidationError("'min_redundancy' must be at most 'redundancy'.", field="min_redundancy")
    languages = list(settings.get("languages") or ["en"])
    for code in languages:
        if not LANGUAGE.match(code):
            raise ValidationError(f"{code!r} is not a language code such as 'en' or 'ar'.", field="languages")
    if len(set(languages)) != len(languages):
        raise ValidationError("Languages must be distinct.", field="languages")
    guide = list(settings.get("field_guide") or [])
    if task_type is TaskType.tagging:
        unknown = [entry["label"] for entry in guide if entry["label"] not in labels]
        if unknown:
            raise ValidationError(f"The field guide names labels the project does not have: {unknown}.",
                                  field="field_guide")
    translations = dict(settings.get("translations") or {})
    for code, texts in translations.items():
        if code not in languages:
            raise ValidationError(f"Texts are given in {code!r}, which is not among the project's languages.",
                                  field="translations")
        unknown = [label for label in (texts.get("labels") or {}) if label not in labels]
        if unknown:
            raise ValidationError(f"The {code!r} texts translate labels the project does not have: {unknown}.",
                                  field="translations")
    for name, value in shape.items():
        setattr(project, name, value)
    for name in PLAIN:
        if name in settings:
            setattr(project, name, settings[name])
    project.strategy = Strategy(settings["strategy"])
    project.languages, project.field_guide, project.tutorial = languages, guide, list(settings.get("tutorial") or [])
    project.translations = translations
    url = settings.get("webhook_url") or None
    if url != project.webhook_url:
        project.webhook_url = url
        project.webhook_secret = secrets.token_urlsafe(32) if url else None


def localized(project: Project, language: str) -> dict[str, Any]:
    """The project's texts in ``language`` where the owner gave them, else in the default language.

    Example:
        >>> p = Project(name="Craters", description="", instructions="Circle them.", labels=["yes", "no"],
        ...             field_guide=[], tutorial=[], languages=["en", "ar"],
        ...             translations={"ar": {"name": "فوهات", "labels": {"yes": "نعم"}}})
        >>> texts = localized(p, "ar")
        >>> texts["name"], texts["instructions"], texts["labels"]
        ('فوهات', 'Circle them.', {'yes': 'نعم', 'no': 'no'})
    """
    given = (project.translations or {}).get(language, {}) if language in (project.languages or []) else {}
    texts: dict[str, Any] = {name: given.get(name) or getattr(project, name) for name in TRANSLATABLE}
    names = given.get("labels") or {}
    texts["labels"] = {label: names.get(label) or label for label in project.labels}
    texts["field_guide"] = given.get("field_guide") or project.field_guide
    texts["tutorial"] = given.get("tutorial") or project.tutorial
    return texts


def get_project(session: Session, project_id: int, owner: Owner | None = None) -> Project:
    """The project, or NotFound; with ``owner`` given, only one of theirs."""
    project = session.get(Project, project_id)
    if project is None or (owner is not None and project.owner_id != owner.id):
        raise NotFound(f"No project {project_id}.")
    return project


def progress(session: Session, project: Project) -> dict[str, int]:
    """Counts of units by state, answers and consensus results."""
    by_state = dict(
        session.execute(
            select(Unit.state, func.count()).where(Unit.project_id == project.id).group_by(Unit.state)
        ).all()
    )
    answers = session.scalar(
        select(func.count()).select_from(Answer).join(Unit).where(Unit.project_id == project.id)
    )
    results = session.scalar(
        select(func.count()).select_from(ConsensusResult).join(Unit).where(Unit.project_id == project.id)
    )
    units = sum(by_state.values())
    return {
        "units": units,
        "open": by_state.get(UnitState.open, 0),
        "retired": by_state.get(UnitState.retired, 0),
        "answers": answers or 0,
        "results": results or 0,
    }
