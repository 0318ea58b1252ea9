"""BD-rate against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from cwic.evaluation.bdrate import bd_rate, bd_rate_curves, to_db


def test_constant_rate_ratio_over_a_partial_overlap():
    # anchor: log10 R = Q / 10 on Q in [30, 36]; test: 10^-0.1 times the rate on Q in [32, 38].
    # common range [32, 36], mean log10 difference -0.1 -> BD-rate = 10^-0.1 - 1 = -20.567 %
    qa, qt = [30, 32, 34, 36], [32, 34, 36, 38]
    ra = [10 ** (q / 10) for q in qa]
    rt = [10 ** (q / 10 - 0.1) for q in qt]
    assert bd_rate(ra, qa, rt, qt) == pytest.approx((10**-0.1 - 1) * 100, abs=1e-6)
    assert bd_rate(rt, qt, ra, qa) == pytest.approx((10**0.1 - 1) * 100, abs=1e-6)


def test_linearly_growing_difference():
    # log10 difference -0.01 (Q - 32), averaged over [32, 36]: -0.02 -> 10^-0.02 - 1 = -4.5007 %
    qa, qt = [30, 32, 34, 36], [32, 34, 36, 38]
    ra = [10 ** (q / 10) for q in qa]
    rt = [10 ** (q / 10 - 0.01 * (q - 32)) for q in qt]
    assert bd_rate(ra, qa, rt, qt) == pytest.approx((10**-0.02 - 1) * 100, abs=1e-6)


def test_identical_no_overlap_and_missing_points():
    r, q = [0.1, 0.2, 0.4, 0.8], [25.0, 28.0, 31.0, 34.0]
    assert bd_rate(r, q, r, q) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(r, q, [1, 2], [40.0, 41.0]) is None
    assert bd_rate(r, q, [0.1, 0.2], [None, 30.0]) is None  # one usable point is not a curve
    # two points: a straight line (degree 1); half the rate everywhere
    assert bd_rate(r[:2], q[:2], [x / 2 for x in r[:2]], q[:2]) == pytest.approx(-50.0)


def test_ssim_metrics_are_fitted_in_db():
    anchor = {"bpp": [0.1, 0.2, 0.4, 0.8], "ssim-rgb": [0.8, 0.9, 0.95, 0.975]}
    test = {"bpp": [b / 2 for b in anchor["bpp"]], "ssim-rgb": anchor["ssim-rgb"]}
    assert bd_rate_curves(anchor, test, "ssim-rgb") == pytest.approx(-50.0)
    assert to_db([0.9])[0] == pytest.approx(10.0) and math.isfinite(to_db([1.0])[0])
