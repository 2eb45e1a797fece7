import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fobtheory.rates import _slopes, fit_power_law, fit_rate, fit_slope, roundoff_estimate, truncation_window

DELTAS = np.geomspace(1e-9, 1, 37)


def synthetic(p, C, R, n_tasks=5, noise=0.05, seed=0):
    """error = C delta^p + R / delta, times log-normal noise, per task."""
    rng = np.random.default_rng(seed)
    clean = C * DELTAS**p + R / DELTAS
    return clean * np.exp(noise * rng.standard_normal((n_tasks, len(DELTAS))))


@given(st.sampled_from([0.5, 1.0, 2.0, 2 / 3, 4.0]), st.floats(0.1, 10), st.floats(1e-17, 1e-15),
       st.integers(0, 1000))
def test_recovers_known_slopes_of_noisy_power_laws(p, C, R, seed):
    fit = fit_rate(DELTAS, synthetic(p, C, R, seed=seed), max_error=np.inf, n_boot=200)
    assert fit.ok and abs(fit.slope - p) < 0.05
    assert fit.ci_low <= fit.slope <= fit.ci_high
    assert fit.constant == pytest.approx(C, rel=0.3)
    if R / DELTAS[0] > 10 * C * DELTAS[0] ** p:  # roundoff visible at the smallest delta
        assert R / 3 < fit.roundoff < 3 * R


def test_the_interval_covers_the_truth_and_narrows_with_more_tasks():
    few = fit_rate(DELTAS, synthetic(2, 1, 1e-16, n_tasks=3, noise=0.3), max_error=np.inf)
    many = fit_rate(DELTAS, synthetic(2, 1, 1e-16, n_tasks=60, noise=0.3), max_error=np.inf)
    assert many.ci_low <= 2 <= many.ci_high
    assert many.ci_high - many.ci_low < few.ci_high - few.ci_low


def test_roundoff_only_curve_has_no_window():
    """An estimator exact up to roundoff (FO-B-MAML, J = 1, quadratic f) has nothing to fit."""
    fit = fit_rate(DELTAS, synthetic(1, 0.0, 1e-16))
    assert not fit.ok and np.isnan(fit.slope) and "no truncation window" in fit.reason
    assert not fit.covers(1, 10)


def test_a_window_of_fewer_than_four_points_is_refused():
    d = np.geomspace(1e-9, 1e-3, 7)
    errors = 1e-16 / d
    errors[-3:] = [1e-6, 1e-5, 1e-4]  # only three points above the roundoff floor
    fit = fit_rate(d, errors, max_error=1.0)
    assert not fit.ok and fit.n_points == 3
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_slope([1, 2, 3], [1, 2, 3])


def test_window_is_contiguous_and_bounded_by_max_error():
    errors = synthetic(1, 1.0, 1e-16, n_tasks=1, noise=0.0)[0]
    mask = truncation_window(DELTAS, errors, max_error=1e-2)
    idx = np.flatnonzero(mask)
    assert (np.diff(idx) == 1).all()
    assert errors[mask].max() <= 1e-2 and errors[mask].min() >= 100 * roundoff_estimate(DELTAS, errors) / DELTAS[idx[0]]


def test_fit_slope_validates_its_input():
    with pytest.raises(ValueError, match="positive and finite"):
        fit_slope([1, 2, 3, 4], [1, 0, 1, 1])
    with pytest.raises(ValueError, match="one length"):
        fit_slope([1, 2, 3, 4], [1, 2, 3])
    with pytest.raises(ValueError, match="4 columns"):
        fit_power_law([1, 2, 3, 4], np.ones((2, 3)))


def test_single_curve_interval_is_from_the_regression():
    x = np.geomspace(1e-3, 1, 10)
    y = 2 * x**1.5 * np.exp(0.01 * np.random.default_rng(1).standard_normal(10))
    fit = fit_power_law(x, y)
    assert fit.ci_low < 1.5 < fit.ci_high and fit.ci_high - fit.ci_low < 0.05


def test_vectorised_bootstrap_slopes_are_least_squares_slopes(rng):
    lx = np.log10(DELTAS[:12])
    LY = 1.7 * lx + rng.standard_normal((6, 12))
    assert np.allclose(_slopes(lx, LY), [np.polyfit(lx, row, 1)[0] for row in LY])


def test_exact_zeros_count_as_the_float64_resolution():
    from fobtheory.rates import RESOLUTION, geometric_mean

    assert geometric_mean([0.0, 0.0]) == pytest.approx(RESOLUTION)
    assert geometric_mean([[0.0, 1e-4], [1e-16, 1e-4]], axis=0)[1] == pytest.approx(1e-4)
