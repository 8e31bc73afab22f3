"""Incremental consensus (issue 4): time per arriving answer, and accuracy against a full refit.

Synthetic crowd (seeded): 40,000 units, 1,000 volunteers of varied skill, 4 classes, 5
answers per unit (200,000 answers). The label model is fitted on the first 80% of the
units; then the answers of the other 20% arrive one at a time, and after each one its
unit's posterior is recomputed from the fitted reliabilities, as the consensus job does.
Printed: the time per arriving answer, and the accuracy on the late units of the
incremental results, of a full refit on all answers, and of majority vote.

    python benchmarks/incremental.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microtasks.consensus import DEFAULT_LABEL_METHOD, LABEL_METHODS, MajorityVote  # noqa: E402
from microtasks.consensus.incremental import ReliabilityModel  # noqa: E402


def crowd(n_units: int, n_volunteers: int, per_unit: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    truth = rng.integers(0, 4, n_units)
    skill = rng.uniform(0.3, 0.95, n_volunteers)
    units = np.repeat(np.arange(n_units), per_unit)
    volunteers = np.concatenate([rng.choice(n_volunteers, per_unit, replace=False) for _ in range(n_units)])
    right = rng.random(len(units)) < skill[volunteers]
    wrong = (truth[units] + rng.integers(1, 4, len(units))) % 4
    labels = np.where(right, truth[units], wrong)
    return pd.DataFrame({"unit": units, "volunteer": volunteers, "label": labels}), truth


def main() -> None:
    rng = np.random.default_rng(11)
    answers, truth = crowd(40_000, 1_000, 5, rng)
    cut = 32_000
    early, late = answers[answers.unit < cut], answers[answers.unit >= cut]
    method = LABEL_METHODS[DEFAULT_LABEL_METHOD]
    start = time.perf_counter()
    fitted = method().fit(early)
    fit_seconds = time.perf_counter() - start
    model = ReliabilityModel.from_fitted(fitted, early.groupby("volunteer").size())

    seen: dict[int, list[tuple[int, int]]] = {}
    decided: dict[int, int] = {}
    start = time.perf_counter()
    for unit, volunteer, label in late.itertuples(index=False):
        seen.setdefault(unit, []).append((volunteer, label))
        decided[unit] = model.labels[int(np.argmax(model.posterior(seen[unit])))]
    per_answer_ms = (time.perf_counter() - start) / len(late) * 1000

    start = time.perf_counter()
    refit = method().fit(answers).labels_
    refit_seconds = time.perf_counter() - start
    majority = MajorityVote(np.random.default_rng(0)).fit_predict(late)
    units = np.array(sorted(decided))
    accuracy = {
        "incremental (fitted on the first 80%)": np.mean([decided[u] == truth[u] for u in units]),
        f"full refit ({DEFAULT_LABEL_METHOD}, all answers)": np.mean(refit.loc[units].to_numpy() == truth[units]),
        "majority vote": np.mean(majority.loc[units].to_numpy() == truth[units]),
    }
    print(f"\n## Incremental consensus: {len(answers):,} answers, {len(late):,} arriving after the fit\n")
    print("| measure | value |\n|---|---|")
    print(f"| fit on the first 80% ({len(early):,} answers), s | {fit_seconds:.2f} |")
    print(f"| full refit ({len(answers):,} answers), s | {refit_seconds:.2f} |")
    print(f"| incremental update per arriving answer, ms | {per_answer_ms:.3f} |")
    for name, value in accuracy.items():
        print(f"| accuracy on the late units, {name} | {value:.4f} |")
    gap = abs(accuracy["incremental (fitted on the first 80%)"] -
              accuracy[f"full refit ({DEFAULT_LABEL_METHOD}, all answers)"])
    print(f"| incremental vs refit, percentage points | {100 * gap:.2f} |")


if __name__ == "__main__":
    main()
