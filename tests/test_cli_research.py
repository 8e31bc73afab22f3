"""``microtasks aggregate``: raw answers in, one label per unit out, labels kept exactly as read."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from web.cli_research import aggregate, plan

ANSWERS = """unit,volunteer,label
u1,a,cat
u1,b,cat
u1,c,dog
u2,a,dog
u2,b,dog
u2,c,dog
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(tmp_path: Path, answers: str, *options: str) -> tuple[object, list[dict[str, str]]]:
    """Run ``aggregate`` on the given answers text; return the click result and the rows written."""
    out = tmp_path / "consensus.csv"
    result = CliRunner().invoke(aggregate, ["--answers", str(write(tmp_path, "answers.csv", answers)),
                                            "--out", str(out), *options])
    rows = list(csv.DictReader(out.open(encoding="utf-8"))) if out.exists() else []
    return result, rows


def test_aggregate_writes_a_label_and_confidence_per_unit(tmp_path):
    """Each unit gets one row, unit,label,confidence, in the order units first appear."""
    result, rows = run(tmp_path, ANSWERS)
    assert result.exit_code == 0, result.output
    assert [(r["unit"], r["label"]) for r in rows] == [("u1", "cat"), ("u2", "dog")]
    assert all(0.0 < float(r["confidence"]) <= 1.0 for r in rows)
    assert list(rows[0]) == ["unit", "label", "confidence"]


def test_labels_and_units_stay_strings(tmp_path):
    """'01' and '007' are written back exactly, never turned into 1 or 7."""
    text = "unit,volunteer,label\n007,a,01\n007,b,01\n008,a,1\n008,b,1\n"
    result, rows = run(tmp_path, text)
    assert result.exit_code == 0, result.output
    assert [(r["unit"], r["label"]) for r in rows] == [("007", "01"), ("008", "1")]


@pytest.mark.parametrize("method", ["majority_vote", "wawa", "dawid_skene", "one_coin_dawid_skene",
                                    "bayesian_dawid_skene"])
def test_every_method_can_be_chosen(tmp_path, method):
    """--method selects any of the label aggregators."""
    result, rows = run(tmp_path, ANSWERS, "--method", method)
    assert result.exit_code == 0, result.output
    assert [r["label"] for r in rows] == ["cat", "dog"]


def test_an_unknown_method_is_refused(tmp_path):
    """A method name that does not exist is a usage error."""
    result, _ = run(tmp_path, ANSWERS, "--method", "telepathy")
    assert result.exit_code != 0 and "telepathy" in result.output


def test_a_short_line_is_named(tmp_path):
    """A row with a missing field is reported as answers.csv, line N, with a non-zero exit."""
    result, rows = run(tmp_path, "unit,volunteer,label\nu1,a,cat\nu1,b\n")
    assert result.exit_code != 0
    assert "answers.csv, line 3: expected 3 fields, found 2" in result.output
    assert rows == []


def test_an_empty_label_is_named(tmp_path):
    """A row whose label is blank is reported with its line."""
    result, _ = run(tmp_path, "unit,volunteer,label\nu1,a,cat\nu2,b,\n")
    assert result.exit_code != 0 and "answers.csv, line 3: empty label" in result.output


def test_a_header_without_the_label_column_is_named(tmp_path):
    """A header that lacks a needed column is reported on line 1."""
    result, _ = run(tmp_path, "unit,volunteer,answer\nu1,a,cat\n")
    assert result.exit_code != 0 and "answers.csv, line 1: header lacks column(s) label" in result.output


def test_a_stray_quote_is_named(tmp_path):
    """Broken CSV quoting is reported with its line, not as a traceback."""
    result, _ = run(tmp_path, 'unit,volunteer,label\nu1,a,cat\nu2,b,"do"g\n')
    assert result.exit_code != 0 and "answers.csv, line 3:" in result.output


def test_text_that_is_not_utf8_is_named(tmp_path):
    """Bytes that are not UTF-8 are reported with the line they are on."""
    path = tmp_path / "answers.csv"
    path.write_bytes(b"unit,volunteer,label\nu1,a,cat\nu2,b,\xff\n")
    result = CliRunner().invoke(aggregate, ["--answers", str(path), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code != 0 and "answers.csv, line 3: not UTF-8 text" in result.output


def test_a_header_only_file_writes_a_header_only_result(tmp_path):
    """No answers: a result with just its header, and a zero exit."""
    result, rows = run(tmp_path, "unit,volunteer,label\n")
    assert result.exit_code == 0, result.output
    assert rows == [] and (tmp_path / "consensus.csv").read_text() == "unit,label,confidence\n"


def test_a_repeated_answer_keeps_the_first(tmp_path):
    """A volunteer answering a unit twice counts once, with their first answer, and a note on stderr."""
    result, rows = run(tmp_path, "unit,volunteer,label\nu1,a,cat\nu1,a,dog\nu1,a,dog\n")
    assert result.exit_code == 0, result.output
    assert rows[0]["label"] == "cat"
    assert "2 repeated (unit, volunteer) answer(s) ignored" in result.stderr


def test_gold_fixes_a_unit(tmp_path):
    """--gold gives its units the known label with confidence 1."""
    gold = write(tmp_path, "gold.csv", "unit,label\nu1,dog\n")
    result, rows = run(tmp_path, ANSWERS, "--gold", str(gold))
    assert result.exit_code == 0, result.output
    assert rows[0] == {"unit": "u1", "label": "dog", "confidence": "1.000000"}


def test_gold_fixes_a_unit_under_majority_vote(tmp_path):
    """Majority vote learns no reliabilities, but gold still fixes its own units."""
    gold = write(tmp_path, "gold.csv", "unit,label\nu1,dog\n")
    result, rows = run(tmp_path, ANSWERS, "--gold", str(gold), "--method", "majority_vote")
    assert result.exit_code == 0, result.output
    assert rows[0]["label"] == "dog" and rows[1]["label"] == "dog"


def test_gold_with_two_labels_for_a_unit_is_named(tmp_path):
    """Gold that gives a unit two different labels names the conflicting line."""
    gold = write(tmp_path, "gold.csv", "unit,label\nu1,dog\nu1,cat\n")
    result, _ = run(tmp_path, ANSWERS, "--gold", str(gold))
    assert result.exit_code != 0 and "gold.csv, line 3: unit 'u1' already has gold label 'dog'" in result.output


TAGS = """unit,volunteer,labels
u1,a,sky;sea
u1,b,sky;sea
u1,c,sea;sky
u1,d,sky
u1,e,boat
u2,a,sky
u2,b,sky
u2,c,
u2,d,sky
u2,e,sky;sea
"""


def careful_and_careless(n_units: int = 40) -> tuple[str, dict[str, str]]:
    """Answers where two careful volunteers tick the true tags and three careless ones tick each tag at
    random (seeded); and the true tags of each unit."""
    rng = np.random.default_rng(0)
    tags = ["sky", "sea", "boat"]
    lines, truth = ["unit,volunteer,labels"], {}
    for u in range(n_units):
        true = [t for t in tags if rng.random() < 0.4]
        truth[f"u{u}"] = ";".join(true)
        lines += [f"u{u},{v},{';'.join(true)}" for v in ("c1", "c2")]
        lines += [f"u{u},{v},{';'.join(t for t in tags if rng.random() < 0.5)}" for v in ("x1", "x2", "x3")]
    return "\n".join(lines) + "\n", truth


def test_multi_label_answers_give_tags_and_a_confidence_per_unit(tmp_path):
    """With --multi-label: unit,labels,confidence, tags joined by ';' in the order they first appear."""
    result, rows = run(tmp_path, TAGS, "--multi-label")
    assert result.exit_code == 0, result.output
    assert list(rows[0]) == ["unit", "labels", "confidence"]
    assert [(row["unit"], row["labels"]) for row in rows] == [("u1", "sky;sea"), ("u2", "sky")]
    assert all(0 < float(row["confidence"]) <= 1 for row in rows)


def test_multi_label_weighs_careful_volunteers_above_a_careless_majority(tmp_path):
    """Three volunteers ticking at random outvote two careful ones on some units, but not under the model."""
    answers, truth = careful_and_careless()
    _, model = run(tmp_path, answers, "--multi-label")
    _, majority = run(tmp_path, answers, "--multi-label", "--method", "multilabel_majority")
    assert {row["unit"]: row["labels"] for row in model} == truth
    assert {row["unit"]: row["labels"] for row in majority} != truth


def test_multi_label_gold_fixes_a_units_tags(tmp_path):
    gold = write(tmp_path, "gold.csv", "unit,labels\nu2,sea;boat\n")
    _, rows = run(tmp_path, TAGS, "--multi-label", "--gold", str(gold))
    assert {row["unit"]: row["labels"] for row in rows}["u2"] == "sea;boat"


def test_multi_label_gold_fixes_a_units_tags_under_the_majority_too(tmp_path):
    gold = write(tmp_path, "gold.csv", "unit,labels\nu2,sea;boat\n")
    _, rows = run(tmp_path, TAGS, "--multi-label", "--method", "multilabel_majority", "--gold", str(gold))
    assert [(row["unit"], row["labels"], row["confidence"]) for row in rows][1] == ("u2", "sea;boat", "1.000000")


def test_an_answer_with_no_tag_is_an_empty_cell_not_an_error(tmp_path):
    result, rows = run(tmp_path, "unit,volunteer,labels\nu1,a,\nu1,b,\n", "--multi-label")
    assert result.exit_code == 0 and rows == [{"unit": "u1", "labels": "", "confidence": rows[0]["confidence"]}]


def test_a_single_label_method_with_multi_label_is_refused(tmp_path):
    result, rows = run(tmp_path, TAGS, "--multi-label", "--method", "wawa")
    assert result.exit_code == 2 and "multilabel_dawid_skene" in result.output and rows == []


def test_multi_label_answers_without_a_labels_column_are_named(tmp_path):
    result, _ = run(tmp_path, ANSWERS, "--multi-label")
    assert result.exit_code == 1 and "answers.csv, line 1: header lacks column(s) labels" in result.output


def test_the_same_seed_gives_the_same_file(tmp_path):
    """Ties are broken by --seed: running twice with one seed writes the same file."""
    text = "unit,volunteer,label\n" + "".join(f"u{i},a,cat\nu{i},b,dog\n" for i in range(20))
    first = run(tmp_path, text, "--seed", "3")[1]
    again = run(tmp_path, text, "--seed", "3")[1]
    assert first == again and {r["label"] for r in first} == {"cat", "dog"}


def test_every_option_has_help_text():
    """Each option of aggregate documents itself."""
    assert all(option.help for option in aggregate.params)


def test_plan_prints_accuracy_per_redundancy_and_the_least_that_reaches_a_target(tmp_path):
    """microtasks plan simulates each redundancy against gold and names the one reaching --target."""
    rows = "".join(f"u{u},v{v},{'yes' if (u + v) % 4 else 'no'}\n" for u in range(20) for v in range(5))
    answers = write(tmp_path, "answers.csv", "unit,volunteer,label\n" + rows)
    gold = write(tmp_path, "gold.csv", "unit,label\n" + "".join(f"u{u},yes\n" for u in range(20)))
    result = CliRunner().invoke(plan, ["--answers", str(answers), "--gold", str(gold), "--max-redundancy", "5",
                                       "--repeats", "2", "--target", "0.9", "--method", "majority_vote"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "redundancy,answers_per_unit,accuracy,accuracy_std" and len(lines) == 8
    assert lines[-1] == "accuracy 0.9 needs 3 answers per unit"


def test_every_plan_option_has_help_text():
    """Each option of plan documents itself."""
    assert all(option.help for option in plan.params)


def test_plan_without_answers_is_an_error(tmp_path):
    """A header-only file has nothing to simulate: a clear error, not a table of zeros."""
    answers = write(tmp_path, "answers.csv", "unit,volunteer,label\n")
    result = CliRunner().invoke(plan, ["--answers", str(answers)])
    assert result.exit_code != 0 and "answers.csv: no answers to simulate" in result.output
