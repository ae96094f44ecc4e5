"""Fleet forecasting in chunks of whole series, with files between the steps.

The forecast jobs never hold a fleet in memory. The telemetry is read as a stream of chunks
of ``chunk_series`` whole series and each step works on one chunk file at a time:

``staged/part-N``  raw samples of a chunk, in the canonical columns (written by the job
                   while it streams the input);
``prepared/part-N`` the chunk cleaned and on the forecast grid (:func:`prepare_part`), with
                   ``reports/part-N`` saying per series what cleaning did;
``forecast/part-N`` its forecast (:func:`predict_part`), or ``backtest/part-N`` its
                   per-series backtest scores (:func:`backtest_part`).

Every ``*_part`` function is a module-level function of plain arguments that reads its input
file and writes its output file itself, so a job can spread them over Dask workers
(``JobContext.map``) and only small summaries travel back. Peak memory is about one chunk
per worker, whatever the fleet's size.

A global model is trained once on a bounded random sample of series (:func:`sample_series`,
``train_series`` of them) and then predicts every chunk; statistical models and baselines
learn nothing fleet-wide, so a sample costs them nothing either.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zhuge.artifacts import ArtifactDir
from zhuge.data.preparation import ChunkSpec, level_partials, prepare_chunk
from zhuge.errors import DataError
from zhuge.ml.forecast._fleet import to_fleet
from zhuge.ml.forecast.backtest import backtest_fleet
from zhuge.ml.forecast.forecaster import Forecaster
from zhuge.ml.forecast.persistence import load, save

__all__ = [
    "PIPELINE_FILE",
    "Pipeline",
    "backtest_part",
    "concat_parquet",
    "load_pipeline",
    "parquet_columns",
    "predict_part",
    "prepare_part",
    "read_parquet_url",
    "sample_series",
    "save_model",
]

PIPELINE_FILE = "pipeline.json"


@dataclass(frozen=True)
class Pipeline:
    """How a saved model's input was prepared; a ``--model-from`` forecast repeats it."""

    freq: str
    horizon: str  # as the user wrote it ("24h")
    horizon_steps: int
    agg: str
    level: str
    sample_freq: str
    target: str
    buckets: list[float]
    quantiles: list[float]

    def chunk_spec(self) -> ChunkSpec:
        return ChunkSpec(
            freq=self.freq, sample_freq=self.sample_freq, agg=self.agg, level=self.level
        )  # type: ignore[arg-type]


def read_parquet_url(url: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh, columns=list(columns) if columns else None).to_pandas()


def parquet_columns(url: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as fh:
        return list(pq.read_schema(fh).names)


def _write(folder: str, name: str, frame: pd.DataFrame) -> str:
    return ArtifactDir(folder).write_parquet(name, frame)


def prepare_part(
    item: tuple[int, str], *, spec: ChunkSpec, out: str, vms_url: str | None = None
) -> dict[str, Any]:
    """Clean staged chunk ``item = (index, url)``; write its series (or, for host/cluster
    level, its partial sums) and its cleaning report under ``out``; return counts."""
    index, url = item
    raw = read_parquet_url(url)
    series, cleaned = prepare_chunk(raw, spec)
    name = f"part-{index:05d}.parquet"
    result: dict[str, Any] = {
        "index": index,
        "report": _write(f"{out}/reports", name, cleaned.report),
        "summary": cleaned.summary(),
    }
    if spec.level == "vm":
        result["series"] = int(series["series_id"].nunique())
        result["rows"] = len(series)
        result["prepared"] = _write(f"{out}/prepared", name, series)
    else:
        vms = read_parquet_url(vms_url) if vms_url else None
        result["partials"] = _write(f"{out}/partials", name, level_partials(series, spec, vms))
    return result


def sample_series(
    parts: Sequence[str], counts: Sequence[int], n: int, *, seed: int = 0
) -> pd.DataFrame:
    """Rows of ``n`` series drawn at random from the prepared ``parts`` (all when fewer);
    memory holds one part plus the sample."""
    total = int(sum(counts))
    rng = np.random.default_rng(seed)
    take = total if n >= total else n
    chosen = np.sort(rng.choice(total, size=take, replace=False))
    frames, start = [], 0
    for url, count in zip(parts, counts, strict=True):
        wanted = chosen[(chosen >= start) & (chosen < start + count)] - start
        start += count
        if len(wanted) == 0:
            continue
        frame = read_parquet_url(url, ["series_id", "timestamp", "value"])
        ids = pd.unique(frame["series_id"])
        frames.append(frame.loc[frame["series_id"].isin(set(ids[wanted]))])
    return pd.concat(frames, ignore_index=True)


def save_model(forecaster: Forecaster, folder: ArtifactDir, pipeline: Pipeline) -> dict[str, Any]:
    """Save the fitted forecaster and how its input was prepared (both hashed in the manifest)."""
    return save(
        forecaster, folder, extra={PIPELINE_FILE: json.dumps(asdict(pipeline), indent=2).encode()}
    )


def load_pipeline(folder: ArtifactDir) -> Pipeline:
    _, files = folder.load()
    if PIPELINE_FILE not in files:
        raise DataError(f"model at {folder.url} has no {PIPELINE_FILE}: it was not saved by a job")
    return Pipeline(**json.loads(files[PIPELINE_FILE]))


def predict_part(item: tuple[int, str], *, model: str, out: str) -> dict[str, Any]:
    """Forecast prepared chunk ``item = (index, url)`` with the saved model at ``model``;
    write ``out/part-N.parquet``; return row counts and how many series each model served."""
    index, url = item
    forecaster = load(model)
    frame = read_parquet_url(url, ["series_id", "timestamp", "value"])
    forecast = forecaster.predict(frame)
    _write(out, f"part-{index:05d}.parquet", forecast)
    per_series = forecast.drop_duplicates("series_id")["model"]
    return {
        "index": index,
        "rows": len(forecast),
        "series": len(per_series),
        "models": dict(Counter(per_series.astype(str))),
    }


def backtest_part(
    item: tuple[int, str],
    *,
    out: str,
    freq: str,
    horizon: int,
    windows: int,
    models: Sequence[str],
    quantiles: Sequence[float],
    buckets: Sequence[float] | None,
    forecaster_params: dict[str, Any],
    model: str | None = None,
    model_name: str = "model",
) -> dict[str, Any]:
    """Rolling-origin backtest of one prepared chunk; per-series scores to ``out``.
    ``model``: a saved model's folder, scored frozen as ``model_name`` beside ``models``."""
    index, url = item
    frame = read_parquet_url(url, ["series_id", "timestamp", "value"])
    fleet = to_fleet(frame, freq=freq)
    started = time.process_time()
    result = backtest_fleet(
        fleet,
        horizon=horizon,
        windows=windows,
        models=models,
        quantiles=quantiles,
        buckets=buckets,
        fitted={model_name: load(model)} if model is not None else None,
        **forecaster_params,
    )
    _write(out, f"part-{index:05d}.parquet", result.per_series)
    return {
        "index": index,
        "series": fleet.n_series,
        "cpu_seconds": dict(
            zip(result.overall["model"], result.overall["cpu_seconds"], strict=True)
        ),
        "total_cpu_seconds": time.process_time() - started,
        "chosen": {
            name: [s.get("chosen") for s in selections]
            for name, selections in result.selections.items()
            if name == "auto"
        },
        "reasons": {
            name: [s.get("reason") for s in selections]
            for name, selections in result.selections.items()
            if name == "auto"
        },
    }


def concat_parquet(urls: Iterable[str], target: str) -> int:
    """Append Parquet files into one at ``target``, one file in memory at a time; rows written."""
    fs, path = fsspec.core.url_to_fs(target)
    rows = 0
    writer: pq.ParquetWriter | None = None
    with fs.open(path, "wb") as fh:
        try:
            for url in urls:
                table = pa.Table.from_pandas(read_parquet_url(url), preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(fh, table.schema)
                writer.write_table(table.cast(writer.schema))
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
    return rows


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()
