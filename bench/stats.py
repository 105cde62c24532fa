"""Summaries over seeds: t-distribution confidence intervals, final return and area under the curve."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def student_t_two_sided(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with integer `df` degrees of freedom, in closed form
    (Abramowitz & Stegun 26.7.3–4, θ = atan(t/√df)):

        df odd:  (2/π)·[θ + sinθ·cosθ·(1 + 2/3·cos²θ + 2·4/(3·5)·cos⁴θ + … up to cos^(df−3)θ)]
        df even: sinθ·(1 + 1/2·cos²θ + 1·3/(2·4)·cos⁴θ + … up to cos^(df−2)θ)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        series, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):  # (df − 1)/2 terms: 1, 2/3·cos², …
            series += term
            term *= (2 * k) / (2 * k + 1) * cos2
        inner = theta + (math.sin(theta) * math.cos(theta) * series if df > 1 else 0.0)
        return 2.0 / math.pi * inner
    series, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):  # df/2 terms: 1, 1/2·cos², …
        series += term
        term *= (2 * k - 1) / (2 * k) * cos2
    return math.sin(theta) * series


def student_t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| ≤ t) = `confidence` (e.g. 0.95 → the 97.5 % quantile), by bisection."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    low, high = 0.0, 1.0
    while student_t_two_sided(high, df) < confidence:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if student_t_two_sided(mid, df) < confidence:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the t confidence interval mean ± t_{(1+c)/2, n−1}·s/√n, with s the
    sample standard deviation (n − 1 denominator). NaN values (e.g. a run that finished no episode)
    are left out; half-width is NaN with fewer than 2 values, the mean NaN with none."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan")
    mean = float(data.mean())
    if data.size < 2:
        return mean, float("nan")
    half = student_t_quantile(confidence, data.size - 1) * float(data.std(ddof=1)) / math.sqrt(data.size)
    return mean, half


def step_curve(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The curve's last logged value at or before each grid point (NaN before its first point)."""
    index = np.searchsorted(steps, grid, side="right") - 1
    out = np.full(grid.shape, np.nan)
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def final_value(steps: np.ndarray, values: np.ndarray, max_step: float) -> float:
    """The value at the last logged point with step ≤ max_step (NaN if there is none)."""
    return float(step_curve(steps, values, np.array([float(max_step)]))[0])


def area_under_curve(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> float:
    """Mean of the step curve over `grid` (evenly spaced env steps): the area under the curve
    divided by the steps it spans. Grid points before the run's first logged value are left out."""
    curve = step_curve(steps, values, grid)
    return float(np.nanmean(curve)) if np.isfinite(curve).any() else float("nan")
