"""LSTM forecaster on CPU vs GPU, with the global GBM beside it as the peer.

For each fleet size: a synthetic hourly fleet (``zhuge.ml.forecast.synthetic_fleet``,
``--days`` days), every model fitted on all but the last ``--horizon`` hours and scored on
them (mean MASE over series; seasonal naive as the floor). Timed: fit and predict, wall
seconds (a GPU's work is synchronised before each clock read: predictions come back to the
host). The LSTM runs with its default options (``LSTMOptions``) on the CPU in fp32, and on
CUDA in bf16 autocast and in fp32; the GBM with its defaults on all CPU cores. Prints the
machine (CPU model and cores, torch threads, GPU name), a table and a final JSON line.

    .venv/bin/python benchmarks/lstm_gpu.py --vms 1000 10000
"""

from __future__ import annotations

import sys
from pathlib import Path

# run as a script, benchmarks/ is sys.path[0] and its queue.py shadows the standard library's
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import os
import platform
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from zhuge.ml.forecast import mase_matrix, seasonal_naive, synthetic_fleet, to_fleet
from zhuge.ml.forecast._fleet import Fleet
from zhuge.ml.forecast.gbm import GBMOptions
from zhuge.ml.forecast.models import GBMModel
from zhuge.ml.forecast.torch_lstm import LSTMModel, LSTMOptions, require_torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(torch: Any) -> dict[str, Any]:
    info = {
        "cpu": cpu_name(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
        info["cuda"] = torch.version.cuda
    return info


def run(
    name: str,
    make: Callable[[], Any],
    history: Fleet,
    actual: np.ndarray,
    horizon: int,
    sync: Callable[[], None],
) -> dict[str, Any]:
    row: dict[str, Any] = {"method": name}
    try:
        model = make()
        sync()
        started = time.perf_counter()
        model.fit(history, horizon)
        sync()
        row["fit_s"] = time.perf_counter() - started
        started = time.perf_counter()
        forecast = model.predict(history, horizon)
        row["predict_s"] = time.perf_counter() - started
        row["mase"] = float(
            np.nanmean(mase_matrix(actual, forecast, history.values, history.season))
        )
        for key in ("epochs_", "best_epoch_", "n_windows_", "precision_"):
            if hasattr(model, key):
                row[key.rstrip("_")] = getattr(model, key)
    except Exception as exc:  # a failed method is reported, the others still run
        row["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=LSTMOptions().hidden, help="LSTM width")
    parser.add_argument("--no-cpu-lstm", action="store_true", help="skip the CPU LSTM")
    parser.add_argument("--no-gbm", action="store_true")
    args = parser.parse_args()

    torch = require_torch()
    info = machine(torch)
    print("machine:", json.dumps(info), flush=True)
    options = {**LSTMOptions().__dict__, "hidden": args.hidden}
    print("lstm options:", json.dumps(options), flush=True)
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    h = args.horizon
    results = []
    for vms in args.vms:
        fleet = to_fleet(
            synthetic_fleet(vms=vms, days=args.days, freq="1h", seed=args.seed), freq="1h"
        )
        history = fleet.head(fleet.n_steps - h)
        actual = fleet.values[:, -h:]
        naive = seasonal_naive(history.values, h, history.season)
        naive_mase = float(np.nanmean(mase_matrix(actual, naive, history.values, 24)))
        methods: list[tuple[str, Callable[[], Any]]] = []
        if cuda:
            # first CUDA use pays for context creation and cuDNN loading: not the model's cost
            LSTMModel(device="cuda", max_epochs=1, max_windows=512).fit(history, h)
            methods += [
                (
                    "lstm cuda bf16",
                    lambda: LSTMModel(device="cuda", precision="bf16", hidden=args.hidden),
                ),
                (
                    "lstm cuda fp32",
                    lambda: LSTMModel(device="cuda", precision="fp32", hidden=args.hidden),
                ),
            ]
        if not args.no_cpu_lstm:
            methods.append(("lstm cpu fp32", lambda: LSTMModel(device="cpu", hidden=args.hidden)))
        if not args.no_gbm:
            methods.append(("gbm cpu", lambda: GBMModel(GBMOptions())))
        rows = [{"method": "seasonal_naive", "mase": naive_mase}]
        for name, make in methods:
            row = run(name, make, history, actual, h, sync)
            rows.append(row)
            print(vms, json.dumps(row), flush=True)
        for row in rows:
            results.append({"vms": vms, **row})

    print()
    print("| series | method | fit s | predict s | MASE | epochs (best) |")
    print("| ---: | --- | ---: | ---: | ---: | --- |")
    for r in results:
        if "error" in r:
            print(f"| {r['vms']} | {r['method']} | failed: {r['error'][:60]} | | | |")
            continue
        fit = f"{r['fit_s']:.1f}" if "fit_s" in r else "-"
        pred = f"{r['predict_s']:.2f}" if "predict_s" in r else "-"
        ep = f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else "-"
        print(f"| {r['vms']} | {r['method']} | {fit} | {pred} | {r['mase']:.3f} | {ep} |")
    print(json.dumps({"machine": info, "results": results}))


if __name__ == "__main__":
    main()
