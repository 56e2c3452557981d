"""Confidence intervals by the percentile bootstrap, seeded so reports are reproducible."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Interval = tuple[float, float]


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The percentile-bootstrap interval of ``statistic`` over ``values`` (resampled with replacement).

    An empty sample gives (nan, nan); a single value gives a zero-width interval.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    stats = np.apply_along_axis(statistic, 1, data[picks]) if statistic is not np.mean else data[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return (float(low), float(high))


def mean_ci(values: Sequence[float], **kwargs: float) -> dict[str, float | list[float] | int]:
    """``{"mean", "ci": [low, high], "n"}`` for a list of per-item scores."""
    data = [float(v) for v in values]
    low, high = bootstrap_ci(data, **kwargs)  # type: ignore[arg-type]
    return {"mean": float(np.mean(data)) if data else float("nan"), "ci": [low, high], "n": len(data)}
