from __future__ import annotations

import numpy as np
import pytest

from zhuge.errors import InvalidRequest
from zhuge.migration import MigrationModel, simulate_precopy


def test_hand_computed_two_round_example() -> None:
    # 8 Gbit/s = 1000 MB/s; 1 GB guest at 50 % load dirties 0 + 200 * 0.5 * 1 = 100 MB/s: r = 0.1
    model = MigrationModel(bandwidth_gbps=8.0, base_dirty_mbps=0.0, dirty_rate_coeff=200.0)
    # round 0 sends 1000 MB (1 s) while 100 MB get dirty; round 1 sends those (0.1 s) while
    # 10 MB get dirty; 10 MB <= 50 MB threshold: pause and send 10 MB (10 ms) + 30 ms resume
    sim = simulate_precopy(1.0, 50.0, model)
    assert sim["precopy_mb"] == pytest.approx([1000.0, 100.0])
    assert sim["stop_copy_mb"] == pytest.approx(10.0)
    assert sim["stop"] == "threshold"
    exact = model.predict(1.0, 50.0, expected=False)
    assert exact.rounds == 2
    assert exact.downtime_ms == pytest.approx(40.0)
    assert exact.total_s == pytest.approx(1.11 + 0.03)
    assert bool(exact.converged)
    # expected stop-and-copy set: threshold * (1 - r) / ln(1/r) = 50 * 0.9 / ln 10 MB
    expected = model.predict(1.0, 50.0)
    assert expected.downtime_ms == pytest.approx(50 * 0.9 / np.log(10) + 30.0)


def test_non_convergent_forces_full_stop_and_copy() -> None:
    model = MigrationModel()  # 10 Gbit/s = 1250 MB/s
    # 128 GB at 100 %: 5 + 10 * 128 = 1285 MB/s >= 1250 MB/s
    est = model.predict(128.0, 100.0)
    assert not bool(est.converged)
    assert est.downtime_ms == pytest.approx(128_000 / 1250 * 1000 + 30.0)
    assert est.total_s == pytest.approx(2 * 128_000 / 1250 + 0.03)
    assert simulate_precopy(128.0, 100.0, model)["stop"] == "non-convergent"


def test_round_limit_stops_precopy() -> None:
    model = MigrationModel(max_rounds=3)
    sim = simulate_precopy(64.0, 100.0, model)  # r = 645 / 1250: needs more than 3 rounds
    assert sim["stop"] == "max_rounds"
    est = model.predict(64.0, 100.0, expected=False)
    assert est.rounds == 3 and not bool(est.converged)
    assert est.downtime_ms == pytest.approx(sim["downtime_ms"])


@pytest.mark.parametrize("memory_gb", [0.25, 2.0, 16.0, 64.0, 120.0, 256.0])
def test_downtime_increases_with_load(memory_gb: float) -> None:
    load = np.linspace(0, 100, 1001)
    downtime = MigrationModel().predict(memory_gb, load).downtime_ms
    assert np.all(np.diff(downtime) >= -1e-9)
    assert downtime[-1] > downtime[0]


def test_vectorised_matches_round_by_round_simulation() -> None:
    rng = np.random.default_rng(7)
    model = MigrationModel(max_rounds=12)
    memory = rng.uniform(0.05, 200, 300)
    load = rng.uniform(0, 100, 300)
    est = model.predict(memory, load, expected=False)
    for i in range(300):
        sim = simulate_precopy(memory[i], load[i], model)
        assert est.downtime_ms[i] == pytest.approx(sim["downtime_ms"])
        assert est.total_s[i] == pytest.approx(sim["total_s"])


def test_expected_downtime_averages_the_exact_sawtooth() -> None:
    # a fixed dirty rate (r = 0.1) and memory log-uniform over three factors of 1/r: the
    # round boundary falls everywhere, and the average exact downtime is the expected one
    model = MigrationModel(base_dirty_mbps=125.0, dirty_rate_coeff=0.0, resume_overhead_ms=0.0)
    memory = np.exp(np.linspace(np.log(1.0), np.log(1000.0), 30001))
    exact = model.predict(memory, 50.0, expected=False).downtime_ms.mean()
    expected = model.predict(memory, 50.0).downtime_ms
    assert np.ptp(expected) == pytest.approx(0.0, abs=1e-9)
    assert expected.mean() == pytest.approx(exact, rel=0.01)


def test_per_vm_coefficient_overrides_default_and_nan_keeps_it() -> None:
    model = MigrationModel()
    rate = model.dirty_rate_mbps([10.0, 10.0], [50.0, 50.0], coeff=[20.0, np.nan])
    assert rate == pytest.approx([5 + 20 * 0.5 * 10, 5 + 10 * 0.5 * 10])


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="bandwidth_gbps"):
        MigrationModel(bandwidth_gbps=0)
    with pytest.raises(InvalidRequest, match="max_rounds"):
        MigrationModel(max_rounds=0)
