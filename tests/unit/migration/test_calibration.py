from __future__ import annotations

import numpy as np
import pytest

from zhuge.errors import DataError
from zhuge.migration import MigrationModel, calibrate, synthetic_history

TRUE = MigrationModel(base_dirty_mbps=8.0, dirty_rate_coeff=15.0, resume_overhead_ms=40.0)


def test_recovers_fleet_coefficients_from_synthetic_history() -> None:
    history = synthetic_history(600, TRUE, seed=3, noise=0.01)
    fit = calibrate(history)
    assert fit.source == "fit"
    assert fit.model.dirty_rate_coeff == pytest.approx(15.0, rel=0.05)
    assert fit.model.resume_overhead_ms == pytest.approx(40.0, abs=3.0)
    # small next to a 1250 MB/s link, so weakly identified: only its order of magnitude
    assert 0.0 <= fit.model.base_dirty_mbps < 25.0
    assert fit.metrics["total_s"]["r2"] > 0.99
    assert fit.metrics["total_s"]["mape_pct"] < 3.0
    assert fit.metrics["migrations"] == 600


def test_recovers_per_vm_coefficients_where_identifiable() -> None:
    coeff = np.random.default_rng(1).uniform(5, 18, 50)
    history = synthetic_history(600, TRUE, vm_coeff=coeff, seed=3, noise=0.01)
    fit = calibrate(history, min_migrations=3)
    per_vm = fit.per_vm.assign(true=coeff[fit.per_vm["vm_id"].str[2:].astype(int)])
    memory = history.groupby("vm_id")["memory_gb"].first()
    # big guests dirty enough of the link to show their coefficient in their duration
    big = per_vm[per_vm["vm_id"].map(memory) >= 16]
    error = np.abs(big["dirty_rate_coeff"] / big["true"] - 1)
    assert len(big) >= 10
    assert error.median() < 0.05
    assert fit.metrics["total_s"]["mape_pct"] < fit.metrics["fleet_only"]["total_s"]["mape_pct"]


def test_no_history_gives_documented_defaults() -> None:
    fit = calibrate(None)
    assert fit.source == "defaults"
    assert fit.model == MigrationModel()
    assert fit.per_vm.empty
    assert "defaults" in fit.metrics["note"]


def test_bad_history_is_refused() -> None:
    history = synthetic_history(20, TRUE)
    with pytest.raises(DataError, match="lacks column"):
        calibrate(history.drop(columns="total_s"))
    with pytest.raises(DataError, match="memory_gb is missing, negative or zero"):
        calibrate(history.assign(memory_gb=-1.0))
