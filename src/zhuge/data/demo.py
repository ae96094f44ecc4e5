"""A synthetic VM fleet with the mess of real telemetry, for demos, tests and benchmarks.

Each VM's CPU % is a level with a daily cycle of its own amplitude and phase, a weekend dip
for "office" VMs, Gaussian noise and short bursts (which push some readings above 100 %, as
hypervisor accounting does in real fleets). On top of that, on purpose:

* idle VMs (low, nearly constant) and a few flat ones (a stuck sensor: one value throughout);
* level shifts part-way through (a redeploy, a new tenant);
* gaps, short (a missed scrape) and long (an agent down for hours), and single lost samples;
* VMs created near the end (very short series) and VMs decommissioned early;
* timestamps off the grid by a constant offset per VM (like NAB's 14:27, 14:32);
* exact duplicate rows (an exporter that retried).

VMs sit on hosts of 8-16 VMs, hosts in clusters of 20-60 hosts. :func:`fleet_profiles`
returns what was injected into every VM, so tests can check that cleaning finds it.

Deterministic by ``seed``, whatever the chunk size: the VM table and profiles come from one
generator, and the samples of each block of ``BLOCK_VMS`` VMs from a generator seeded by
``(seed, block)``. A 100k-VM, 14-day, 5-minute fleet (~400M samples) does not fit in memory
as one frame, so :func:`write_fleet` writes it chunk by chunk, one Parquet row group per
chunk, grouped by ``series_id`` as :func:`zhuge.data.sources.iter_series_chunks` requires.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zhuge.data.sources import _filesystem
from zhuge.errors import DataError

__all__ = [
    "BLOCK_VMS",
    "FleetFiles",
    "expected_load",
    "fleet_profiles",
    "generate_fleet",
    "generate_vms",
    "iter_generate_fleet",
    "write_fleet",
]

BLOCK_VMS = 1000  # VMs per random block: the unit of determinism across chunk sizes
_DAY = pd.Timedelta(days=1)

# Shares of VMs with each behaviour (of all VMs unless said otherwise).
IDLE_SHARE = 0.10
FLAT_SHARE = 0.01
OFFICE_SHARE = 0.40  # weekend dip
SHIFT_SHARE = 0.05  # of busy VMs
GAP_SHARE = 0.10
SHORT_SHARE = 0.01
EARLY_STOP_SHARE = 0.01
OFF_GRID_SHARE = 0.20
LOST_SAMPLE_RATE = 0.0005  # per sample
DUPLICATE_RATE = 0.001  # per sample
BURST_RATE = 0.003  # per sample


@dataclass(frozen=True)
class _Profiles:
    """Everything drawn per VM before any sample is drawn."""

    table: pd.DataFrame  # public ground truth, one row per VM
    gap_vm: np.ndarray
    gap_start: np.ndarray
    gap_len: np.ndarray


@dataclass(frozen=True)
class FleetFiles:
    """Where :func:`write_fleet` put the fleet, and how much it wrote."""

    telemetry: str
    vms: str
    rows: int
    series: int


def _steps(days: float, freq: str) -> tuple[int, int]:
    step = pd.Timedelta(freq)
    if step <= pd.Timedelta(0) or step > _DAY:
        raise DataError(f"freq must be a positive duration of at most a day, not {freq!r}")
    per_day = int(_DAY / step)
    n_steps = round(days * per_day)
    if n_steps < 1:
        raise DataError(f"days={days} at {freq} gives no samples")
    return per_day, n_steps


def generate_vms(vms: int, seed: int = 0) -> pd.DataFrame:
    """The VM table: ``vm_id, host_id, cluster_id, memory_gb, vcpus``."""
    if vms < 1:
        raise DataError(f"vms must be at least 1, not {vms}")
    rng = np.random.default_rng([seed, 0])
    host_sizes = rng.integers(8, 17, size=vms // 8 + 1)
    host = np.searchsorted(np.cumsum(host_sizes), np.arange(vms), side="right")
    n_hosts = int(host.max()) + 1
    cluster_sizes = rng.integers(20, 61, size=n_hosts // 20 + 1)
    cluster_of_host = np.searchsorted(np.cumsum(cluster_sizes), np.arange(n_hosts), side="right")
    vcpus = rng.choice([1, 2, 4, 8, 16], size=vms, p=[0.15, 0.35, 0.3, 0.15, 0.05])
    memory_gb = vcpus * rng.choice([2, 4, 8], size=vms, p=[0.3, 0.5, 0.2])
    width = max(6, len(str(vms - 1)))
    return pd.DataFrame(
        {
            "vm_id": [f"vm-{i:0{width}d}" for i in range(vms)],
            "host_id": [f"host-{h:05d}" for h in host],
            "cluster_id": [f"cluster-{c:03d}" for c in cluster_of_host[host]],
            "memory_gb": memory_gb.astype(np.int64),
            "vcpus": vcpus.astype(np.int64),
        }
    )


def _draw_profiles(vms: int, days: float, freq: str, seed: int, start: str) -> _Profiles:
    per_day, n_steps = _steps(days, freq)
    step = pd.Timedelta(freq)
    rng = np.random.default_rng([seed, 1])
    u = rng.random((vms, 8))
    kind = np.where(
        u[:, 0] < FLAT_SHARE, "flat", np.where(u[:, 0] < FLAT_SHARE + IDLE_SHARE, "idle", "busy")
    )
    busy = kind == "busy"
    level = np.where(
        busy, rng.lognormal(np.log(22), 0.5, vms).clip(4, 70), rng.uniform(0.3, 3, vms)
    )
    level = np.where(kind == "flat", np.round(rng.choice([0.0, 1.0, 5.0, 12.5], vms), 1), level)
    amplitude = np.where(busy, rng.uniform(0.15, 0.7, vms), 0.0)
    phase_h = rng.uniform(0, 24, vms)
    office = busy & (u[:, 1] < OFFICE_SHARE)
    noise_sd = np.where(busy, 0.5 + 0.08 * level, np.where(kind == "idle", 0.15, 0.0))

    first = np.zeros(vms, np.int64)
    last = np.full(vms, n_steps - 1, np.int64)
    short = u[:, 2] < SHORT_SHARE
    first[short] = n_steps - np.maximum(
        2, (rng.uniform(0.3, 1.5, vms)[short] * per_day).astype(np.int64)
    ).clip(max=n_steps)
    stops = ~short & (u[:, 3] < EARLY_STOP_SHARE)
    last[stops] = (n_steps * rng.uniform(0.6, 0.9, vms)[stops]).astype(np.int64)

    shifts = busy & ~short & (u[:, 4] < SHIFT_SHARE)
    span = last - first
    shift_step = np.where(shifts, first + (span * rng.uniform(0.3, 0.7, vms)).astype(np.int64), -1)
    shift_size = np.where(
        shifts, rng.uniform(15, 35, vms) * rng.choice([1, -1], vms, p=[0.7, 0.3]), 0.0
    )
    # a downward shift never goes below a low but busy level
    shift_size = np.where(shift_size < 0, -np.minimum(-shift_size, level * 0.8), shift_size)

    offset_steps = np.where(u[:, 5] < OFF_GRID_SHARE, rng.uniform(0.2, 0.8, vms), 0.0)
    offset = pd.to_timedelta(np.round(offset_steps * step / pd.Timedelta("1min")), unit="min")

    has_gaps = ~short & (u[:, 6] < GAP_SHARE)
    n_gaps = np.where(has_gaps, rng.integers(1, 4, vms), 0)
    gap_vm = np.repeat(np.arange(vms), n_gaps)
    long_gap = rng.random(len(gap_vm)) < 0.5
    gap_len = np.where(long_gap, rng.integers(12, 73, len(gap_vm)), rng.integers(1, 4, len(gap_vm)))
    room = np.maximum(span[gap_vm] - gap_len - 2, 1)
    gap_start = first[gap_vm] + 1 + (rng.random(len(gap_vm)) * room).astype(np.int64)
    gap_len = np.minimum(gap_len, np.maximum(last[gap_vm] - gap_start, 0))

    origin = pd.Timestamp(start)
    width = max(6, len(str(vms - 1)))
    table = pd.DataFrame(
        {
            "vm_id": [f"vm-{i:0{width}d}" for i in range(vms)],
            "kind": kind,
            "office": office,
            "level": level,
            "amplitude": amplitude,
            "phase_h": phase_h,
            "noise_sd": noise_sd,
            "first_timestamp": origin + first * step,
            "last_timestamp": origin + last * step,
            "offset": offset,
            "too_short": short,
            "stops_early": stops,
            "level_shift_at": pd.Series(origin + shift_step * step).where(shifts),
            "level_shift_size": np.where(shifts, shift_size, np.nan),
            "gaps": np.bincount(gap_vm, minlength=vms),
            "gap_steps": np.bincount(gap_vm, weights=gap_len, minlength=vms).astype(np.int64),
        }
    )
    return _Profiles(table, gap_vm, gap_start, gap_len)


def fleet_profiles(
    vms: int, days: float, freq: str = "5min", seed: int = 0, start: str = "2024-01-01"
) -> pd.DataFrame:
    """What :func:`generate_fleet` injects into each VM (the ground truth for tests).

    ``kind`` is busy/idle/flat; ``level_shift_at``/``level_shift_size`` the shift (NaT/NaN
    where none); ``gaps``/``gap_steps`` the gaps cut out; ``offset`` the constant amount the
    VM's timestamps sit after the grid.
    """
    return _draw_profiles(vms, days, freq, seed, start).table


def _daily_cycle(
    p: pd.DataFrame, t: np.ndarray, step: pd.Timedelta, origin: pd.Timestamp
) -> np.ndarray:
    """(VMs, steps) each VM's level times its daily sine, x0.6 on weekends for office VMs."""
    hours = (t * (step / pd.Timedelta("1h"))) % 24
    weekday = ((t * step.value + origin.value) // _DAY.value + 3) % 7  # epoch was a Thursday
    weekend = weekday >= 5
    level = p["level"].to_numpy()[:, None]
    cycle = np.sin(2 * np.pi * (hours[None, :] - p["phase_h"].to_numpy()[:, None]) / 24)
    value = level * (1 + p["amplitude"].to_numpy()[:, None] * cycle)
    return np.where(p["office"].to_numpy()[:, None] & weekend[None, :], value * 0.6, value)


def _level_shift(
    p: pd.DataFrame, t: np.ndarray, step: pd.Timedelta, origin: pd.Timestamp
) -> np.ndarray:
    """(VMs, steps) each VM's level shift from its step on (0 before it, or without one)."""
    shift_at = ((p["level_shift_at"] - origin) / step).fillna(-1).to_numpy().astype(np.int64)
    shift = (shift_at[:, None] >= 0) & (t[None, :] >= shift_at[:, None])
    return shift * np.nan_to_num(p["level_shift_size"].to_numpy())[:, None]


def expected_load(
    profiles: pd.DataFrame, steps: np.ndarray, freq: str = "5min", start: str = "2024-01-01"
) -> np.ndarray:
    """(VMs, len(steps)) the deterministic part of each VM's CPU % at grid ``steps`` (counted
    from ``start`` in ``freq``, as :func:`fleet_profiles` was drawn): level, daily sine,
    weekend factor and level shift, without the noise, bursts, gaps and timestamp offsets
    the samples get. The best forecast of a VM's daily shape any forecaster could make."""
    t = np.asarray(steps, dtype=np.int64)
    step, origin = pd.Timedelta(freq), pd.Timestamp(start)
    value = np.maximum(
        _daily_cycle(profiles, t, step, origin) + _level_shift(profiles, t, step, origin), 0.0
    )
    flat = (profiles["kind"].to_numpy() == "flat")[:, None]
    return np.where(flat, profiles["level"].to_numpy()[:, None], value)


def _block_arrays(
    profiles: _Profiles, lo: int, hi: int, n_steps: int, freq: str, seed: int, start: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of VMs ``lo:hi`` (one random block): (vm index, timestamp ns, value float32)."""
    p = profiles.table.iloc[lo:hi]
    rng = np.random.default_rng([seed, 2, lo // BLOCK_VMS])
    n = hi - lo
    step = pd.Timedelta(freq)
    t = np.arange(n_steps)
    origin = pd.Timestamp(start)

    value = _daily_cycle(p, t, step, origin)
    value += rng.standard_normal((n, n_steps)) * p["noise_sd"].to_numpy()[:, None]
    bursts = (rng.random((n, n_steps)) < BURST_RATE) * rng.uniform(20, 90, (n, n_steps))
    bursts[:, 1:] += 0.6 * bursts[:, :-1]
    busy = (p["kind"].to_numpy() == "busy")[:, None]
    value += np.where(busy, bursts, 0.0)
    value += _level_shift(p, t, step, origin)
    value = np.maximum(value, 0.0)
    flat = (p["kind"].to_numpy() == "flat")[:, None]
    value = np.where(flat, p["level"].to_numpy()[:, None], np.round(value, 3))

    first = ((p["first_timestamp"] - origin) / step).to_numpy().astype(np.int64)
    last = ((p["last_timestamp"] - origin) / step).to_numpy().astype(np.int64)
    keep = (t[None, :] >= first[:, None]) & (t[None, :] <= last[:, None])
    in_block = (profiles.gap_vm >= lo) & (profiles.gap_vm < hi)
    g_vm = profiles.gap_vm[in_block] - lo
    g_start, g_len = profiles.gap_start[in_block], profiles.gap_len[in_block]
    g_rows = np.repeat(g_vm, g_len)
    g_cols = np.repeat(g_start, g_len) + (
        np.arange(int(g_len.sum())) - np.repeat(np.cumsum(g_len) - g_len, g_len)
    )
    keep[g_rows, g_cols] = False
    lost = rng.random((n, n_steps)) < LOST_SAMPLE_RATE
    lost[np.arange(n), first] = False  # keep each series' span as profiled
    lost[np.arange(n), last] = False
    keep &= ~lost

    flat_index = np.flatnonzero(keep.ravel())
    copies = 1 + (rng.random(len(flat_index)) < DUPLICATE_RATE)
    flat_index = np.repeat(flat_index, copies)
    vm = (flat_index // n_steps).astype(np.int32) + lo
    step_of_row = flat_index % n_steps
    offset_ns = p["offset"].to_numpy().astype("timedelta64[ns]").astype(np.int64)
    ts = origin.value + step_of_row * step.value + offset_ns[vm - lo]
    return vm, ts, value.ravel()[flat_index].astype(np.float32)


def _iter_blocks(
    vms: int, days: float, freq: str, seed: int, start: str, vms_per_chunk: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if vms_per_chunk < 1:
        raise DataError(f"vms_per_chunk must be at least 1, not {vms_per_chunk}")
    _, n_steps = _steps(days, freq)
    profiles = _draw_profiles(vms, days, freq, seed, start)
    blocks_per_chunk = max(1, -(-vms_per_chunk // BLOCK_VMS))
    for chunk_lo in range(0, vms, blocks_per_chunk * BLOCK_VMS):
        parts = [
            _block_arrays(profiles, lo, min(lo + BLOCK_VMS, vms), n_steps, freq, seed, start)
            for lo in range(chunk_lo, min(chunk_lo + blocks_per_chunk * BLOCK_VMS, vms), BLOCK_VMS)
        ]
        yield tuple(np.concatenate(a) for a in zip(*parts, strict=True))  # type: ignore[misc]


def iter_generate_fleet(
    vms: int,
    days: float,
    freq: str = "5min",
    seed: int = 0,
    *,
    start: str = "2024-01-01",
    vms_per_chunk: int = 5000,
) -> Iterator[pd.DataFrame]:
    """Telemetry ``series_id, timestamp, value`` in chunks of whole VMs, series-major.

    ``vms_per_chunk`` is rounded up to a multiple of :data:`BLOCK_VMS`. Peak memory is about
    ``vms_per_chunk × steps × 40`` bytes (5000 VMs × 14 days × 5 min ≈ 0.8 GB).
    """
    width = max(6, len(str(vms - 1)))
    names = np.array([f"vm-{i:0{width}d}" for i in range(vms)], dtype=object)
    for vm, ts, value in _iter_blocks(vms, days, freq, seed, start, vms_per_chunk):
        yield pd.DataFrame(
            {"series_id": names[vm], "timestamp": ts.view("datetime64[ns]"), "value": value}
        )


def generate_fleet(
    vms: int,
    days: float,
    freq: str = "5min",
    seed: int = 0,
    *,
    start: str = "2024-01-01",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(telemetry long frame, VM table) for a fleet that fits in memory."""
    chunks = list(iter_generate_fleet(vms, days, freq, seed, start=start))
    return pd.concat(chunks, ignore_index=True), generate_vms(vms, seed)


def write_fleet(
    out_dir: str | os.PathLike[str],
    vms: int,
    days: float,
    freq: str = "5min",
    seed: int = 0,
    *,
    start: str = "2024-01-01",
    vms_per_chunk: int = 5000,
) -> FleetFiles:
    """Write ``telemetry.parquet`` (one row group per chunk) and ``vms.parquet`` to ``out_dir``.

    ``out_dir`` is a local path or any fsspec URL. ``series_id`` is dictionary-encoded and
    ``value`` float32, which keeps 400M samples at a few GB on disk.
    """
    url = os.fspath(out_dir).rstrip("/")
    fs, root = _filesystem(url)
    fs.makedirs(root, exist_ok=True)
    table = generate_vms(vms, seed)
    names = table["vm_id"].to_numpy()
    schema = pa.schema(
        [
            ("series_id", pa.dictionary(pa.int32(), pa.string())),
            ("timestamp", pa.timestamp("ns")),
            ("value", pa.float32()),
        ]
    )
    rows = 0
    with (
        fs.open(f"{root}/telemetry.parquet", "wb") as fh,
        pq.ParquetWriter(fh, schema) as writer,
    ):
        for vm, ts, value in _iter_blocks(vms, days, freq, seed, start, vms_per_chunk):
            batch = pa.table(
                [
                    # each row group carries only its own VMs' names
                    pa.DictionaryArray.from_arrays(
                        pa.array(vm - vm[0], pa.int32()),
                        pa.array(names[vm[0] : vm[-1] + 1], pa.string()),
                    ),
                    pa.array(ts, pa.int64()).cast(pa.timestamp("ns")),
                    pa.array(value, pa.float32()),
                ],
                schema=schema,
            )
            writer.write_table(batch, row_group_size=len(vm))
            rows += len(vm)
    with fs.open(f"{root}/vms.parquet", "wb") as fh:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), fh)
    return FleetFiles(f"{url}/telemetry.parquet", f"{url}/vms.parquet", rows, vms)
