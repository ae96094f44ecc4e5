"""Preparing a fleet in chunks: stage the input, clean the chunks over the cluster, roll up
host/cluster levels (the package docstring has the steps)."""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pandas as pd

from zhuge.data.preparation import ChunkSpec, detect_sample_freq, finish_level
from zhuge.data.sources import (
    UngroupedInput,
    _standardise,
    iter_series_chunks,
)
from zhuge.errors import DataError
from zhuge.jobs.context import JobContext
from zhuge.jobs.forecast.params import FleetInput
from zhuge.jobs.inputs import read_connection_sql
from zhuge.ml.forecast.chunked import (
    concat_parquet,
    prepare_part,
    read_parquet_url,
)

HASH_PARTITION_BYTES = 256 * 2**20  # input bytes per hash partition for ungrouped input
NOTE_EXAMPLES = 10  # series notes shown in a result


@dataclass
class PreparedFleetParts:
    """A fleet prepared into chunk files on the forecast grid."""

    parts: list[str]  # prepared/part-N.parquet URLs
    counts: list[int]  # series per part
    spec: ChunkSpec
    timestamp_unit: str
    report: str  # report.parquet URL (one row per input series)
    summary: dict[str, Any]
    notes: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_series(self) -> int:
        return int(sum(self.counts))


def _stage_chunks(params: FleetInput, partitions: int | None, ctx: JobContext):
    if params.sql is not None:
        rows = read_connection_sql(params.sql, params.connection or "", ctx)
        telemetry = _standardise(rows, params.columns, params.timestamp_unit, "sql query")
        frame = telemetry.frame.sort_values("series_id", kind="stable", ignore_index=True)
        codes = pd.factorize(frame["series_id"])[0]
        for first in range(0, int(codes.max(initial=-1)) + 1, params.chunk_series):
            part = frame.loc[(codes >= first) & (codes < first + params.chunk_series)]
            yield part.reset_index(drop=True), telemetry.timestamp_unit
        return
    for telemetry in iter_series_chunks(
        params.input or "",
        series_per_chunk=params.chunk_series,
        columns=params.columns,
        timestamp_unit=params.timestamp_unit,
        partitions=partitions,
    ):
        yield telemetry.frame, telemetry.timestamp_unit


def _input_bytes(url: str) -> int:
    fs, path = fsspec.core.url_to_fs(url)
    if fs.isdir(path):
        return sum(fs.size(f) for f in fs.find(path))
    return int(fs.size(path))


def _stage(
    params: FleetInput, ctx: JobContext, sample_freq: str | None
) -> tuple[list[str], str, str]:
    """Stream the input into staged chunk files; return (urls, sample_freq, timestamp unit).
    ``sample_freq`` None: detected on the first chunk."""
    fixed = sample_freq
    attempt = 0
    partitions: int | None = None
    while True:
        attempt += 1
        staged = ctx.artifacts.child(f"staged/pass-{attempt}")
        urls: list[str] = []
        sample_freq, unit, series = fixed, "", 0
        try:
            for frame, chunk_unit in _stage_chunks(params, partitions, ctx):
                unit = chunk_unit
                ctx.check_cancelled()
                if sample_freq is None:
                    sample_freq = detect_sample_freq(frame, params.freq)
                urls.append(staged.write_parquet(f"part-{len(urls):05d}.parquet", frame))
                series += int(frame["series_id"].nunique())
                ctx.progress(0, 1, f"reading input: {series:,} series")
        except UngroupedInput:
            if partitions is not None or params.input is None:
                raise
            partitions = max(4, math.ceil(_input_bytes(params.input) / HASH_PARTITION_BYTES))
            ctx.log(f"input is not grouped by series_id: hash-partitioning it into {partitions}")
            fs, path = fsspec.core.url_to_fs(staged.url)
            if fs.exists(path):
                fs.rm(path, recursive=True)
            continue
        if not urls:
            raise DataError("the input has no rows")
        return urls, sample_freq or params.freq, unit


def prepare_fleet(params: FleetInput, ctx: JobContext, spec: ChunkSpec | None = None):
    """Stage, clean and aggregate the fleet in parts (module docstring); return its parts.

    ``spec`` (from a saved model's pipeline) fixes how the series are prepared.
    """
    given = spec.sample_freq if spec is not None else params.sample_freq
    staged, sample_freq, unit = _stage(params, ctx, given)
    if spec is None:
        spec = ChunkSpec(
            freq=params.freq, sample_freq=sample_freq, agg=params.agg, level=params.level
        )
    ctx.log(
        f"{len(staged)} chunk(s) of up to {params.chunk_series} series; timestamps read as "
        f"{unit}; samples cleaned on a {spec.sample_freq} grid, {spec.agg} per {spec.freq}, "
        f"level {spec.level}"
    )
    work = ctx.artifacts.url
    parts = ctx.map(
        functools.partial(prepare_part, spec=spec, out=work, vms_url=params.vms),
        list(enumerate(staged)),
        message="chunks cleaned",
    )
    _remove(staged)  # raw copies of the input: as big as the input itself
    report = _combine_reports(parts, ctx)
    summary = _sum_counts(parts)
    if spec.level == "vm":
        urls = [p["prepared"] for p in parts if p["rows"]]
        counts = [p["series"] for p in parts if p["rows"]]
    else:
        urls, counts = _roll_up_parts(parts, spec, params.chunk_series, ctx)
    if not urls:
        raise DataError("no series has any usable value after cleaning")
    prepared = PreparedFleetParts(urls, counts, spec, unit, report, summary)
    prepared.notes = _notes(report)
    return prepared


def _remove(urls: list[str]) -> None:
    for url in urls:
        fs, path = fsspec.core.url_to_fs(url)
        fs.rm(path)


def _combine_reports(parts: list[dict[str, Any]], ctx: JobContext) -> str:
    target = ctx.artifacts.path("report.parquet")
    concat_parquet([p["report"] for p in parts], target)
    return target


def _sum_counts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for p in parts:
        total.update(p["summary"])
    return dict(total)


def _notes(report_url: str) -> list[dict[str, str]]:
    report = read_parquet_url(report_url, ["series_id", "notes"])
    noted = report.loc[report["notes"].astype(str) != ""]
    return [
        {"series_id": str(r.series_id), "notes": str(r.notes)}
        for r in noted.head(NOTE_EXAMPLES).itertuples()
    ]


def _roll_up_parts(
    parts: list[dict[str, Any]], spec: ChunkSpec, chunk: int, ctx: JobContext
) -> tuple[list[str], list[int]]:
    partials = pd.concat([read_parquet_url(p["partials"]) for p in parts], ignore_index=True)
    rolled = finish_level(partials, spec)
    del partials
    codes = pd.factorize(rolled["series_id"], sort=True)[0]
    folder = ctx.artifacts.child("prepared")
    urls, counts = [], []
    for i, first in enumerate(range(0, int(codes.max(initial=-1)) + 1, chunk)):
        part = rolled.loc[(codes >= first) & (codes < first + chunk)]
        urls.append(folder.write_parquet(f"{spec.level}-{i:05d}.parquet", part))
        counts.append(int(part["series_id"].nunique()))
    ctx.log(f"rolled {sum(counts)} {spec.level}(s) up from the VMs")
    return urls, counts


def prepare_result(prepared: PreparedFleetParts) -> dict[str, Any]:
    return {
        "series": prepared.n_series,
        "chunks": len(prepared.parts),
        "freq": prepared.spec.freq,
        "sample_freq": prepared.spec.sample_freq,
        "agg": prepared.spec.agg,
        "level": prepared.spec.level,
        "timestamp_unit": prepared.timestamp_unit,
        "cleaning": prepared.summary,
        "notes_examples": prepared.notes,
    }
