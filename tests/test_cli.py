"""The microtasks command: import and export from files, with errors naming the file and line."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from tests.conftest import TAGGING, png_bytes
from web.cli import cli


@pytest.fixture()
def cli_project(tmp_path, session_maker, owner):
    """A tagging project made through the CLI; returns its slug."""
    settings_file = tmp_path / "project.json"
    settings_file.write_text(json.dumps({**TAGGING, "slug": "cli-tags"}))
    result = CliRunner().invoke(cli, ["create-project", "--owner-key", owner["key"], str(settings_file)])
    assert result.exit_code == 0, result.output
    return "cli-tags"


def test_import_from_a_folder_with_a_manifest(tmp_path, cli_project):
    """A folder of images with a manifest imports every listed image."""
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes())
    (folder / "b.png").write_bytes(png_bytes(colour="blue"))
    (folder / "manifest.csv").write_text("file,name\na.png,A\nb.png,B\n")
    result = CliRunner().invoke(cli, ["import", cli_project, str(folder)])
    assert result.exit_code == 0 and "Imported 2 units" in result.output


def test_a_malformed_manifest_is_named_by_file_and_line(tmp_path, cli_project, session_maker):
    """A manifest row with too many cells fails the import with the file and line, and stores nothing."""
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes())
    (folder / "manifest.csv").write_text("file,name\na.png,A\na.png,B,extra\n")
    result = CliRunner().invoke(cli, ["import", cli_project, str(folder)])
    assert result.exit_code == 1
    assert "manifest.csv, line 3: more cells than header columns" in result.output
    from sqlalchemy import func, select

    from microtasks.models import Unit

    with session_maker() as session:
        assert session.scalar(select(func.count()).select_from(Unit)) == 0


def test_a_project_settings_file_with_bad_json_names_the_line(tmp_path, owner, session_maker):
    """create-project reports the line of a JSON syntax error."""
    settings_file = tmp_path / "project.json"
    settings_file.write_text('{\n  "name": "x",\n  oops\n}')
    result = CliRunner().invoke(cli, ["create-project", "--owner-key", owner["key"], str(settings_file)])
    assert result.exit_code == 1 and "project.json, line 3" in result.output


def test_export_writes_a_csv_file(tmp_path, cli_project):
    """export --out writes a CSV with the header of the project's task type."""
    out = tmp_path / "answers.csv"
    result = CliRunner().invoke(cli, ["export", cli_project, "--kind", "answers", "--out", str(out)])
    assert result.exit_code == 0
    with out.open() as handle:
        assert next(csv.reader(handle))[:5] == ["answer_id", "unit_id", "unit", "volunteer", "label"]


def test_an_unknown_project_is_a_clear_error(cli_project):
    """Naming a project that does not exist says so."""
    result = CliRunner().invoke(cli, ["export", "nope"])
    assert result.exit_code == 1 and "No project with slug 'nope'" in result.output


def test_every_cli_option_has_help_text():
    """Each option of each command explains itself in --help."""
    missing = [f"{name} {param.name}" for name, command in cli.commands.items() for param in command.params
               if param.param_type_name == "option" and not param.help]
    assert missing == []


def test_refit_of_a_project_without_answers_says_so(cli_project):
    """The refit command names a project with nothing to fit instead of failing."""
    result = CliRunner().invoke(cli, ["refit", cli_project])
    assert result.exit_code == 0 and "Nothing to refit in 'cli-tags'" in result.output
