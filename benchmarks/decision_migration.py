"""Forecasts judged by the migration decision, on held-out days of fleets nothing was tuned on.

For each fleet the last day is hidden; the history (cleaned by the forecasting rules, hourly
means) is forecast 24 h ahead, and the same constrained plan (``--window 30min --deadline 24h
--max-per-host 2 --max-per-cluster 50``, 100 Gbit/s shared, 10 Gbit/s per migration) is solved
on each forecast. Each plan is scored on what really happened (the 5-minute telemetry of the
hidden day, cleaned the same way): the realised mean load in its windows, and its captured
share ``(L_earliest - L) / (L_earliest - L_perfect_hourly)``, as issue 16 defines it.

Rows: the true future at 30 minutes (unattainable), a perfect hourly forecast, on the demo
fleets the generator's expected load (its noise-free part, :func:`zhuge.data.demo.expected_load`:
the best any forecaster can do in expectation), zhuge's ``auto`` chosen by MASE and by the
decision (``--select-by decision``: a decision backtest of the candidates on the history), the
GBM, each VM's robust harmonic daily curve (``harmonic``), a combination (mean of the GBM and
the 7-day profile), the 7-day profile, seasonal naive (yesterday) and earliest (naive); beside
them, the coverage of auto's 80 % interval (``--quantiles 0.1,0.9``) on the hidden day's hourly
load (on NAB also without the VMs a labelled anomaly window touches that day), and with
``--coverage-days N`` on each of the last N days held out in turn (auto refitted on what came
before each), overall, on the burstier half of the VMs (95th percentile over median of the
hour-to-hour changes in the history, above the fleet's median) and, on NAB, on the VM-days
with and without a labelled anomaly; ``--coverage-only`` skips the plans and reports only that.

    .venv/bin/python benchmarks/decision_migration.py                # demo fleets 101, 202 + NAB
    .venv/bin/python benchmarks/decision_migration.py --seeds 101 --vms 300 --no-nab
    .venv/bin/python benchmarks/decision_migration.py --risk --coverage-days 3
    .venv/bin/python benchmarks/decision_migration.py --coverage-only --coverage-days 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# run as a script, benchmarks/ is sys.path[0] and its queue.py shadows the standard library's
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import numpy as np
import pandas as pd

from zhuge.data import write_fleet
from zhuge.data.demo import expected_load, fleet_profiles
from zhuge.data.preparation import ChunkSpec, prepare_chunk
from zhuge.jobs.migration.coverage import clean_actual, evaluable
from zhuge.migration import PlanConstraints
from zhuge.migration.decision import EARLIEST, PERFECT, DecisionTask, _score, captured_share
from zhuge.migration.decision_backtest import PROFILE, decision_backtest
from zhuge.ml.forecast import BASELINES, Forecaster, to_fleet
from zhuge.ml.forecast.baselines import seasonal_mean
from zhuge.ml.forecast.forecaster import AUTO_CANDIDATES, quantile_column
from zhuge.ml.forecast.models import make_model

DAY = pd.Timedelta("1D")
HOURLY = "perfect_hourly"
EXPECTED = "expected_load"
DEMO_START, DEMO_DAYS = "2024-01-01", 15
ORDER = [
    PERFECT, HOURLY, EXPECTED, "auto (by decision)", "auto (by MASE)", "gbm", "harmonic",
    "combination", PROFILE, "seasonal_naive", EARLIEST,
]  # fmt: skip
LABELS = {
    PERFECT: "the true future at 30 minutes (unattainable)",
    HOURLY: "a perfect hourly forecast",
    EXPECTED: "the generator's expected load (noise-free; the best any forecaster can do)",
    "harmonic": "each VM's robust harmonic daily curve (harmonic)",
    "auto (by decision)": "zhuge auto, --select-by decision",
    "auto (by MASE)": "zhuge auto, --select-by mase",
    "gbm": "the global GBM",
    "combination": "mean of the GBM and the 7-day profile",
    PROFILE: "each VM's mean per slot of the day over the last 7 days",
    "seasonal_naive": "yesterday's load (seasonal naive)",
    EARLIEST: "as early as possible (naive)",
}


def demo_fleet(seed: int, vms: int, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = write_fleet(
        folder / f"fleet-{seed}", vms, DEMO_DAYS, "5min", seed=seed, start=DEMO_START
    )
    return pd.read_parquet(files.telemetry), pd.read_parquet(files.vms)


def demo_expected(seed: int, vms: int, ids: pd.Index, cut: pd.Timestamp) -> np.ndarray:
    """(V, 24) the generator's noise-free load (:func:`zhuge.data.demo.expected_load`: level,
    daily sine, weekend factor, level shift) of the hidden day, hourly means of its 5-minute
    grid, rows in the order of ``ids``: the plan no forecaster can beat in expectation, since
    what is left (Gaussian noise, bursts that fade within minutes) is independent of the past."""
    profiles = fleet_profiles(vms, DEMO_DAYS, "5min", seed=seed, start=DEMO_START)
    profiles = profiles.set_index("vm_id").loc[ids].reset_index()
    first = int((cut - pd.Timestamp(DEMO_START)) / pd.Timedelta("5min"))
    load = expected_load(profiles, np.arange(first, first + 288), "5min", DEMO_START)
    return load.reshape(len(ids), 24, 12).mean(axis=2)


def nab_fleet(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The NAB CPU series (about 14 days of 5-minute samples each), their last 14 whole days
    moved onto one calendar (a fleet): 13 days of history and the hidden day. Third: NAB's
    labelled anomaly windows (``labels/combined_windows.json``) moved the same way, as
    ``series_id, start, end``."""
    labels = json.loads((root / "nab" / "labels" / "combined_windows.json").read_text())
    frames, windows = [], []
    for path in sorted((root / "nab" / "realAWSCloudwatch").glob("*_cpu_utilization_*.csv")):
        raw = pd.read_csv(path, parse_dates=["timestamp"])
        end = raw["timestamp"].max().floor("1D")
        raw = raw.loc[(raw["timestamp"] >= end - 14 * DAY) & (raw["timestamp"] < end)]
        if raw["timestamp"].min() > end - 8 * DAY:
            continue  # too short for a week of history and a held-out day
        shift = pd.Timestamp("2024-01-16") - end
        frames.append(raw.assign(series_id=path.stem, timestamp=raw["timestamp"] + shift))
        for start, stop in labels.get(f"realAWSCloudwatch/{path.name}", []):
            windows.append((path.stem, pd.Timestamp(start) + shift, pd.Timestamp(stop) + shift))
    telemetry = pd.concat(frames, ignore_index=True)
    ids = sorted(telemetry["series_id"].unique())
    vms = pd.DataFrame(
        {
            "vm_id": ids,
            "host_id": [f"h{i // 2}" for i in range(len(ids))],
            "cluster_id": "c0",
            "memory_gb": 16.0,
        }
    )
    return telemetry, vms, pd.DataFrame(windows, columns=["series_id", "start", "end"])


def anomalous_days(anomalies: pd.DataFrame | None, ids, day: pd.Timestamp) -> np.ndarray:
    """(len(ids),) whether a labelled anomaly window overlaps each VM's ``day``."""
    if anomalies is None or anomalies.empty:
        return np.zeros(len(ids), dtype=bool)
    hit = anomalies.loc[(anomalies["start"] < day + DAY) & (anomalies["end"] > day), "series_id"]
    return np.isin(np.asarray(ids).astype(str), hit.astype(str).to_numpy())


def hourly_history(telemetry: pd.DataFrame, cut: pd.Timestamp, freq: str = "1h") -> pd.DataFrame:
    raw = telemetry.loc[telemetry["timestamp"] < cut, ["series_id", "timestamp", "value"]]
    raw = raw.assign(series_id=raw["series_id"].astype(str))
    series, _ = prepare_chunk(raw, ChunkSpec(freq=freq, sample_freq="5min"))
    return series


def half_hourly(telemetry, cut, ids: pd.Index, gbm: dict) -> dict[str, np.ndarray]:
    """The GBM and the 7-day profile on a 30-minute grid, as (V, 48) matrices; each 30-minute
    window's value is what the planner sees (an hourly frame repeats it in both halves)."""
    fleet = to_fleet(hourly_history(telemetry, cut, "30min"), freq="30min")
    order = pd.Index(fleet.series_ids.astype(str)).get_indexer(ids)
    model = Forecaster(model="gbm", freq="30min", horizon=48, n_jobs=1, **gbm)
    model._validate()
    model._fit_fleet(fleet)
    return {
        "gbm (30min grid)": model._predict_fleet(fleet)["yhat"][order],
        "profile_7d (30min slots)": seasonal_mean(fleet.values, 48, fleet.season)[order],
    }


def burstiness(values: np.ndarray) -> np.ndarray:
    """(n,) 95th percentile over median of each series' absolute hour-to-hour changes: high for
    short bursts, untouched by a weekend's level (which moves few consecutive hours)."""
    change = np.abs(np.diff(values, axis=1))
    ratio = np.full(len(values), np.nan)
    seen = np.isfinite(change).sum(axis=1) >= 2
    q95 = np.nanpercentile(change[seen], 95, axis=1)
    ratio[seen] = q95 / np.maximum(np.nanmedian(change[seen], axis=1), 1e-9)
    return ratio


def coverage_by_day(
    telemetry: pd.DataFrame,
    cut: pd.Timestamp,
    days: int,
    gbm: dict,
    anomalies: pd.DataFrame | None = None,
) -> dict:
    """Coverage of auto's 80 % interval on each of the ``days`` days up to ``cut + 1 day``,
    held out in turn (the hourly series of every VM observed to the end, cleaned by the
    forecasting rules; auto fitted on what came before each day); with ``anomalies``, also
    on the VM-days no labelled anomaly window touches."""
    fleet = to_fleet(hourly_history(telemetry, cut + DAY), freq="1h")
    keep = fleet.end == np.datetime64(cut + DAY - pd.Timedelta("1h"))
    values, end = fleet.values[keep], fleet.end[keep]
    per_day, inside, bursty, labelled = [], [], [], []
    for back in range(days, 0, -1):
        t = values.shape[1] - 24 * back
        history = type(fleet)(fleet.series_ids[keep], values[:, :t], end - np.timedelta64(24 * back, "h"), fleet.freq)  # fmt: skip
        auto = Forecaster(model="auto", freq="1h", horizon=24, quantiles=(0.1, 0.9), n_jobs=1, **gbm)  # fmt: skip
        auto._validate()
        auto._fit_fleet(history)
        cols = auto._predict_fleet(history)
        actual = values[:, t : t + 24]
        seen = np.isfinite(actual)
        hit = (actual >= cols[quantile_column(0.1)]) & (actual <= cols[quantile_column(0.9)])
        ratio = burstiness(history.values)
        per_day.append(float(hit[seen].mean()))
        inside.append(hit[seen])
        bursty.append(np.broadcast_to((ratio > np.nanmedian(ratio))[:, None], hit.shape)[seen])
        odd = anomalous_days(anomalies, fleet.series_ids[keep], cut + DAY - back * DAY)
        labelled.append(np.broadcast_to(odd[:, None], hit.shape)[seen])
    inside, bursty = np.concatenate(inside), np.concatenate(bursty)
    labelled = np.concatenate(labelled)
    out = {
        "coverage_80_days": per_day,
        "coverage_80_pooled": float(inside.mean()),
        "coverage_80_bursty_half": float(inside[bursty].mean()),
        "coverage_80_quiet_half": float(inside[~bursty].mean()),
        "coverage_80_points": int(inside.size),
    }
    if anomalies is not None:
        out["coverage_80_no_anomaly"] = float(inside[~labelled].mean())
        out["coverage_80_anomaly"] = float(inside[labelled].mean()) if labelled.any() else None
        out["coverage_80_anomalous_vm_days"] = int(labelled.sum() // 24)
    return out


def run_fleet(
    name: str,
    telemetry: pd.DataFrame,
    vms: pd.DataFrame,
    args,
    *,
    expected=None,
    anomalies: pd.DataFrame | None = None,
) -> dict:
    """``expected``: (ids, cut) -> the generator's noise-free load of the hidden day (demo
    fleets); ``anomalies``: labelled anomaly windows (NAB)."""
    started = time.perf_counter()
    cut = telemetry["timestamp"].max().floor("1D")  # the last day is hidden
    history = hourly_history(telemetry, cut)
    raw_next = telemetry.loc[(telemetry["timestamp"] >= cut) & (telemetry["timestamp"] < cut + DAY)]
    actual_5min = clean_actual(
        raw_next.assign(series_id=raw_next["series_id"].astype(str)), pd.Timedelta("5min")
    )
    vm_ids = vms["vm_id"].astype(str)
    _, covered, _ = evaluable(actual_5min, vm_ids, cut, cut + DAY, pd.Timedelta("5min"))
    fleet = to_fleet(history, freq="1h")
    ends_now = fleet.end == np.datetime64(cut - pd.Timedelta("1h"))
    keep = ends_now & np.isin(fleet.series_ids.astype(str), covered)
    fleet = type(fleet)(fleet.series_ids[keep], fleet.values[keep], fleet.end[keep], fleet.freq)
    ids = pd.Index(fleet.series_ids.astype(str))
    constraints = PlanConstraints(window="30min", max_per_host=2, max_per_cluster=50)
    task = DecisionTask(vms.assign(vm_id=vm_ids), constraints, method=args.method)

    h = 24
    gbm = {"gbm_params": {"n_jobs": 1}} if args.fast else {}
    auto = Forecaster(model="auto", freq="1h", horizon=h, quantiles=(0.1, 0.9), n_jobs=1, **gbm)
    auto._validate()
    auto._fit_fleet(fleet)
    auto_cols = auto._predict_fleet(fleet)
    forecasts = {"auto (by MASE)": auto_cols["yhat"]}
    if auto.model_ == "gbm":
        forecasts["gbm"] = auto_cols["yhat"]
    else:
        g = Forecaster(model="gbm", freq="1h", horizon=h, n_jobs=1, **gbm)
        g._validate()
        g._fit_fleet(fleet)
        forecasts["gbm"] = g._predict_fleet(fleet)["yhat"]
    profile = seasonal_mean(fleet.values, h, fleet.season)
    forecasts[PROFILE] = profile
    forecasts["seasonal_naive"] = BASELINES["seasonal_naive"](fleet.values, h, fleet.season)
    forecasts["harmonic"] = make_model("harmonic").predict(fleet, h)
    forecasts["combination"] = (forecasts["gbm"] + profile) / 2

    selecting = time.perf_counter()
    chooser = decision_backtest(
        fleet, task, horizon=h, windows=2, models=["gbm"], n_jobs=1, **gbm
    ).overall.set_index("plan")["captured"]
    chosen = max((m for m in AUTO_CANDIDATES if m in chooser.index), key=lambda m: chooser[m])
    select_s = time.perf_counter() - selecting
    forecasts["auto (by decision)"] = (
        forecasts["gbm"] if chosen == "gbm" else make_model(chosen).predict(fleet, h)
    )

    truth = actual_5min.loc[actual_5min["series_id"].isin(set(ids))]
    hourly_truth = (
        truth.assign(timestamp=truth["timestamp"].dt.floor("1h"))
        .groupby(["series_id", "timestamp"], as_index=False)["yhat"]
        .mean()
    )
    actual_h = hourly_truth.pivot(index="series_id", columns="timestamp", values="yhat").loc[ids]
    forecasts[HOURLY] = actual_h.to_numpy()
    if expected is not None:
        forecasts[EXPECTED] = expected(ids, cut)
    if args.grid30:
        forecasts.update(half_hourly(telemetry, cut, ids, gbm))
    if args.risk:  # what plan-migrations --risk 0.8 plans on: between yhat (median) and q90
        upper = auto_cols[quantile_column(0.9)]
        forecasts[RISK] = auto_cols["yhat"] + (0.8 - 0.5) / (0.9 - 0.5) * (
            upper - auto_cols["yhat"]
        )

    def frame(values: np.ndarray) -> pd.DataFrame:
        steps = values.shape[1]
        stamps = pd.date_range(cut, periods=steps, freq=DAY / steps)
        return pd.DataFrame({"series_id": np.repeat(ids.to_numpy(), steps), "timestamp": np.tile(stamps.to_numpy(), len(ids)), "yhat": np.asarray(values, float).reshape(-1)})  # fmt: skip

    frames = {n: frame(np.asarray(v, float)) for n, v in forecasts.items()}
    table = _score(
        frames,
        truth,
        DecisionTask(
            task.vms.loc[task.vms["vm_id"].isin(set(ids))], constraints, method=args.method
        ),
    ).set_index("plan")
    naive, best = table.at[EARLIEST, "realised_load"], table.at[HOURLY, "realised_load"]
    table["captured"] = [captured_share(v, naive, best) for v in table["realised_load"]]
    lower, upper = auto_cols[quantile_column(0.1)], auto_cols[quantile_column(0.9)]
    inside = (actual_h.to_numpy() >= lower) & (actual_h.to_numpy() <= upper)
    by_day = (
        coverage_by_day(telemetry, cut, args.coverage_days, gbm, anomalies)
        if args.coverage_days
        else {}
    )
    odd = anomalous_days(anomalies, ids, cut)
    calm = {"coverage_80_no_anomaly_hidden_day": float(inside[~odd].mean())} if odd.any() else {}
    return {
        **by_day,
        **calm,
        "fleet": name,
        "vms": len(ids),
        "vms_left_out": int(len(vms) - len(ids)),
        "auto_by_mase": str(auto.model_),
        "auto_by_decision": chosen,
        "coverage_80": float(inside.mean()),
        "anomalous_vms_hidden_day": [str(i) for i in ids[odd]],
        "select_by_decision_s": round(select_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "plans": {
            p: {
                "realised_load": round(float(table.at[p, "realised_load"]), 2),
                "captured": round(float(table.at[p, "captured"]), 3),
                "placed": int(table.at[p, "placed"]),
            }
            for p in ORDER + (GRID30 if args.grid30 else []) + ([RISK] if args.risk else [])
            if p in table.index
        },
    }


GRID30 = ["gbm (30min grid)", "profile_7d (30min slots)"]
RISK = "auto (by MASE), --risk 0.8"
LABELS[RISK] = "zhuge auto (MASE), planned with --risk 0.8"
LABELS.update({GRID30[0]: "the GBM on a 30-minute grid", GRID30[1]: "the 7-day profile per 30-minute slot"})  # fmt: skip


def coverage_lines(results: list[dict]) -> list[str]:
    n = len(results[0]["coverage_80_days"])
    return [
        f"| 80 % coverage, last {n} days held out in turn: all (per day) | "
        + " | ".join(
            f"{100 * r['coverage_80_pooled']:.1f} % ({', '.join(f'{100 * c:.0f}' for c in r['coverage_80_days'])})"
            for r in results
        )
        + " |",
        f"| 80 % coverage, last {n} days: burstier / quieter half of the VMs | "
        + " | ".join(
            f"{100 * r['coverage_80_bursty_half']:.1f} / {100 * r['coverage_80_quiet_half']:.1f} %"
            for r in results
        )
        + " |",
        *(
            [
                f"| 80 % coverage, last {n} days: VM-days without / with a labelled anomaly | "
                + " | ".join(_anomaly_cell(r) for r in results)
                + " |"
            ]
            if any("coverage_80_no_anomaly" in r for r in results)
            else []
        ),
    ]


def _anomaly_cell(r: dict) -> str:
    if "coverage_80_no_anomaly" not in r:
        return "no labels"
    labelled = r["coverage_80_anomaly"]
    return (
        f"{100 * r['coverage_80_no_anomaly']:.1f} / "
        + ("-" if labelled is None else f"{100 * labelled:.1f} %")
        + f" ({r['coverage_80_anomalous_vm_days']} VM-days labelled)"
    )


def coverage_markdown(results: list[dict]) -> str:
    head = "| coverage of auto's 80 % interval | " + " | ".join(r["fleet"] for r in results) + " |"
    return "\n".join([head, "| --- |" + " --- |" * len(results), *coverage_lines(results)])


def markdown(results: list[dict]) -> str:
    head = "| plan made from | " + " | ".join(r["fleet"] for r in results) + " |"
    lines = [head, "| --- |" + " --- |" * len(results)]
    for p in [q for q in [*ORDER, *GRID30, RISK] if any(q in r["plans"] for r in results)]:
        cells = [
            f"{r['plans'][p]['realised_load']:.1f} ({100 * r['plans'][p]['captured']:.0f} %)"
            if p in r["plans"]
            else "n/a"
            for r in results
        ]
        lines.append(f"| {LABELS[p]} | " + " | ".join(cells) + " |")
    lines.append("| VMs planned (left out: no full history or hidden day) | " + " | ".join(f"{r['vms']} ({r['vms_left_out']})" for r in results) + " |")  # fmt: skip
    lines.append("| auto's choice by MASE / by decision | " + " | ".join(f"{r['auto_by_mase']} / {r['auto_by_decision']}" for r in results) + " |")  # fmt: skip
    lines.append("| 80 % interval coverage (hourly, hidden day) | " + " | ".join(f"{100 * r['coverage_80']:.1f} %" for r in results) + " |")  # fmt: skip
    if any("coverage_80_no_anomaly_hidden_day" in r for r in results):
        lines.append("| the same, VMs without a labelled anomaly that day | " + " | ".join(f"{100 * r['coverage_80_no_anomaly_hidden_day']:.1f} % ({', '.join(r['anomalous_vms_hidden_day'])} left out)" if "coverage_80_no_anomaly_hidden_day" in r else "-" for r in results) + " |")  # fmt: skip
    if "coverage_80_days" in results[0]:
        lines.extend(coverage_lines(results))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="101,202", help="demo-data fleet seeds")
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--no-nab", action="store_true")
    parser.add_argument("--data", default=os.environ.get("ZHUGE_TEST_DATA", "../shared/data"))
    parser.add_argument("--method", default="greedy", choices=["greedy", "auto", "milp"])
    parser.add_argument("--fast", action="store_true", help="single-threaded GBM (default too)")
    parser.add_argument("--grid30", action="store_true", help="add the 30-minute grid rows")
    parser.add_argument("--risk", action="store_true", help="add auto's plan with --risk 0.8")
    parser.add_argument(
        "--coverage-days", type=int, default=0, help="also the 80 %% coverage on N held-out days"
    )
    parser.add_argument("--coverage-only", action="store_true", help="no plans, only coverage")
    args = parser.parse_args()
    if args.coverage_only and not args.coverage_days:
        parser.error("--coverage-only needs --coverage-days N")
    results = []
    with tempfile.TemporaryDirectory() as tmp:

        def demo(seed: int):
            telemetry, vms = demo_fleet(seed, args.vms, Path(tmp))
            expected = lambda ids, cut: demo_expected(seed, args.vms, ids, cut)  # noqa: E731
            return telemetry, vms, {"expected": expected}

        def nab(root: Path):
            telemetry, vms, anomalies = nab_fleet(root)
            return telemetry, vms, {"anomalies": anomalies}

        fleets = [
            (f"demo seed {seed}", lambda seed=seed: demo(seed))
            for seed in (int(s) for s in args.seeds.split(",") if s.strip())
        ]
        data = Path(args.data)
        if not args.no_nab and (data / "nab").is_dir():
            fleets.append(("NAB CPU", lambda: nab(data)))
        for name, load in fleets:
            telemetry, vms, extra = load()
            if args.coverage_only:
                cut = telemetry["timestamp"].max().floor("1D")
                gbm = {"gbm_params": {"n_jobs": 1}} if args.fast else {}
                anomalies = extra.get("anomalies")
                result = {
                    "fleet": name,
                    **coverage_by_day(telemetry, cut, args.coverage_days, gbm, anomalies),
                }
            else:
                result = run_fleet(name, telemetry, vms, args, **extra)
            results.append(result)
            print(json.dumps(result), flush=True)
    print()
    if args.coverage_only:
        print(coverage_markdown(results))
        return
    print(f"realised mean load in the chosen windows (captured share); method {args.method}")
    print(markdown(results))
    print(
        json.dumps(
            {
                "benchmark": "decision_migration",
                "cpus": len(os.sched_getaffinity(0)),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "pandas": pd.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
