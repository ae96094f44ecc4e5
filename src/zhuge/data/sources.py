"""Where fleet telemetry comes from: CSV/Parquet at any fsspec URL, or a SQL query.

Every reader returns the same long format, one row per sample::

    series_id, timestamp, value [, host_id, cluster_id]

with ``timestamp`` as naive UTC ``datetime64[ns]`` and ``value`` as float64. Users' files name
these columns their own way, so each reader takes a column mapping (canonical name → the name
in the file); :func:`parse_column_map` turns the CLI spelling ``"series_id=vm,value=cpu"``
into one.

Timestamps arrive as ISO strings or as epoch numbers whose unit nobody wrote down. With
``timestamp_unit="auto"`` the unit is detected from the magnitude of the numbers and *reported*
in :attr:`Telemetry.timestamp_unit`, so a job can log what it assumed instead of guessing
silently.

Fleets larger than memory are read with :func:`iter_series_chunks`, which never splits a series
across chunks. That needs rows grouped by ``series_id`` (all rows of a series contiguous, as
:func:`zhuge.data.demo.write_fleet` writes them, or as ``ORDER BY series_id`` gives); the
iterator checks this and refuses input that is not, rather than cleaning half-series. For
ungrouped input, pass ``partitions=N``: rows are first spread over N temporary Parquet files
by a hash of ``series_id`` (one streaming pass), then each file is read whole.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zhuge.errors import DataError, MissingDependency

__all__ = [
    "CANONICAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "Telemetry",
    "TimestampUnit",
    "UngroupedInput",
    "iter_series_chunks",
    "parse_column_map",
    "parse_timestamps",
    "read_csv",
    "read_sql",
    "read_telemetry",
    "sniff_csv",
    "sniff_format",
]

REQUIRED_COLUMNS = ("series_id", "timestamp", "value")
OPTIONAL_COLUMNS = ("host_id", "cluster_id")
CANONICAL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

TimestampUnit = Literal["auto", "s", "ms", "us", "ns", "iso"]
FileFormat = Literal["auto", "csv", "parquet"]

# Epoch numbers for dates between 2001 and 2286 have these magnitudes; each unit is 1000x the
# last, so the bands never overlap and "auto" can tell them apart from the median value.
_EPOCH_UNIT_BANDS = (("s", 1e9, 1e10), ("ms", 1e12, 1e13), ("us", 1e15, 1e16), ("ns", 1e18, 1e19))


class UngroupedInput(DataError):
    """Rows of one series are not contiguous; read with ``partitions=N`` instead."""


@dataclass(frozen=True)
class Telemetry:
    """A long telemetry frame and what the reader assumed while reading it."""

    frame: pd.DataFrame
    timestamp_unit: str  # "iso", "s", "ms", "us", "ns" or "datetime" (already typed)
    source: str

    @property
    def n_series(self) -> int:
        return int(self.frame["series_id"].nunique())


def parse_column_map(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"series_id=vm,timestamp=ts,value=cpu"`` (or a dict) → ``{canonical: source}``.

    Only canonical names may be mapped; a typo such as ``serie_id=vm`` is refused rather than
    silently ignored, because it would surface later as a confusing "missing column".
    """
    if spec is None:
        return {}
    if isinstance(spec, str):
        mapping: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            canonical, sep, source = (s.strip() for s in part.partition("="))
            if not sep or not canonical or not source:
                raise DataError(
                    f"column mapping {part!r} is not of the form canonical=source "
                    f"(e.g. 'series_id=vm,timestamp=ts,value=cpu')"
                )
            mapping[canonical] = source
    else:
        mapping = dict(spec)
    unknown = sorted(set(mapping) - set(CANONICAL_COLUMNS))
    if unknown:
        raise DataError(
            f"column mapping names unknown column(s) {unknown}; "
            f"mappable columns are {list(CANONICAL_COLUMNS)}"
        )
    return mapping


def parse_timestamps(
    values: pd.Series, unit: TimestampUnit = "auto", *, column: str = "timestamp"
) -> tuple[pd.Series, str]:
    """Parse a timestamp column into naive UTC ``datetime64[ns]``; also return the unit used.

    Time-zone aware input is converted to UTC and the zone dropped: the whole data layer works
    on one clock so that series from different regions line up on one grid.
    """
    if unit not in ("auto", "s", "ms", "us", "ns", "iso"):
        raise DataError(f"timestamp_unit must be auto, s, ms, us, ns or iso, not {unit!r}")
    if len(values) == 0:
        return pd.Series(values, dtype="datetime64[ns]"), "iso" if unit == "auto" else unit
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]"), "datetime"
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.astype("datetime64[ns]"), "datetime"

    numeric = None
    if unit != "iso":
        if pd.api.types.is_numeric_dtype(values.dtype):
            numeric = values.astype("float64")
        elif unit != "auto":
            numeric = pd.to_numeric(values, errors="coerce")
        else:
            # Strings that are all numbers ("1392388020") are epochs, not dates.
            probe = pd.to_numeric(values.head(1000), errors="coerce")
            if probe.notna().all():
                numeric = pd.to_numeric(values, errors="coerce")
    if numeric is not None:
        return _from_epoch(numeric, unit, column)
    if unit not in ("auto", "iso"):
        raise DataError(f"column {column!r} holds no numbers, so it cannot be epoch {unit}")
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        bad = _first_unparseable(values)
        raise DataError(
            f"column {column!r} is neither ISO timestamps nor epoch numbers "
            f"(first value that does not parse: {bad!r})"
        ) from exc
    return parsed.dt.tz_localize(None).astype("datetime64[ns]"), "iso"


def _from_epoch(numeric: pd.Series, unit: str, column: str) -> tuple[pd.Series, str]:
    if numeric.isna().any():
        bad_at = int(np.flatnonzero(numeric.isna().to_numpy())[0])
        raise DataError(f"column {column!r} has a missing or non-numeric epoch at row {bad_at}")
    if unit == "auto":
        magnitude = float(np.median(np.abs(numeric.to_numpy())))
        for name, low, high in _EPOCH_UNIT_BANDS:
            if low <= magnitude < high:
                unit = name
                break
        else:
            raise DataError(
                f"column {column!r} holds numbers of magnitude {magnitude:.3g}, which is no "
                "epoch in seconds, ms, us or ns between 2001 and 2286; pass timestamp_unit"
            )
    else:
        _check_epoch_unit(numeric, unit, column)
    factor = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    raw = numeric.to_numpy()
    ns = np.round(raw * factor).astype("int64") if raw.dtype.kind == "f" else raw * factor
    return pd.Series(ns.astype("datetime64[ns]"), index=numeric.index), unit


def _likely_epoch_unit(magnitude: float) -> str | None:
    for name, low, high in _EPOCH_UNIT_BANDS:
        if low <= magnitude < high:
            return name
    return None


def _check_epoch_unit(numeric: pd.Series, unit: str, column: str) -> None:
    """Refuse an explicit unit the numbers cannot be in: one that overflows the 1677-2262
    range of ``datetime64[ns]``, or that puts the median in another unit's band of 2001-2286.
    Said with the unit the numbers look like, rather than as an overflow found later."""
    values = np.abs(numeric.to_numpy(dtype="float64"))
    magnitude = float(np.median(values))
    likely = _likely_epoch_unit(magnitude)
    factor = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit]
    overflows = bool(values.max() * factor >= 2**63)
    if overflows or (likely is not None and likely != unit):
        order = [name for name, _, _ in _EPOCH_UNIT_BANDS]
        large = overflows or order.index(likely or unit) > order.index(unit)
        if likely is not None:
            stamp = pd.Timestamp(int(magnitude), unit=likely).strftime("%Y-%m-%d")
            hint = f": they look like epoch {likely} ({stamp}); pass timestamp_unit={likely!r}"
        else:
            hint = "; pass timestamp_unit='auto' to detect the unit"
        raise DataError(
            f"column {column!r} holds numbers of magnitude {magnitude:.3g}, too "
            f"{'large' if large else 'small'} for epoch {unit}{hint}",
            details={"params": ["timestamp_unit"], "likely_unit": likely},
        )


def _first_unparseable(values: pd.Series) -> object:
    for value in values.head(100_000):
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError):
            return value
    return values.iloc[0]


def _standardise(
    frame: pd.DataFrame,
    columns: Mapping[str, str],
    timestamp_unit: TimestampUnit,
    source: str,
    series_id: str | None = None,
) -> Telemetry:
    """Rename, check and type a raw frame into the canonical long format."""
    mapping = parse_column_map(columns)
    present = list(frame.columns)
    wanted = {c: mapping.get(c, c) for c in CANONICAL_COLUMNS}
    needed = [
        c
        for c in CANONICAL_COLUMNS
        if (c in REQUIRED_COLUMNS and not (c == "series_id" and series_id is not None))
        or c in mapping
    ]
    missing = [
        c if wanted[c] == c else f"{c} (as {wanted[c]!r})"
        for c in needed
        if wanted[c] not in present
    ]
    if missing:
        absent = [c for c in needed if wanted[c] not in present]
        raise DataError(
            f"{source}: column(s) {', '.join(missing)} not found; columns present: {present}"
            + _mapping_hint(frame, absent, mapping),
            details={"params": ["columns", "sep"], "columns_present": present},
        )
    keep = {wanted[c]: c for c in CANONICAL_COLUMNS if wanted[c] in present}
    out = frame[list(keep)].rename(columns=keep)
    if series_id is not None:
        out["series_id"] = series_id
    if out["series_id"].isna().any():
        raise DataError(
            f"{source}: column 'series_id' has {int(out['series_id'].isna().sum())} missing values"
        )
    out["timestamp"], unit = parse_timestamps(
        out["timestamp"], timestamp_unit, column=wanted["timestamp"]
    )
    if not pd.api.types.is_float_dtype(out["value"].dtype):
        converted = pd.to_numeric(out["value"], errors="coerce")
        bad = converted.isna() & out["value"].notna()
        if bad.any():
            example = out["value"][bad].iloc[0]
            raise DataError(
                f"{source}: column {wanted['value']!r} has {int(bad.sum())} non-numeric "
                f"value(s), e.g. {example!r}"
            )
        out["value"] = converted
    out["value"] = out["value"].astype("float64")
    order = [c for c in CANONICAL_COLUMNS if c in out.columns]
    return Telemetry(out[order].reset_index(drop=True), unit, source)


# Names people give the canonical columns (lower case, compared without _ - and spaces).
_SYNONYMS = {
    "series_id": ("vm", "vmid", "vmname", "id", "series", "instance", "host", "name", "server"),
    "timestamp": ("ts", "time", "date", "datetime", "zeit", "zeitstempel", "datum", "epoch"),
    "value": ("cpu", "load", "util", "utilization", "usage", "cpupct", "auslastung", "wert"),
    "host_id": ("host", "hostname", "node", "hypervisor"),
    "cluster_id": ("cluster", "clustername", "pool"),
}


def _key(name: object) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


def _mapping_hint(frame: pd.DataFrame, absent: list[str], mapping: Mapping[str, str]) -> str:
    """``; map them: columns='series_id=vm,timestamp=Zeit'``: each absent column paired with
    the closest unused column of the input, by name (a known synonym, then similar spelling),
    else by content (text for series_id, dates for timestamp, numbers for value)."""
    if len(frame.columns) == 1:
        name = str(frame.columns[0])
        seps = [sep for sep in _SEPARATORS if sep in name]
        if seps:  # one column named "a;b;c": read with the wrong separator
            return f"; the file looks {seps[0]!r}-separated: pass sep={seps[0]!r}"
    unused = [c for c in frame.columns if c not in mapping.values()]
    chosen: dict[str, object] = {}
    for canonical in absent:
        free = [c for c in unused if c not in chosen.values()]
        by_name = [c for c in free if _key(c) in _SYNONYMS.get(canonical, ())]
        close = difflib.get_close_matches(_key(canonical), [_key(c) for c in free], n=1, cutoff=0.6)
        if by_name:
            chosen[canonical] = by_name[0]
        elif close:
            chosen[canonical] = next(c for c in free if _key(c) == close[0])
        elif canonical in REQUIRED_COLUMNS:
            fit = next((c for c in free if _looks_like(frame[c], canonical)), None)
            if fit is not None:
                chosen[canonical] = fit
    if not chosen:
        return "; map them with columns='series_id=...,timestamp=...,value=...'"
    pairs = {**{c: s for c, s in mapping.items()}, **chosen}
    spec = ",".join(f"{c}={pairs[c]}" for c in CANONICAL_COLUMNS if c in pairs)
    return f"; map them, perhaps: columns={spec!r}"


def _looks_like(values: pd.Series, canonical: str) -> bool:
    sample = values.dropna().head(200)
    if sample.empty:
        return False
    if canonical == "value":
        return pd.api.types.is_numeric_dtype(sample.dtype) or bool(
            pd.to_numeric(sample.astype(str).str.replace(",", "."), errors="coerce").notna().all()
        )
    if canonical == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(sample.dtype):
            return True
        if pd.api.types.is_numeric_dtype(sample.dtype):
            return _likely_epoch_unit(float(np.median(np.abs(sample)))) is not None
        parsed = pd.to_datetime(sample.astype(str), errors="coerce", format="ISO8601")
        return bool(parsed.notna().all())
    # series_id: text that repeats
    return sample.dtype == object and sample.nunique() < len(sample)


# Separators tried, in the order a tie is broken; a decimal comma is only possible without ",".
_SEPARATORS = (",", ";", "\t", "|")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")
_DECIMAL_POINT = re.compile(r"^-?\d+\.\d+$")


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written: its separator and decimal mark."""

    sep: str = ","
    decimal: str = "."


def sniff_csv(sample: str, sep: str | None = None) -> CsvDialect:
    """The separator (``, ; tab |``: the one splitting every line of ``sample`` into the same
    number of fields, the most fields winning) and decimal mark (``,`` when fields look like
    ``12,5`` and none like ``12.5``) of CSV text such as a file's first 64 KiB. A given
    ``sep`` is kept; only the decimal mark is then detected."""
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    if len(lines) > 1 and not sample.endswith("\n"):
        lines = lines[:-1]  # the sample may have cut the last line
    if sep is None:
        sep, best = ",", 1
        for candidate in _SEPARATORS:
            counts = {len(row) for row in csv.reader(lines, delimiter=candidate)}
            if len(counts) == 1 and (fields := counts.pop()) > best:
                sep, best = candidate, fields
    decimal = "."
    if sep != ",":
        fields = [f.strip() for row in csv.reader(lines[1:], delimiter=sep) for f in row]
        if any(_DECIMAL_COMMA.match(f) for f in fields) and not any(
            _DECIMAL_POINT.match(f) for f in fields
        ):
            decimal = ","
    return CsvDialect(sep, decimal)


def _dialect(fs: fsspec.AbstractFileSystem, path: str, sep: str | None) -> CsvDialect:
    with fs.open(path, "rb", compression="infer") as fh:
        sample = fh.read(64 * 1024).decode("utf-8", errors="replace")
    return sniff_csv(sample, sep)


def read_csv(
    url: str | os.PathLike[str],
    *,
    sep: str | None = None,
    nrows: int | None = None,
    chunksize: int | None = None,
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """A CSV file (local path or fsspec URL, compressed or not) read with its own separator
    and decimal mark (:func:`sniff_csv`), or with ``sep`` when given. With ``chunksize``, an
    iterator of frames."""
    url = os.fspath(url)
    if sep is not None and len(sep) != 1:
        raise DataError(f"sep must be one character, not {sep!r}", details={"params": ["sep"]})
    fs, path = _filesystem(url)
    dialect = _dialect(fs, path, sep)
    options = {"sep": dialect.sep, "decimal": dialect.decimal, "nrows": nrows}
    if chunksize is None:
        with fs.open(path, "rb", compression="infer") as fh:
            return pd.read_csv(fh, **options)
    return _csv_chunks(fs, path, options, chunksize)


def _csv_chunks(
    fs: fsspec.AbstractFileSystem, path: str, options: dict, chunksize: int
) -> Iterator[pd.DataFrame]:
    with fs.open(path, "rb", compression="infer") as fh:
        yield from pd.read_csv(fh, chunksize=chunksize, **options)


def _format_of(url: str, fmt: FileFormat) -> Literal["csv", "parquet"]:
    if fmt != "auto":
        return fmt
    name = url.lower().rstrip("/")
    for suffix in (".gz", ".bz2", ".zst", ".xz"):
        name = name.removesuffix(suffix)
    if name.endswith((".csv", ".txt", ".tsv")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if "." not in name.rsplit("/", 1)[-1]:
        return sniff_format(url)  # a folder, or a file named by its content (a dataset)
    raise DataError(f"cannot tell the format of {url!r}; pass format='csv' or 'parquet'")


def sniff_format(url: str) -> Literal["csv", "parquet"]:
    """A folder is a partitioned Parquet dataset; a file is Parquet if it starts with the
    Parquet magic ``PAR1``, else CSV (a missing file: Parquet, and its reader says so)."""
    fs, path = _filesystem(url)
    try:
        if fs.isdir(path):
            return "parquet"
        with fs.open(path, "rb") as fh:
            return "parquet" if fh.read(4) == b"PAR1" else "csv"
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return "parquet"


def _filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return fsspec.core.url_to_fs(os.fspath(url))
    except ImportError as exc:
        raise MissingDependency(
            f"reading {url!r} needs an fsspec backend that is not installed "
            "(for s3:// install zhuge[s3])"
        ) from exc


def read_telemetry(
    url: str | os.PathLike[str],
    *,
    columns: Mapping[str, str] | str | None = None,
    timestamp_unit: TimestampUnit = "auto",
    format: FileFormat = "auto",
    series_id: str | None = None,
    sep: str | None = None,
) -> Telemetry:
    """Read a whole CSV or Parquet file (or Parquet folder) at a local path or fsspec URL.

    ``series_id`` gives every row one constant id, for single-series files such as NAB's
    ``timestamp,value`` CSVs. A CSV's separator and decimal comma are detected
    (:func:`sniff_csv`) unless ``sep`` is given.
    """
    url = os.fspath(url)
    fmt = _format_of(url, format)
    fs, path = _filesystem(url)
    if not fs.exists(path):
        raise DataError(f"telemetry not found at {url!r}")
    try:
        if fmt == "csv":
            frame = read_csv(url, sep=sep)
        else:
            frame = pq.read_table(path, filesystem=fs).to_pandas()
    except (pa.ArrowInvalid, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {url!r} as {fmt}: {exc}") from exc
    return _standardise(frame, columns or {}, timestamp_unit, url, series_id)


def read_sql(
    query: str,
    db_url: str,
    *,
    columns: Mapping[str, str] | str | None = None,
    timestamp_unit: TimestampUnit = "auto",
    params: Mapping[str, object] | None = None,
) -> Telemetry:
    """Run ``query`` read-only on the database at ``db_url`` (PostgreSQL, SQLite, MySQL) and
    read the rows: one statement in a read-only transaction with a time limit, as
    :mod:`zhuge.data.sql` describes.

    Bind user values through ``params`` (``WHERE cluster = :cluster``), never by formatting
    them into the query.
    """
    from zhuge.data.sql import read_only_query

    frame = read_only_query(db_url, query, params=params)
    return _standardise(frame, columns or {}, timestamp_unit, "sql query")


def _iter_raw_batches(
    url: str, fmt: Literal["csv", "parquet"], batch_rows: int, sep: str | None = None
) -> Iterator[pd.DataFrame]:
    fs, path = _filesystem(url)
    if not fs.exists(path):
        raise DataError(f"telemetry not found at {url!r}")
    if fmt == "csv":
        yield from read_csv(url, sep=sep, chunksize=batch_rows)
        return
    files = (
        sorted(f for f in fs.find(path) if f.endswith((".parquet", ".pq")))
        if fs.isdir(path)
        else [path]
    )
    for file in files:
        with fs.open(file, "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=batch_rows):
                yield batch.to_pandas()


def iter_series_chunks(
    url: str | os.PathLike[str],
    *,
    series_per_chunk: int = 5000,
    columns: Mapping[str, str] | str | None = None,
    timestamp_unit: TimestampUnit = "auto",
    format: FileFormat = "auto",
    batch_rows: int = 1_000_000,
    partitions: int | None = None,
    sep: str | None = None,
) -> Iterator[Telemetry]:
    """Stream a telemetry file as chunks of about ``series_per_chunk`` whole series.

    Memory holds one chunk plus one read batch. Input must be grouped by ``series_id``
    (see the module docstring); a series that reappears after its rows were emitted raises
    :class:`DataError`. With ``partitions=N`` any row order is accepted at the cost of one
    extra pass through temporary files. The timestamp unit detected on the first chunk is
    kept for the rest, so one file is never read with two units.
    """
    if series_per_chunk < 1:
        raise DataError(f"series_per_chunk must be at least 1, not {series_per_chunk}")
    url = os.fspath(url)
    fmt = _format_of(url, format)
    mapping = parse_column_map(columns)
    id_col = mapping.get("series_id", "series_id")
    if partitions is not None:
        yield from _iter_hash_partitions(
            url, fmt, mapping, timestamp_unit, batch_rows, partitions, series_per_chunk, sep
        )
        return

    unit: TimestampUnit = timestamp_unit
    emitted: set = set()

    def emit(rows: pd.DataFrame) -> Telemetry:
        nonlocal unit
        telemetry = _standardise(rows, mapping, unit, url)
        _check_grouped(telemetry.frame["series_id"], emitted, url)
        if telemetry.timestamp_unit != "datetime":
            unit = telemetry.timestamp_unit  # keep the first chunk's unit for the rest
        return telemetry

    pending: list[pd.DataFrame] = []
    pending_runs = 0  # an upper bound: a series cut by a batch edge counts twice
    for batch in _iter_raw_batches(url, fmt, batch_rows, sep):
        if len(batch) == 0:
            continue
        if id_col not in batch.columns:
            raise _missing_series_id(url, id_col, batch, mapping)
        pending.append(batch)
        pending_runs += len(_run_starts(batch[id_col]))
        if pending_runs <= series_per_chunk:
            continue
        frame = pd.concat(pending, ignore_index=True)
        starts = _run_starts(frame[id_col])
        # The last run may go on in the next batch, so only the runs before it are complete.
        while len(starts) - 1 >= series_per_chunk:
            cut = int(starts[series_per_chunk])
            yield emit(frame.iloc[:cut])
            frame = frame.iloc[cut:].reset_index(drop=True)
            starts = starts[series_per_chunk:] - cut
        pending, pending_runs = [frame], len(starts)
    if pending:
        frame = pd.concat(pending, ignore_index=True)
        if len(frame):
            yield emit(frame)


def _missing_series_id(
    url: str, id_col: str, batch: pd.DataFrame, mapping: Mapping[str, str]
) -> DataError:
    return DataError(
        f"{url}: column series_id (as {id_col!r}) not found; "
        f"columns present: {list(batch.columns)}"
        + _mapping_hint(batch, ["series_id"] if "series_id" not in mapping else [], mapping),
        details={"params": ["columns"], "columns_present": list(batch.columns)},
    )


def _run_starts(series_ids: pd.Series) -> np.ndarray:
    ids = series_ids.to_numpy()
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])


def _check_grouped(series_ids: pd.Series, emitted: set, url: str) -> None:
    ids = pd.unique(series_ids)
    seen_again = [s for s in ids if s in emitted]
    runs = int(np.count_nonzero(series_ids.to_numpy()[1:] != series_ids.to_numpy()[:-1])) + 1
    if seen_again or runs != len(ids):
        example = seen_again[0] if seen_again else pd.Series(series_ids).value_counts().index[0]
        raise UngroupedInput(
            f"{url}: rows are not grouped by series_id (series {example!r} appears in two "
            "places); sort the input by series_id or pass partitions=N to hash-partition it"
        )
    emitted.update(ids)


def _iter_hash_partitions(
    url: str,
    fmt: Literal["csv", "parquet"],
    mapping: dict[str, str],
    timestamp_unit: TimestampUnit,
    batch_rows: int,
    partitions: int,
    series_per_chunk: int,
    sep: str | None = None,
) -> Iterator[Telemetry]:
    """Spread rows over ``partitions`` local files by a hash of series_id, then read each."""
    if partitions < 1:
        raise DataError(f"partitions must be at least 1, not {partitions}")
    id_col = mapping.get("series_id", "series_id")
    with tempfile.TemporaryDirectory(prefix="zhuge-partitions-") as tmp:
        writers: dict[int, pq.ParquetWriter] = {}
        try:
            for batch in _iter_raw_batches(url, fmt, batch_rows, sep):
                if id_col not in batch.columns:
                    raise _missing_series_id(url, id_col, batch, mapping)
                bucket = pd.util.hash_array(batch[id_col].astype(str).to_numpy()) % partitions
                for b in np.unique(bucket):
                    table = pa.Table.from_pandas(batch[bucket == b], preserve_index=False)
                    if b not in writers:
                        writers[b] = pq.ParquetWriter(f"{tmp}/{b:05d}.parquet", table.schema)
                    writers[b].write_table(table.cast(writers[b].schema))
        finally:
            for writer in writers.values():
                writer.close()
        unit = timestamp_unit
        for b in sorted(writers):
            frame = pq.read_table(f"{tmp}/{b:05d}.parquet").to_pandas()
            frame = frame.sort_values(id_col, kind="stable", ignore_index=True)
            codes = pd.factorize(frame[id_col])[0]
            n = int(codes.max()) + 1
            for first in range(0, n, series_per_chunk):
                part = frame[(codes >= first) & (codes < first + series_per_chunk)]
                telemetry = _standardise(part, mapping, unit, url)
                if telemetry.timestamp_unit != "datetime":
                    unit = telemetry.timestamp_unit
                yield telemetry
