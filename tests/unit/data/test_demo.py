"""The synthetic fleet: deterministic, chunked, messy on purpose, and found out by cleaning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zhuge.data import (
    CleaningRules,
    clean_fleet,
    fleet_profiles,
    generate_fleet,
    generate_vms,
    iter_generate_fleet,
    iter_series_chunks,
    read_telemetry,
    write_fleet,
)
from zhuge.data.demo import expected_load


@pytest.fixture(scope="module")
def fleet():
    telemetry, vms = generate_fleet(600, 10, "1h", seed=7)
    return telemetry, vms, fleet_profiles(600, 10, "1h", seed=7)


def test_same_seed_same_fleet_whatever_the_chunk_size():
    whole = pd.concat(iter_generate_fleet(2500, 2, "1h", seed=3, vms_per_chunk=5000))
    chunked = pd.concat(iter_generate_fleet(2500, 2, "1h", seed=3, vms_per_chunk=1000))
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), chunked.reset_index(drop=True))
    other = next(iter_generate_fleet(1000, 2, "1h", seed=4))
    assert not np.array_equal(other["value"].to_numpy(), whole["value"].to_numpy()[: len(other)])


def test_vm_table_places_vms_on_hosts_and_hosts_in_clusters():
    vms = generate_vms(3000, seed=1)
    assert list(vms.columns) == ["vm_id", "host_id", "cluster_id", "memory_gb", "vcpus"]
    per_host = vms.groupby("host_id").size()
    assert per_host.iloc[:-1].between(8, 16).all()  # the last host takes the remainder
    assert (vms.groupby("host_id")["cluster_id"].nunique() == 1).all()
    assert vms["cluster_id"].nunique() > 1
    assert set(vms["vcpus"]) <= {1, 2, 4, 8, 16}


def test_fleet_is_messy(fleet):
    telemetry, _, truth = fleet
    assert (telemetry["value"] > 100).any()
    assert telemetry.duplicated().sum() > 0
    assert (telemetry["timestamp"].dt.minute != 0).any()  # off-grid VMs
    assert telemetry.groupby("series_id", sort=False).ngroups == 600
    assert truth["kind"].value_counts().to_dict().keys() >= {"busy", "idle"}
    assert truth["too_short"].sum() > 0 and truth["gaps"].sum() > 0
    assert truth["level_shift_at"].notna().sum() > 10


def test_cleaning_finds_what_was_injected(fleet):
    telemetry, _, truth = fleet
    prepared = clean_fleet(telemetry, CleaningRules(freq="1h"))
    report = prepared.report.merge(
        truth, left_on="series_id", right_on="vm_id", suffixes=("", "_true")
    )
    assert (report["too_short"] == report["too_short_true"]).all()
    assert (report["stops_early"] == report["stops_early_true"]).all()
    assert (report["flat"] == (report["kind"] == "flat")).all()
    assert report["rows_dropped_duplicates"].sum() == telemetry.duplicated().sum()
    found = report["level_shift_at"].notna()
    injected = report["level_shift_at_true"].notna()
    assert not (found & ~injected).any(), "a level shift was reported where none was injected"
    # shifts under the 10-point floor are not reported by design
    big = injected & (report["level_shift_size_true"].abs() >= 10)
    assert (found & big).sum() >= 0.8 * big.sum()
    error = (report["level_shift_at"] - report["level_shift_at_true"])[found].abs()
    assert error.median() <= pd.Timedelta("3h")
    # every long gap cut out (12+ steps) is left empty, never interpolated
    assert report["long_gaps"].sum() >= 1


def test_write_fleet_streams_back_by_series(tmp_path):
    files = write_fleet(tmp_path / "fleet", 1500, 1, "1h", seed=2, vms_per_chunk=1000)
    assert files.series == 1500
    vms = pd.read_parquet(files.vms)
    assert len(vms) == 1500
    whole = read_telemetry(files.telemetry)
    assert len(whole.frame) == files.rows
    expected = generate_fleet(1500, 1, "1h", seed=2)[0]
    assert whole.frame["value"].to_numpy() == pytest.approx(expected["value"].to_numpy())
    chunks = list(iter_series_chunks(files.telemetry, series_per_chunk=400, batch_rows=5000))
    ids = [c.frame["series_id"].astype(str).unique() for c in chunks]
    assert sum(len(i) for i in ids) == len(set(np.concatenate(ids))) == 1500


def test_expected_load_is_what_the_samples_scatter_around(fleet):
    telemetry, _, profiles = fleet
    step = ((telemetry["timestamp"] - pd.Timestamp("2024-01-01")) // pd.Timedelta("1h")).to_numpy()
    row = profiles.index[profiles["vm_id"].searchsorted(telemetry["series_id"].to_numpy())]
    expected = expected_load(profiles, np.arange(10 * 24), "1h")[row, step]
    residual = telemetry["value"].to_numpy() - expected
    kind = profiles["kind"].to_numpy()[row]
    busy = kind == "busy"
    noise = profiles["noise_sd"].to_numpy()[row]
    # busy VMs: Gaussian noise of each VM's own sd, plus rare bursts (positive)
    assert abs(np.median(residual[busy] / noise[busy])) < 0.05
    assert 0.6 < np.mean(np.abs(residual[busy] / noise[busy]) < 1) < 0.75  # ~68 % within 1 sd
    assert np.array_equal(telemetry["value"].to_numpy()[kind == "flat"], expected[kind == "flat"])
    # the office VMs' weekend dip and the level shifts are in it
    office = profiles["office"].to_numpy()
    weekend = expected_load(profiles, np.arange(5 * 24, 6 * 24), "1h")  # Saturday
    weekday = expected_load(profiles, np.arange(4 * 24, 5 * 24), "1h")  # Friday
    shifted = profiles["level_shift_at"].notna().to_numpy()
    np.testing.assert_allclose(
        weekend[office & ~shifted].mean(axis=1), 0.6 * weekday[office & ~shifted].mean(axis=1)
    )
    np.testing.assert_allclose(
        weekend[~office & ~shifted].mean(axis=1), weekday[~office & ~shifted].mean(axis=1)
    )
    unshifted = profiles.assign(level_shift_at=pd.NaT, level_shift_size=np.nan)
    last = np.array([10 * 24 - 1])
    without = expected_load(unshifted, last, "1h")[:, 0]
    size = profiles["level_shift_size"].fillna(0.0).to_numpy()
    with_shift = expected_load(profiles, last, "1h")[:, 0]
    np.testing.assert_allclose(with_shift, np.maximum(without + size, 0.0), atol=1e-9)
    assert (with_shift != without)[shifted].all()  # CPU % never below 0
