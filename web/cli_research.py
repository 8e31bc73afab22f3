"""Commands for researchers: re-aggregate exported raw answers without a server.

``aggregate``, ``plan`` and ``aggregate_marks`` are standalone click commands; the main group in
:mod:`web.cli` registers them (``cli.add_command(aggregate)``, ``cli.add_command(plan)``,
``cli.add_command(aggregate_marks)``), making them ``microtasks aggregate``, ``microtasks plan`` and
``microtasks aggregate-marks``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

import click
import numpy as np
import pandas as pd

from microtasks.consensus import DEFAULT_LABEL_METHOD, LABEL_METHODS, MultiLabelDawidSkene, MultiLabelMajority
from microtasks.consensus.craters import DEFAULT_MIN_SHARE

ANSWER_COLUMNS = ("unit", "volunteer", "label")
GOLD_COLUMNS = ("unit", "label")
#: Multi-label aggregators by name (``--multi-label``), the recommended one first.
TAG_METHODS = {"multilabel_dawid_skene": MultiLabelDawidSkene, "multilabel_majority": MultiLabelMajority}


def read_table(path: Path, columns: tuple[str, ...],
               required: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, list[int]]:
    """Read a CSV whose header names ``columns`` (in any order; other columns are ignored).

    Every value is kept as the exact string read, so ``'01'`` stays ``'01'``. The ``required``
    columns (all by default) may not be empty. Returns the table and, for each row, the
    line of the file it started on.

    Raises:
        click.ClickException: "<file>, line N: reason" for the first malformed line.
    """
    name = path.name
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise click.ClickException(f"{name}, line {line}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise click.ClickException(f"{name}, line 1: no header; expected {','.join(columns)}")
        header = [cell.strip() for cell in header]
        missing = [c for c in columns if c not in header]
        if missing:
            raise click.ClickException(f"{name}, line 1: header lacks column(s) {', '.join(missing)}; "
                                       f"expected {','.join(columns)}")
        repeated = sorted({c for c in header if c and header.count(c) > 1})
        if repeated:
            raise click.ClickException(f"{name}, line 1: column(s) {', '.join(repeated)} appear twice")
        positions = [header.index(c) for c in columns]
        rows: list[list[str]] = []
        lines: list[int] = []
        start = reader.line_num + 1
        for record in reader:
            line = start
            start = reader.line_num + 1
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if len(record) != len(header):
                raise click.ClickException(f"{name}, line {line}: expected {len(header)} fields, "
                                           f"found {len(record)}")
            values = [record[i] for i in positions]
            for column, value in zip(columns, values):
                if not value.strip() and (required is None or column in required):
                    raise click.ClickException(f"{name}, line {line}: empty {column}")
            rows.append(values)
            lines.append(line)
    except csv.Error as error:
        raise click.ClickException(f"{name}, line {reader.line_num}: {error}") from None
    return pd.DataFrame(rows, columns=list(columns), dtype=object), lines


def write_csv(out_path: Path, header: list[str], rows: Iterable[list[object]]) -> str:
    """Write a CSV to ``out_path`` ('-' is standard output); returns where it went, for the summary line."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if str(out_path) == "-":
        click.echo(buffer.getvalue(), nl=False)
        return "standard output"
    out_path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    return str(out_path)


def read_answers(path: Path, multi_label: bool = False) -> pd.DataFrame:
    """The answers table; a repeated (unit, volunteer) pair keeps its first answer, with a note on stderr.

    With ``multi_label`` the column is ``labels``: tags separated by ``;`` (as the exports write
    them), read into a list per answer; an empty cell is an answer that ticked no tag.
    """
    if multi_label:
        answers, lines = read_table(path, ("unit", "volunteer", "labels"), required=("unit", "volunteer"))
        answers["labels"] = answers["labels"].map(split_tags)
    else:
        answers, lines = read_table(path, ANSWER_COLUMNS)
    repeated = answers.duplicated(["unit", "volunteer"], keep="first").to_numpy()
    if repeated.any():
        first = lines[int(np.flatnonzero(repeated)[0])]
        click.echo(f"{path.name}: {int(repeated.sum())} repeated (unit, volunteer) answer(s) ignored, "
                   f"the first answer kept (first repeat on line {first})", err=True)
        answers = answers[~repeated].reset_index(drop=True)
    return answers


def read_gold(path: Path, multi_label: bool = False) -> pd.Series:
    """Gold labels, unit -> label (with ``multi_label``, unit -> list of tags from a ``labels`` column);
    a unit given two different answers is an error naming the line."""
    column = "labels" if multi_label else "label"
    gold, lines = read_table(path, ("unit", column), required=("unit",) if multi_label else None)
    seen: dict[str, tuple[str, int]] = {}
    for (unit, label), line in zip(gold.itertuples(index=False), lines):
        if unit in seen and seen[unit][0] != label:
            raise click.ClickException(f"{path.name}, line {line}: unit {unit!r} already has gold {column} "
                                       f"{seen[unit][0]!r} (line {seen[unit][1]})")
        seen.setdefault(unit, (label, line))
    return pd.Series({unit: split_tags(label) if multi_label else label for unit, (label, _) in seen.items()},
                     dtype=object, name=column)


def split_tags(text: str) -> list[str]:
    """The tags of a ``;``-separated cell, each stripped, without empty ones or repeats."""
    return list(dict.fromkeys(tag.strip() for tag in text.split(";") if tag.strip()))


def aggregate_answers(answers: pd.DataFrame, method: str, gold: pd.Series | None, seed: int) -> pd.DataFrame:
    """unit, label, confidence for each answered unit, in the order units first appear in ``answers``."""
    model = LABEL_METHODS[method](rng=np.random.default_rng(seed))
    if method == "majority_vote":
        model.fit(answers)
        labels, confidences = _gold_first(model.labels_, model.confidences_, gold)
    else:
        model.fit(answers, gold=gold)
        labels, confidences = model.labels_, model.confidences_
    order = pd.unique(answers["unit"].to_numpy())
    return pd.DataFrame({"unit": order, "label": labels.loc[order].to_numpy(),
                         "confidence": confidences.loc[order].to_numpy(dtype=float)})


def _gold_first(labels: pd.Series, confidences: pd.Series, gold: pd.Series | None) -> tuple[pd.Series, pd.Series]:
    """A majority's results with the gold units given their known answer, confidence 1: a majority
    learns no reliabilities, so gold only fixes its own units."""
    labels, confidences = labels.astype(object), confidences.copy()
    if gold is not None:
        known = gold[gold.index.isin(labels.index)]
        for unit, answer in known.items():  # one by one: a multi-label answer is a list, not cells to spread
            labels.at[unit] = answer
        confidences.loc[known.index] = 1.0
    return labels, confidences


def aggregate_tags(answers: pd.DataFrame, method: str, gold: pd.Series | None) -> pd.DataFrame:
    """unit, labels (``;``-separated, in the order tags first appear) and confidence for each answered unit."""
    tags = pd.unique(pd.Series([t for listed in list(answers["labels"]) + list(gold if gold is not None else [])
                                for t in listed], dtype=object))
    if method == "multilabel_majority":
        model = MultiLabelMajority().fit(answers)
        labels, confidences = _gold_first(model.labels_, model.confidences_, gold)
    else:
        model = MultiLabelDawidSkene(labels=list(tags)).fit(answers, gold)
        labels, confidences = model.labels_, model.confidences_
    rank = {tag: i for i, tag in enumerate(tags)}
    order = pd.unique(answers["unit"].to_numpy())
    return pd.DataFrame({"unit": order, "labels": [";".join(sorted(labels[u], key=rank.__getitem__)) for u in order],
                         "confidence": confidences.loc[order].to_numpy(dtype=float)})


@click.command("aggregate", help="Aggregate raw answers (CSV with header unit,volunteer,label) into one label "
                                 "per unit with its confidence, written as CSV unit,label,confidence. Labels "
                                 "and units are written exactly as they were read. With --multi-label: "
                                 "unit,volunteer,labels in, unit,labels,confidence out, tags separated by ';'.")
@click.option("--answers", "answers_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of answers with header unit,volunteer,label (other columns are ignored). A repeated "
                   "(unit, volunteer) pair keeps its first answer.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the consensus CSV (unit,label,confidence); '-' writes to standard output.")
@click.option("--method", type=click.Choice(sorted(LABEL_METHODS) + sorted(TAG_METHODS)), default=None,
              help=f"Aggregation method. The default is the one recommended for a project whose volunteers "
                   f"are not yet known (see benchmarks/RESULTS.md): {DEFAULT_LABEL_METHOD}, or "
                   f"{next(iter(TAG_METHODS))} with --multi-label, which takes only {' or '.join(TAG_METHODS)}.")
@click.option("--multi-label", is_flag=True,
              help="Answers give several tags each: a labels column with the tags separated by ';' (empty when "
                   "none was ticked), as the exports of multi-label projects write it.")
@click.option("--gold", "gold_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Optional CSV of known answers with header unit,label (unit,labels with --multi-label). Those "
                   "units keep their known answer (confidence 1) and, for methods that learn reliabilities, "
                   "inform every volunteer's.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random generator that breaks ties.")
def aggregate(answers_path: Path, out_path: Path, method: str | None, multi_label: bool, gold_path: Path | None,
              seed: int) -> None:
    methods = TAG_METHODS if multi_label else LABEL_METHODS
    method = method or (next(iter(TAG_METHODS)) if multi_label else DEFAULT_LABEL_METHOD)
    if method not in methods:
        raise click.UsageError(f"--method {method} is for {'single' if multi_label else 'multi'}-label answers; "
                               f"{'with' if multi_label else 'without'} --multi-label use one of "
                               f"{', '.join(sorted(methods))}")
    answers = read_answers(answers_path, multi_label)
    gold = read_gold(gold_path, multi_label) if gold_path is not None else None
    if multi_label:
        result = aggregate_tags(answers, method, gold)
    else:
        result = aggregate_answers(answers, method, gold, seed)
    rows = ([unit, label, f"{confidence:.6f}"] for unit, label, confidence in result.itertuples(index=False))
    where = write_csv(out_path, list(result.columns), rows)
    click.echo(f"{len(answers)} answers on {len(result)} units by {answers['volunteer'].nunique()} volunteers, "
               f"aggregated with {method}; wrote {where}", err=True)


@click.command("plan", help="Simulate consensus accuracy against answers per unit, from answers collected so far "
                            "(a pilot batch), so an owner knows before launch how many volunteers each unit "
                            "needs. Prints one row per redundancy.")
@click.option("--answers", "answers_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of pilot answers with header unit,volunteer,label; units should have at least as many "
                   "answers as the largest redundancy simulated.")
@click.option("--gold", "gold_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Optional CSV of known answers (unit,label) to score against. Without it, accuracy is "
                   "agreement with the consensus of all the pilot answers, an optimistic estimate.")
@click.option("--method", type=click.Choice(sorted(LABEL_METHODS)), default=DEFAULT_LABEL_METHOD,
              show_default=True, help="Aggregation method to simulate.")
@click.option("--max-redundancy", type=click.IntRange(1), default=7, show_default=True,
              help="Simulate 1 to this many answers per unit.")
@click.option("--repeats", type=click.IntRange(1), default=5, show_default=True,
              help="Random draws of answers per redundancy.")
@click.option("--target", type=click.FloatRange(0.0, 1.0), default=None,
              help="Accuracy wanted; the command then names the least redundancy that reaches it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulation's random generator.")
def plan(answers_path: Path, gold_path: Path | None, method: str, max_redundancy: int, repeats: int,
         target: float | None, seed: int) -> None:
    from microtasks.consensus.planner import plan_redundancy, smallest_redundancy

    answers = read_answers(answers_path)
    gold = read_gold(gold_path) if gold_path is not None else None
    result = plan_redundancy(answers, gold, range(1, max_redundancy + 1), method, repeats,
                             np.random.default_rng(seed))
    if result.empty:
        raise click.ClickException(f"{answers_path.name}: no answers to simulate")
    reference = result["reference"].iloc[0]
    click.echo(f"{method}, scored against {reference} on {int(result['units'].iloc[0])} units, "
               f"{repeats} draw(s) per redundancy")
    click.echo("redundancy,answers_per_unit,accuracy,accuracy_std")
    for row in result.itertuples(index=False):
        click.echo(f"{row.redundancy},{row.answers_per_unit:.2f},{row.accuracy:.4f},{row.accuracy_std:.4f}")
    if target is not None:
        least = smallest_redundancy(result, target)
        click.echo(f"accuracy {target:g} needs {least} answers per unit" if least is not None else
                   f"accuracy {target:g} is not reached with up to {max_redundancy} answers per unit")


MARK_COLUMNS = ("unit", "volunteer", "x", "y", "r")


def _number(text: str, column: str, name: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise click.ClickException(f"{name}, line {line}: {column} is not a number: {text.strip()!r}") from None
    if not np.isfinite(value):
        raise click.ClickException(f"{name}, line {line}: {column} is not a finite number: {text.strip()!r}")
    return value


def read_marks(path: Path) -> pd.DataFrame:
    """Marks table ``unit, volunteer, x, y, r`` (floats, NaN where empty) from a CSV with that header.

    ``r`` empty is a point; ``x``, ``y`` and ``r`` all empty is "saw the unit, marked nothing".

    Raises:
        click.ClickException: "<file>, line N: reason" for the first malformed line.
    """
    name = path.name
    table, lines = read_table(path, MARK_COLUMNS, required=("unit", "volunteer"))
    values: list[tuple[float, float, float]] = []
    for (x, y, r), line in zip(table[["x", "y", "r"]].itertuples(index=False), lines):
        if not x.strip() and not y.strip():
            if r.strip():
                raise click.ClickException(f"{name}, line {line}: r given without x and y")
            values.append((np.nan, np.nan, np.nan))
            continue
        for column, value in (("x", x), ("y", y)):
            if not value.strip():
                raise click.ClickException(f"{name}, line {line}: empty {column} (give x and y, "
                                           f"or leave x, y and r all empty for 'nothing here')")
        radius = _number(r, "r", name, line) if r.strip() else np.nan
        if radius <= 0:
            raise click.ClickException(f"{name}, line {line}: r must be positive, not {r.strip()}")
        values.append((_number(x, "x", name, line), _number(y, "y", name, line), radius))
    units, volunteers = table["unit"].tolist(), table["volunteer"].tolist()
    coords = np.array(values, dtype=float).reshape(-1, 3)
    return pd.DataFrame({"unit": pd.Series(units, dtype=object), "volunteer": pd.Series(volunteers, dtype=object),
                         "x": coords[:, 0], "y": coords[:, 1], "r": coords[:, 2]})


def read_weights(path: Path) -> pd.Series:
    """Volunteer weights (trust) from a CSV ``volunteer,weight``; a bad weight names its line."""
    table, lines = read_table(path, ("volunteer", "weight"))
    weights: dict[str, float] = {}
    for (volunteer, text), line in zip(table.itertuples(index=False), lines):
        value = _number(text, "weight", path.name, line)
        if value < 0:
            raise click.ClickException(f"{path.name}, line {line}: weight must not be negative")
        weights[volunteer] = value
    return pd.Series(weights, dtype=float, name="weight")


@click.command("aggregate-marks", help="Aggregate volunteers' marks (circles or points; CSV with header "
                                       "unit,volunteer,x,y,r) into consensus craters per unit, written as CSV "
                                       "unit,x,y,r,support,confidence. Uses CraterClustering (scale-relative "
                                       "distance, one mark per volunteer per crater); its defaults are the "
                                       "settings recommended for an unknown project (see benchmarks/RESULTS.md).")
@click.option("--marks", "marks_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of marks with header unit,volunteer,x,y,r (other columns are ignored). r empty marks a "
                   "point; x, y and r all empty records a volunteer who saw the unit and marked nothing.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the consensus CSV (unit,x,y,r,support,confidence; r empty for points); '-' "
                   "writes to standard output. Units with no consensus mark have no row.")
@click.option("--weights", "weights_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Optional CSV volunteer,weight of trust scores (>= 0) weighting each volunteer's vote; "
                   "volunteers not listed get the median weight.")
@click.option("--min-share", type=click.FloatRange(0.0, 1.0), default=DEFAULT_MIN_SHARE, show_default=True,
              help="Least (weighted) share of the unit's volunteers who must mark a crater for it to be kept.")
@click.option("--min-volunteers", type=click.IntRange(1), default=2, show_default=True,
              help="Least number of distinct volunteers who must mark a crater for it to be kept.")
@click.option("--width", type=click.FloatRange(0.0, min_open=True), default=None,
              help="Image width in pixels: marks centred outside [0, width] are dropped. Default: not checked.")
@click.option("--height", type=click.FloatRange(0.0, min_open=True), default=None,
              help="Image height in pixels: marks centred outside [0, height] are dropped. Default: not checked.")
@click.option("--point-tolerance", type=click.FloatRange(0.0, min_open=True), default=10.0, show_default=True,
              help="For point marks (no radius): two points are the same object within this many pixels.")
def aggregate_marks(marks_path: Path, out_path: Path, weights_path: Path | None, min_share: float,
                    min_volunteers: int, width: float | None, height: float | None, point_tolerance: float) -> None:
    from microtasks.consensus import CraterClustering

    marks = read_marks(marks_path)
    weights = read_weights(weights_path) if weights_path is not None else None
    model = CraterClustering(min_share=min_share, min_volunteers=min_volunteers, width=width, height=height,
                             point_tolerance=point_tolerance).fit(marks, weights)
    where = write_csv(out_path, ["unit", "x", "y", "r", "support", "confidence"], (
        [row.unit, f"{row.x:.2f}", f"{row.y:.2f}", "" if np.isnan(row.r) else f"{row.r:.2f}", int(row.support),
         f"{row.confidence:.4f}"] for row in model.craters_.itertuples(index=False)))
    click.echo(f"{int(marks['x'].notna().sum())} marks on {marks['unit'].nunique()} units by "
               f"{marks['volunteer'].nunique()} volunteers: {len(model.craters_)} consensus marks; wrote {where}",
               err=True)
