"""Standard errors of the validation scores (hiu_jax/metrics.py, hiu_jax/evaluation.py)."""
import numpy as np
import pytest

from hiu_jax import metrics


def test_standard_error_is_the_sample_std_over_root_n_ignoring_nan():
    v = np.array([1.0, 2.0, 4.0, 7.0, np.nan])
    finite = v[:4]
    expected = np.sqrt(((finite - finite.mean()) ** 2).sum() / 3) / 2.0
    assert metrics.standard_error(v) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(metrics.standard_error([3.0]))
    assert np.isnan(metrics.standard_error([np.nan, 1.0]))


def test_paired_difference_removes_the_shared_per_sample_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.gamma(2.0, 5.0, 4000)  # large spread between samples
    a = difficulty + rng.normal(0, 0.1, 4000)
    b = difficulty - 0.05 + rng.normal(0, 0.1, 4000)
    d, se, n = metrics.paired_difference(a, b)
    assert n == 4000
    assert se == pytest.approx(np.sqrt(0.02 / 4000), rel=0.05)  # var(noise_b - noise_a) = 0.02
    assert abs(d + 0.05) < 4 * se  # the true shift is -0.05
    # unpaired, the same shift would be lost in the samples' spread
    assert np.hypot(metrics.standard_error(a), metrics.standard_error(b)) > 50 * se
    a[3], b[7] = np.nan, np.nan
    assert metrics.paired_difference(a, b)[2] == 3998
    with pytest.raises(ValueError, match="one shape"):
        metrics.paired_difference(a, b[:10])


def _per_point_then_mean(errors, valid):
    return metrics.error_measures(errors, np.linspace(0, 1, 5), valid)["mean"]


def test_per_point_mean_influence_averages_to_the_statistic_and_matches_the_jackknife():
    rng = np.random.default_rng(1)
    n, p = 600, 21
    errors = rng.gamma(2.0, 2.0, (n, p)) * rng.uniform(0.5, 2.0, (n, 1))
    valid = rng.uniform(size=(n, p)) > 0.3
    valid[5] = False  # a sample with no visible point does not enter the statistic
    u = metrics.per_point_mean_influence(errors, valid)
    stat = _per_point_then_mean(errors, valid)
    assert np.isnan(u[5])
    assert np.nanmean(u) == pytest.approx(stat, rel=1e-12)  # exactly the statistic
    # the delta-method standard error agrees with the jackknife's to O(1/n)
    keep = np.flatnonzero(valid.any(1))
    loo = np.array([_per_point_then_mean(np.delete(errors, i, 0), np.delete(valid, i, 0))
                    for i in keep])
    m = len(keep)
    jackknife = np.sqrt((m - 1) / m * ((loo - loo.mean()) ** 2).sum())
    assert metrics.standard_error(u) == pytest.approx(jackknife, rel=0.02)


def test_per_point_mean_influence_with_every_point_valid_is_the_sample_mean():
    errors = np.random.default_rng(2).uniform(size=(7, 4))
    np.testing.assert_allclose(metrics.per_point_mean_influence(errors), errors.mean(1),
                               rtol=1e-12)
