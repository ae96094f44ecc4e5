"""Fleet forecasting benchmark: zhuge ``Forecaster(model="auto")`` vs statsforecast, side by side.

Same data for every method: a synthetic fleet (``zhuge.data.demo.generate_fleet``: messy 5-min
telemetry, aggregated here to hourly means; a small generator of our own when that module is
absent) and the NAB AWS CloudWatch CPU series (5-min, off-grid, resampled to hourly means).
Each method forecasts the last ``--horizon`` hours from the history before them, on
``--windows`` rolling origins. Methods:

* zhuge auto (global LightGBM vs baselines, chosen by an internal backtest) on every series;
* statsforecast AutoARIMA, AutoETS, MSTL, called directly (``StatsForecast.forecast``) on a
  random sample of series (``--stats-sample``, ``--arima-sample``); CPU is extrapolated per
  series, and zhuge's MASE is also reported on that same sample;
* seasonal naive (a day back) as the floor.

Each method runs in a forked child so CPU-seconds and peak RSS are its own (the child's peak
RSS includes the fleet matrix it inherits). Prints a table and a final JSON line.

    .venv/bin/python benchmarks/fleet_forecast.py --vms 1000
    .venv/bin/python benchmarks/fleet_forecast.py --vms 1000 --big 100000
    .venv/bin/python benchmarks/fleet_forecast.py --platform 100000   # the job path
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, benchmarks/ is sys.path[0] and its queue.py shadows the standard library's
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time

import numpy as np
import pandas as pd

from zhuge.ml.forecast import Forecaster, mase_matrix, mase_scale, seasonal_naive, to_fleet
from zhuge.ml.forecast._fleet import Fleet

REPO = Path(__file__).resolve().parents[1]
NAB_DIR = REPO.parent / "shared" / "data" / "nab" / "realAWSCloudwatch"
MIN_HISTORY_DAYS = 2  # series scored: two days of history and actuals in the horizon


# -- data ----------------------------------------------------------------------------------


def hourly_means(frame: pd.DataFrame) -> pd.DataFrame:
    """5-min (off-grid) samples -> hourly means on the hour grid, per series."""
    hour = frame["timestamp"].dt.floor("1h")
    out = (
        frame.assign(timestamp=hour)
        .groupby(["series_id", "timestamp"], sort=False, observed=True)["value"]
        .mean()
        .reset_index()
    )
    out["value"] = out["value"].astype(np.float64)
    return out


def synthetic_hourly(vms: int, days: int, seed: int) -> tuple[pd.DataFrame, str]:
    """Hourly frame; ``series_id`` categorical (as a dictionary-encoded Parquet column reads)."""
    try:
        from zhuge.data.demo import generate_vms, iter_generate_fleet
    except ImportError:
        from zhuge.ml.forecast import synthetic_fleet

        return synthetic_fleet(vms=vms, days=days, freq="1h", seed=seed), "zhuge.ml.forecast"
    ids = pd.CategoricalDtype(generate_vms(vms, seed)["vm_id"].to_numpy())
    chunks = []
    for chunk in iter_generate_fleet(vms, days, "5min", seed, vms_per_chunk=5000):
        hourly = hourly_means(chunk)
        hourly["series_id"] = hourly["series_id"].astype(ids)
        chunks.append(hourly)
    return pd.concat(chunks, ignore_index=True), "zhuge.data.demo (5min -> 1h means)"


def nab_hourly() -> pd.DataFrame:
    frames = []
    for path in sorted(NAB_DIR.glob("*_cpu_utilization_*.csv")):
        raw = pd.read_csv(path, parse_dates=["timestamp"])
        frames.append(hourly_means(raw.assign(series_id=path.stem)))
    return pd.concat(frames, ignore_index=True)


# -- methods (each runs in a forked child) -------------------------------------------------


def run_zhuge(history: Fleet, long_history: pd.DataFrame, horizon: int, args) -> np.ndarray:
    f = Forecaster(
        model="auto",
        freq="1h",
        horizon=horizon,
        quantiles=(0.1, 0.9),
        gbm_params={"n_jobs": args.threads},
        n_jobs=args.threads,
    )
    out = f.fit(long_history).predict()
    print(f"    zhuge auto chose {f.model_}: {f.selection_['reason']}", flush=True)
    # series with no value before the origin are absent from the input, so from the output
    yhat = pd.DataFrame(
        out["yhat"].to_numpy().reshape(-1, horizon), index=out["series_id"].to_numpy()[::horizon]
    )
    return yhat.reindex(history.series_ids).to_numpy()


def run_statsforecast(history: Fleet, name: str, horizon: int) -> np.ndarray:
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoARIMA, AutoETS

    season = history.season
    # statsforecast needs gap-free series: interpolate inside, drop leading NaN
    filled = pd.DataFrame(history.values.T).interpolate(limit_area="inside").to_numpy().T
    rows, stamps, ys = [], [], []
    for i in range(history.n_series):
        ok = np.flatnonzero(~np.isnan(filled[i]))
        seg = filled[i, ok[0] : ok[-1] + 1]
        last = history.end[i] - np.timedelta64((history.n_steps - 1 - ok[-1]) * 3600, "s")
        rows.append(np.full(len(seg), i))
        stamps.append(pd.date_range(end=last, periods=len(seg), freq="h").to_numpy())
        ys.append(seg)
    frame = pd.DataFrame(
        {"unique_id": np.concatenate(rows), "ds": np.concatenate(stamps), "y": np.concatenate(ys)}
    )
    model = {
        "AutoARIMA": lambda: AutoARIMA(season_length=season),
        "AutoETS": lambda: AutoETS(season_length=season),
        "MSTL": lambda: MSTL(season_length=[season, 7 * season]),
    }[name]()
    result = StatsForecast(models=[model], freq="h", n_jobs=1).forecast(h=horizon, df=frame)
    result = result.sort_values(["unique_id", "ds"])
    return result[name].to_numpy().reshape(-1, horizon)


def _child(conn, fn, fn_args):
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    try:
        pred = fn(*fn_args)
        error = None
    except Exception as exc:  # report, do not hide: the table says it failed
        pred, error = None, f"{type(exc).__name__}: {exc}"
    conn.send(
        {
            "pred": pred,
            "error": error,
            # LightGBM's OpenMP threads count too: process_time covers every thread
            "cpu_s": time.process_time() - started_cpu,
            "wall_s": time.perf_counter() - started_wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    conn.close()


def in_child(fn, *fn_args) -> dict:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, fn_args))
    proc.start()
    result = parent.recv()
    proc.join()
    return result


# -- one data set --------------------------------------------------------------------------


def scored_rows(history: Fleet, actual: np.ndarray) -> np.ndarray:
    long_enough = history.lengths() >= MIN_HISTORY_DAYS * history.season
    return np.flatnonzero(long_enough & (~np.isnan(actual)).any(axis=1))


def to_long_history(history: Fleet) -> pd.DataFrame:
    from zhuge.ml.forecast import to_long

    start = history.end - np.timedelta64((history.n_steps - 1) * history.freq.value, "ns")
    return to_long(history.series_ids, start, history.freq, {"value": history.values}).dropna()


def benchmark(
    name: str, frame: pd.DataFrame, args, *, stats_sample: int, arima_sample: int, windows: int
):
    fleet = to_fleet(frame, freq="1h")
    h = args.horizon
    rng = np.random.default_rng(args.seed)
    rows_out = []
    totals: dict[str, dict] = {}
    for w in range(windows):
        t = fleet.n_steps - h * (windows - w)
        history, actual = fleet.head(t), fleet.values[:, t : t + h]
        scored = scored_rows(history, actual)
        stats_rows = np.sort(rng.choice(scored, min(stats_sample, len(scored)), replace=False))
        arima_rows = stats_rows[: min(arima_sample, len(stats_rows))]
        print(
            f"  [{name}] window {w + 1}/{windows}: {fleet.n_series} series, "
            f"{history.n_steps} h history, {len(scored)} scored",
            flush=True,
        )
        runs = {
            "zhuge auto": (run_zhuge, (history, to_long_history(history), h, args), None),
            "seasonal naive": (
                lambda hist: seasonal_naive(hist.values, h, hist.season),
                (history,),
                None,
            ),
            "AutoETS": (run_statsforecast, (history.take(stats_rows), "AutoETS", h), stats_rows),
            "MSTL": (run_statsforecast, (history.take(stats_rows), "MSTL", h), stats_rows),
            "AutoARIMA": (
                run_statsforecast,
                (history.take(arima_rows), "AutoARIMA", h),
                arima_rows,
            ),
        }
        preds: dict[str, np.ndarray] = {}
        for method, (fn, fn_args, sample) in runs.items():
            res = in_child(fn, *fn_args)
            n_run = fleet.n_series if sample is None else len(sample)
            agg = totals.setdefault(
                method, {"cpu_s": 0.0, "wall_s": 0.0, "rss": 0.0, "n": 0, "err": None}
            )
            agg["cpu_s"] += res["cpu_s"]
            agg["wall_s"] += res["wall_s"]
            agg["rss"] = max(agg["rss"], res["peak_rss_mb"])
            agg["n"] += n_run
            agg["err"] = agg["err"] or res["error"]
            if res["error"]:
                print(f"    {method} failed: {res['error']}", flush=True)
                continue
            full = np.full((fleet.n_series, h), np.nan)
            full[np.arange(fleet.n_series) if sample is None else sample] = res["pred"]
            preds[method] = full
        for method, pred in preds.items():
            sample = runs[method][2]
            own = scored if sample is None else sample
            zh = preds.get("zhuge auto")
            mase = mase_matrix(actual, pred, history.values, history.season)
            row = {"window": w, "method": method, "mase": float(np.nanmean(mase[own]))}
            if zh is not None and sample is not None:
                zm = mase_matrix(actual, zh, history.values, history.season)
                row["zhuge_mase_same_sample"] = float(np.nanmean(zm[sample]))
            rows_out.append(row)
    per_window = pd.DataFrame(rows_out)
    table = per_window.groupby("method", sort=False).mean(numeric_only=True).drop(columns="window")
    for method, agg in totals.items():
        table.loc[method, "series_run"] = agg["n"] / windows
        table.loc[method, "cpu_ms_per_series"] = 1000 * agg["cpu_s"] / max(agg["n"], 1)
        table.loc[method, "wall_s_per_window"] = agg["wall_s"] / windows
        table.loc[method, "extrapolated_cpu_s_all_series"] = (
            agg["cpu_s"] / max(agg["n"], 1) * fleet.n_series
        )
        table.loc[method, "peak_rss_mb"] = agg["rss"]
        table.loc[method, "error"] = agg["err"]
    return table.reset_index()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _big_child(history: pd.DataFrame, actual: pd.DataFrame, horizon: int, args) -> dict:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    f = Forecaster(
        model="auto",
        freq="1h",
        horizon=horizon,
        quantiles=(0.1, 0.9),
        gbm_params={"n_jobs": args.threads},
        n_jobs=args.threads,
    )
    out = f.fit(history).predict()
    result = {
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "chosen": f.model_,
        "reason": f.selection_["reason"],
    }
    # scoring, after the measurement: MAE on the held-out day / in-sample seasonal-naive MAE
    hist = f.history_
    scale = pd.Series(mase_scale(hist.values, hist.season), index=hist.series_ids)
    naive = seasonal_naive(hist.values, horizon, hist.season).reshape(-1)
    out["naive"] = np.repeat(np.nan, len(out))
    out.loc[out["series_id"].isin(hist.series_ids), "naive"] = naive  # same series order
    actual = actual.assign(series_id=actual["series_id"].astype(str))
    joined = out.assign(series_id=out["series_id"].astype(str)).merge(
        actual, on=["series_id", "timestamp"]
    )
    long_enough = pd.Series(hist.lengths() >= MIN_HISTORY_DAYS * hist.season, index=hist.series_ids)
    joined = joined[joined["series_id"].map(long_enough.rename(index=str))]
    errors = (
        joined.assign(
            zhuge=(joined["value"] - joined["yhat"]).abs(),
            naive=(joined["value"] - joined["naive"]).abs(),
        )
        .groupby("series_id")[["zhuge", "naive"]]
        .mean()
    )
    errors = errors.div(scale.rename(index=str).reindex(errors.index), axis=0)
    result["mase"] = float(errors["zhuge"].mean())
    result["seasonal_naive_mase"] = float(errors["naive"].mean())
    result["scored_series"] = len(errors)
    return result


def big_run(args) -> dict:
    """zhuge only, on --big VMs: fit + predict in a forked child holding the hourly frame."""
    started = time.perf_counter()
    frame, source = synthetic_hourly(args.big, args.days, args.seed)
    gen_s = time.perf_counter() - started
    print(
        f"  [big] {args.big} VMs from {source}: {len(frame):,} hourly rows in {gen_s:.0f} s",
        flush=True,
    )
    cutoff = frame["timestamp"].max() - pd.Timedelta(hours=args.horizon)
    later = frame["timestamp"] > cutoff
    history, actual = frame[~later].reset_index(drop=True), frame[later].reset_index(drop=True)
    del frame, later
    rss_before = _rss_mb()
    res = in_child(_big_child, history, actual, args.horizon, args)
    if res["error"]:
        raise RuntimeError(res["error"])
    pred = res["pred"]
    print(f"    zhuge auto chose {pred['chosen']}: {pred['reason']}", flush=True)
    return {
        "vms": args.big,
        "source": source,
        "history_rows": len(history),
        "cpu_s": round(pred["cpu_s"], 1),
        "wall_s": round(pred["wall_s"], 1),
        "cpu_ms_per_series": round(1000 * pred["cpu_s"] / args.big, 3),
        "rss_mb_holding_the_input": round(rss_before),
        "peak_rss_mb_fit_predict": round(pred["peak_rss_mb"]),
        "mase": round(pred["mase"], 4),
        "seasonal_naive_mase": round(pred["seasonal_naive_mase"], 4),
        "scored_series": pred["scored_series"],
        "generate_s": round(gen_s, 1),
    }


def platform_run(args) -> dict:
    """``zhuge forecast`` through the job path (embedded platform: store, scheduler, Dask
    workers) on --platform VMs of raw 5-minute telemetry. CPU is every process of the command
    (the CLI, the platform, the Dask workers: ``RUSAGE_CHILDREN`` once it exited); peak RSS is
    the largest sum of RSS over that process tree, sampled every 0.2 s."""
    import subprocess
    import tempfile

    import psutil

    from zhuge.data import write_fleet

    folder = Path(args.platform_dir or tempfile.mkdtemp(prefix="zhuge-platform-bench-"))
    started = time.perf_counter()
    files = write_fleet(folder / "fleet", args.platform, args.days, "5min", args.seed)
    gen_s = time.perf_counter() - started
    print(f"  [platform] {files.series:,} VMs, {files.rows:,} samples in {gen_s:.0f} s", flush=True)
    env = {
        **os.environ,
        "ZHUGE_EMBEDDED": "1",
        "ZHUGE_HOME": str(folder / "home"),
        "ZHUGE_URL": "http://127.0.0.1:9",
    }
    command = [
        str(Path(sys.executable).with_name("zhuge")), "forecast",
        "--input", files.telemetry, "--freq", "1h", "--horizon", f"{args.horizon}h",
        "--quantiles", "0.1,0.9", "--out", str(folder / "forecast.parquet"), "--json",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    peak = 0.0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else b""
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"zhuge forecast failed: {out.decode()[-2000:]}")
    result = json.loads(out)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "vms": args.platform,
        "samples": files.rows,
        "command": " ".join(command),
        "wall_s": round(wall, 1),
        "cpu_s_all_processes": round(cpu, 1),
        "cpu_ms_per_series": round(1000 * cpu / args.platform, 3),
        "peak_rss_mb_process_tree": round(peak),
        "chosen": result["model"]["chosen"],
        "reason": result["model"]["reason"],
        "chunks": result["prepare"]["chunks"],
        "forecast_rows": result["rows"],
        "generate_s": round(gen_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--horizon", type=int, default=24, help="hours")
    parser.add_argument("--windows", type=int, default=3, help="rolling origins (synthetic)")
    parser.add_argument("--nab-windows", type=int, default=3)
    parser.add_argument("--stats-sample", type=int, default=100, help="series for ETS/MSTL")
    parser.add_argument("--arima-sample", type=int, default=30, help="series for AutoARIMA")
    parser.add_argument("--big", type=int, default=0, help="zhuge alone on this many VMs")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-nab", action="store_true")
    parser.add_argument(
        "--platform", type=int, default=0,
        help="only `zhuge forecast` through the job path, on this many VMs of raw 5-min data",
    )  # fmt: skip
    parser.add_argument("--platform-dir", default=None, help="where --platform writes its data")
    args = parser.parse_args()

    machine = {
        "python": platform.python_version(),
        "cpus": len(os.sched_getaffinity(0)),
        "processor": platform.processor() or platform.machine(),
    }
    print(f"machine: {machine}", flush=True)
    results: dict = {"machine": machine, "args": vars(args)}
    if args.platform:
        results["platform"] = platform_run(args)
        print(f"platform: {results['platform']}", flush=True)
        print(json.dumps(results, default=str))
        return
    pd.set_option("display.width", 200)
    frame, source = synthetic_hourly(args.vms, args.days, args.seed)
    print(f"synthetic fleet: {args.vms} VMs x {args.days} days from {source}", flush=True)
    synth = benchmark(
        "synthetic",
        frame,
        args,
        stats_sample=args.stats_sample,
        arima_sample=args.arima_sample,
        windows=args.windows,
    )
    print(synth.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    results["synthetic"] = synth.to_dict(orient="records")
    if not args.skip_nab and NAB_DIR.is_dir():
        nab = benchmark(
            "nab", nab_hourly(), args, stats_sample=100, arima_sample=100, windows=args.nab_windows
        )
        print(nab.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
        results["nab"] = nab.to_dict(orient="records")
    if args.big:
        results["big"] = big_run(args)
        print(f"big: {results['big']}", flush=True)
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    sys.exit(main())
