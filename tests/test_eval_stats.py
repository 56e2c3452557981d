import math

import numpy as np

from fusion_of_n.eval.stats import bootstrap_ci, mean_ci


def test_bootstrap_interval_contains_the_mean_and_is_reproducible() -> None:
    values = [1, 0, 1, 1, 0, 1, 0.5, 1, 0, 1]
    low, high = bootstrap_ci(values, seed=3)
    assert low < np.mean(values) < high
    assert (low, high) == bootstrap_ci(values, seed=3)
    assert 0 <= low and high <= 1


def test_interval_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 2, 20).tolist()
    large = rng.integers(0, 2, 2000).tolist()
    assert np.diff(bootstrap_ci(large)) < np.diff(bootstrap_ci(small))


def test_degenerate_samples() -> None:
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)


def test_custom_statistic_and_mean_ci_shape() -> None:
    low, high = bootstrap_ci([1, 2, 3, 100], statistic=np.median, seed=1)
    assert low >= 1 and high <= 100
    summary = mean_ci([1, 0, 1, 1])
    assert summary["mean"] == 0.75 and summary["n"] == 4 and len(summary["ci"]) == 2
