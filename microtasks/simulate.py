r"""A volunteer simulator for marking tasks: from a catalogue of true craters, the circles a crowd would draw.

There is no public multi-volunteer crater-marking data set, so consensus methods are
measured on crowds simulated from expert catalogues. The noise model
(:class:`CrowdModel`) follows what Moon Mappers measured (Robbins et al. 2014, *The
variability of crater identification among expert and community crater analysts*,
Icarus 234, 109-131, doi:10.1016/j.icarus.2014.02.022): expert counts differ from one
another by 20-30%, small craters are missed far more often than large ones, and marks of
one crater agree to about 0.10 of its diameter in position and 0.25 in diameter.

* Each volunteer of the crowd is *careful*, *careless* or a *spammer* (:func:`make_crowd`).
* A careful volunteer finds a crater of radius :math:`r` with probability
  :math:`p(r) = s \cdot p_\max / (1 + (r_{50} / r)^k)`, :math:`s` their own skill.
* A found crater is drawn with its centre moved by a normal error of standard deviation
  :math:`\sigma_c = a_c + b_c r` per axis and its radius by one of :math:`\sigma_r = a_r + b_r r`.
* Each volunteer adds a Poisson number of false circles; a spammer draws only random circles.
* A careless volunteer finds fewer craters, with larger errors and more false circles.
* Centres stay on the image (the marking tool clamps clicks); a volunteer who draws
  nothing on a unit gives one row with ``x``, ``y`` and ``r`` NaN ("nothing here").

Everything random comes from the injected :class:`numpy.random.Generator`.

Example:
    >>> rng = np.random.default_rng(0)
    >>> truth = pd.DataFrame({"unit": ["t1"], "x": [50.0], "y": [50.0], "r": [12.0]})
    >>> crowd = make_crowd(5, rng, CrowdModel(careless_share=0.0, spammer_share=0.0))
    >>> marks = simulate_marks(truth, crowd, rng, width=100, height=100,
    ...                        model=CrowdModel(false_marks=0.0, careless_share=0.0, spammer_share=0.0))
    >>> sorted(marks.columns), marks["volunteer"].nunique()
    (['r', 'unit', 'volunteer', 'x', 'y'], 5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MARK_COLUMNS = ["unit", "volunteer", "x", "y", "r"]


@dataclass(frozen=True)
class CrowdModel:
    """Parameters of the simulated crowd; the defaults are plausible for untrained volunteers."""

    #: Chance that a careful volunteer of skill 1 marks a large, clear crater. Expert counts
    #: differ by 20-30% (Robbins et al. 2014), so one careful marker finds about 85%.
    detection_max: float = 0.85
    #: Radius (pixels) at which the chance of marking falls to half of ``detection_max``.
    #: The expert catalogue stops at 7-8 px across, where volunteers find about one crater in three.
    detection_radius: float = 4.0
    #: Steepness :math:`k` of the detection curve in radius.
    detection_slope: float = 3.0
    #: Spread of volunteers' skill: skill is lognormal with this sigma (capped so p <= 0.98).
    skill_sigma: float = 0.15
    #: Centre error per axis (standard deviation): this many pixels (click precision)...
    centre_error_px: float = 0.6
    #: ...plus this share of the radius (Moon Mappers clusters centres within 0.10 of the diameter).
    centre_error_fraction: float = 0.06
    #: Radius error (standard deviation): this many pixels...
    radius_error_px: float = 0.4
    #: ...plus this share of the radius (Moon Mappers clusters diameters within 0.25).
    radius_error_fraction: float = 0.07
    #: Mean number of false circles per volunteer per unit (Poisson).
    false_marks: float = 1.0
    #: False and spam circles have radii log-uniform between these two values (pixels).
    false_radius: tuple[float, float] = (3.0, 20.0)
    #: Share of the crowd that is careless.
    careless_share: float = 0.2
    #: A careless volunteer's chance of marking is multiplied by this...
    careless_detection: float = 0.5
    #: ...their centre and radius errors by this...
    careless_error: float = 2.5
    #: ...and their number of false circles by this.
    careless_false: float = 3.0
    #: Share of the crowd that spams random circles.
    spammer_share: float = 0.05
    #: Mean number of random circles a spammer draws per unit (Poisson).
    spam_marks: float = 40.0
    #: Smallest radius a volunteer can draw (pixels).
    min_radius: float = 1.0


def make_crowd(n: int, rng: np.random.Generator, model: CrowdModel | None = None) -> pd.DataFrame:
    """A crowd of ``n`` volunteers: columns ``volunteer`` (``v0``, ``v1``, ...), ``kind`` and ``skill``.

    ``kind`` is ``careful``, ``careless`` or ``spammer``, drawn with the model's shares.
    """
    model = model or CrowdModel()
    if n < 0:
        raise ValueError("n must not be negative")
    careful = max(0.0, 1.0 - model.careless_share - model.spammer_share)
    kinds = rng.choice(np.array(["careful", "careless", "spammer"]), size=n,
                       p=np.array([careful, model.careless_share, model.spammer_share]) /
                       (careful + model.careless_share + model.spammer_share))
    skill = np.exp(rng.normal(0.0, model.skill_sigma, size=n))
    return pd.DataFrame({"volunteer": [f"v{i}" for i in range(n)], "kind": kinds, "skill": skill})


def detection_probability(r: np.ndarray, model: CrowdModel | None = None) -> np.ndarray:
    """Chance that a careful volunteer of skill 1 marks a crater of radius ``r`` (pixels).

    Example:
        >>> detection_probability(np.array([4.0]), CrowdModel()).round(3).tolist()
        [0.425]
    """
    model = model or CrowdModel()
    r = np.maximum(np.asarray(r, dtype=float), 1e-9)
    return np.asarray(model.detection_max / (1.0 + (model.detection_radius / r) ** model.detection_slope))


def _random_circles(n: int, rng: np.random.Generator, width: float, height: float,
                    radius: tuple[float, float]) -> np.ndarray:
    lo, hi = np.log(radius[0]), np.log(radius[1])
    return np.column_stack([rng.uniform(0, width, n), rng.uniform(0, height, n), np.exp(rng.uniform(lo, hi, n))])


def simulate_marks(truth: pd.DataFrame, crowd: pd.DataFrame, rng: np.random.Generator, width: float,
                   height: float, model: CrowdModel | None = None, units: Sequence[Any] | None = None,
                   volunteers_per_unit: int | None = None) -> pd.DataFrame:
    """The marks a crowd draws on each unit, as the long table the crater aggregators read.

    Args:
        truth: the true craters, columns ``unit``, ``x``, ``y``, ``r`` (unit pixels).
        crowd: volunteers, as made by :func:`make_crowd`.
        rng: the source of every random number.
        width: unit width in pixels (centres are clamped to ``[0, width]``).
        height: unit height in pixels.
        model: the noise model; :class:`CrowdModel` defaults when None.
        units: every unit to simulate, with or without craters; default the units of ``truth``.
        volunteers_per_unit: how many volunteers of the crowd see each unit (drawn without
            replacement per unit); default all of them.

    Returns:
        Columns ``unit``, ``volunteer``, ``x``, ``y``, ``r``; one NaN row for a volunteer who
        drew nothing on a unit.
    """
    model = model or CrowdModel()
    units = list(pd.unique(truth["unit"])) if units is None else list(units)
    n_crowd = len(crowd)
    per_unit = n_crowd if volunteers_per_unit is None else volunteers_per_unit
    if per_unit > n_crowd:
        raise ValueError(f"volunteers_per_unit ({per_unit}) exceeds the crowd ({n_crowd})")
    names = crowd["volunteer"].to_numpy()
    kinds = crowd["kind"].to_numpy()
    skills = crowd["skill"].to_numpy(float)
    by_unit = {u: g for u, g in truth.groupby("unit", sort=False)}
    empty = np.zeros((0, 3))
    frames = []
    for unit in units:
        craters = by_unit[unit][["x", "y", "r"]].to_numpy(float) if unit in by_unit else empty
        chosen = rng.permutation(n_crowd)[:per_unit] if per_unit < n_crowd else np.arange(n_crowd)
        for v in chosen:
            kind = kinds[v]
            if kind == "spammer":
                drawn = _random_circles(int(rng.poisson(model.spam_marks)), rng, width, height,
                                        (model.false_radius[0], max(model.false_radius[1], 30.0)))
            else:
                careless = kind == "careless"
                p = np.minimum(detection_probability(craters[:, 2], model) * skills[v] *
                               (model.careless_detection if careless else 1.0), 0.98)
                found = craters[rng.random(len(craters)) < p]
                factor = model.careless_error if careless else 1.0
                centre_sd = factor * (model.centre_error_px + model.centre_error_fraction * found[:, 2])
                radius_sd = factor * (model.radius_error_px + model.radius_error_fraction * found[:, 2])
                found = found + np.column_stack([rng.normal(0, 1, (len(found), 2)) * centre_sd[:, None],
                                                 rng.normal(0, 1, len(found)) * radius_sd])
                false = _random_circles(
                    int(rng.poisson(model.false_marks * (model.careless_false if careless else 1.0))), rng,
                    width, height, model.false_radius)
                drawn = np.vstack([found, false])
            drawn[:, 0] = np.clip(drawn[:, 0], 0, width)
            drawn[:, 1] = np.clip(drawn[:, 1], 0, height)
            drawn[:, 2] = np.maximum(drawn[:, 2], model.min_radius)
            if len(drawn) == 0:
                drawn = np.full((1, 3), np.nan)
            else:
                drawn = drawn[rng.permutation(len(drawn))]  # volunteers mark in no particular order
            frame = pd.DataFrame(drawn, columns=["x", "y", "r"])
            frame.insert(0, "volunteer", names[v])
            frame.insert(0, "unit", [unit] * len(frame))
            frames.append(frame)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float if c in "xyr" else object) for c in MARK_COLUMNS})
    return pd.concat(frames, ignore_index=True)[MARK_COLUMNS]
