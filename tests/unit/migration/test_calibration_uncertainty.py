"""The calibration's uncertainty report on broken covariances: a near-singular fit can give a
covariance with a negative, zero or non-finite variance (which BLAS kernel rounds which way
depends on the CPU). Such a parameter must come out unidentified with an infinite standard
error, the correlation finite, and no floating-point warning raised on any machine."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from zhuge.migration import MigrationModel
from zhuge.migration.calibration.fitting import _PerVmFit
from zhuge.migration.calibration.uncertainty import (
    _covariance,
    _parameter_report,
    _per_vm_report,
)

FITTED = MigrationModel(base_dirty_mbps=20.0, dirty_rate_coeff=25.0, resume_overhead_ms=30.0)
HEALTHY = np.diag([4.0, 1.0, 0.25])  # standard errors 2, 1, 0.5: all identified


@contextmanager
def no_warnings() -> Iterator[None]:
    # the suite turns warnings into errors already; this holds whatever the configuration
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_a_healthy_covariance_identifies_every_parameter() -> None:
    with no_warnings():
        report, correlation, messages = _parameter_report(FITTED, HEALTHY, [], True)
    assert all(p["identified"] for p in report.values())
    assert report["base_dirty_mbps"]["std_error"] == pytest.approx(math.hypot(2.0, 0.05 * 20))
    assert correlation == 0.0 and messages == []


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(np.diag([-1e-5, 2.7, -8e-7]), id="negative-variances"),  # seen in the wild
        pytest.param(np.diag([-1e-5, 1.0, 0.25]) + np.eye(3)[[1, 0, 2]] * 0.1, id="negative-one"),
        pytest.param(np.zeros((3, 3)), id="singular-zero"),
        pytest.param(np.diag([np.nan, 1.0, 0.25]), id="nan"),
        pytest.param(np.diag([np.inf, 1.0, 0.25]), id="inf"),
    ],
)
def test_a_broken_variance_reports_its_parameter_unidentified(broken: np.ndarray) -> None:
    with no_warnings():
        report, correlation, messages = _parameter_report(FITTED, broken, [], True)
    base = report["base_dirty_mbps"]
    assert base["identified"] is False
    assert base["std_error"] == math.inf
    assert base["ci95"] == [0.0, math.inf]
    assert math.isfinite(correlation) and -1.0 <= correlation <= 1.0
    assert any(m.startswith("base_dirty_mbps is not identified") for m in messages)
    # the parameters whose own variance is fine are judged on it, as before
    if broken[1, 1] > 0:
        assert report["dirty_rate_coeff"]["identified"] is True


def test_correlation_is_clipped_and_symmetrised() -> None:
    # rounding can put |cov01| a hair above sqrt(cov00 cov11), or make cov asymmetric
    cov = np.array([[1.0, -1.0 - 1e-12, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.25]])
    with no_warnings():
        _, correlation, _ = _parameter_report(FITTED, cov, [], True)
    assert correlation == -1.0


def _per_vm_fit(theta: np.ndarray, own: list[str]) -> tuple[_PerVmFit, pd.DataFrame]:
    history = pd.DataFrame({"vm_id": [vm for vm in own for _ in range(3)]})
    slot = pd.Index(own).get_indexer(history["vm_id"])
    return _PerVmFit(SimpleNamespace(x=theta), pd.Index(own), slot), history


def test_a_vm_whose_variance_is_broken_is_not_identified() -> None:
    theta = np.array([20.0, 25.0, 30.0, 0.1, -0.1, 0.0])
    # var(log c_vm) = var(c)/c^2 + var(u) + 2 cov(c, u)/c: 0.0016 + 1e-4; 0.0016 - 0.01; NaN
    cov = np.diag([4.0, 1.0, 0.25, 1e-4, -1e-2, np.nan])
    per_vm_fit, history = _per_vm_fit(theta, ["good", "negative", "nan"])
    with no_warnings():
        report = _per_vm_report(per_vm_fit, history, cov, FITTED).set_index("vm_id")
    assert report.at["good", "identified"]
    assert 0 < report.at["good", "std_error"] < math.inf
    for vm in ("negative", "nan"):
        assert not report.at[vm, "identified"]
        assert report.at[vm, "std_error"] == math.inf


def test_a_zero_fleet_coefficient_with_a_broken_variance_gives_no_nan() -> None:
    # the coefficient's lower bound is 0: 0 x inf must not become NaN (nor warn)
    per_vm_fit, history = _per_vm_fit(np.array([20.0, 0.0, 30.0, 0.0]), ["idle"])
    with no_warnings():
        report = _per_vm_report(per_vm_fit, history, np.diag([4.0, -1.0, 0.25, 0.1]), FITTED)
    assert report["std_error"].tolist() == [math.inf]
    assert report["identified"].tolist() == [False]


def _fit(jac: np.ndarray, cost: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(jac=jac, cost=cost)


def test_covariance_matches_the_inverse_where_that_is_well_conditioned() -> None:
    jac = np.random.default_rng(0).normal(size=(50, 3))
    expected = 2 * 1.0 / (50 - 3) * np.linalg.inv(jac.T @ jac)
    np.testing.assert_allclose(_covariance(_fit(jac)), expected, rtol=1e-10)


def test_covariance_of_a_badly_scaled_jacobian_has_positive_variances() -> None:
    """The shape of the per-VM fit that failed: columns ~10^4 apart in size, so ``J^T J`` has
    a condition number past 1/eps; its pseudo-inverse had negative variances."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(400, 4))
    jac = base * np.array([1e-4, 1.0, 1e2, 1e4])
    jac[:, 1] = jac[:, 0] * 1e4 + 1e-6 * rng.normal(size=400)  # nearly collinear with column 0
    with no_warnings():
        cov = _covariance(_fit(jac))
    assert np.isfinite(cov).all()
    np.testing.assert_array_equal(cov, cov.T)
    assert (np.diag(cov) > 0).all()
    assert np.linalg.eigvalsh(cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))).min() > -1e-9


def test_covariance_of_a_parameter_nothing_depends_on_is_infinite() -> None:
    jac = np.random.default_rng(2).normal(size=(30, 3))
    jac[:, 2] = 0.0
    with no_warnings():
        cov = _covariance(_fit(jac))
        report, correlation, _ = _parameter_report(FITTED, cov, [], True)
    assert cov[2, 2] == math.inf and np.isfinite(cov[:2, :2]).all()
    assert report["resume_overhead_ms"]["identified"] is False
    assert math.isfinite(correlation)
