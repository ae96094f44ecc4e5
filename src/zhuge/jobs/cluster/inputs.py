"""Reading and checking what a clustering job clusters, and planning whether it fits in memory
or streams; the CLI runs the same checks before it submits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from zhuge.errors import DataError
from zhuge.jobs.cluster.params import STREAMABLE, TEMPLATE_ID, ClusterInputParams, ClusterParams
from zhuge.jobs.outputs import existing_location


def _is_csv(url: str) -> bool:
    """CSV by its name, or, named by its content (a dataset), by not being Parquet."""
    from zhuge.data.sources import sniff_format

    name = url.lower()
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return True
    return "." not in name.rsplit("/", 1)[-1] and sniff_format(url) == "csv"


def read_table(url: str, what: str = "input") -> pd.DataFrame:
    """A CSV (by its name) or Parquet table; a ``DataError`` naming the problem if unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = existing_location(url, what)
    try:
        if _is_csv(url):
            with fs.open(path, "rb", compression="infer") as fh:
                return pd.read_csv(fh, sep="\t" if url.lower().endswith(".tsv") else ",")
        return pq.read_table(path, filesystem=fs).to_pandas()
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{what} file {url} is not a readable table: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{what} file {url} is empty") from exc


def reject_unknown_columns(names: list[str], frame_columns: list[str], what: str = "table") -> None:
    missing = [c for c in names if c not in frame_columns]
    if missing:
        raise DataError(f"unknown column name(s) {missing}; the {what} has {frame_columns}")


def preprocess_spec(params: ClusterInputParams) -> Any:
    """``preprocess`` as the Segmenter takes it: "auto", None, or a PreprocessSpec."""
    from zhuge.ml.preprocess import PreprocessSpec

    if params.preprocess == "none":
        return None
    if isinstance(params.preprocess, dict):
        return PreprocessSpec.from_dict(params.preprocess)
    return "auto"


@dataclass
class PreparedInput:
    """The checked feature table, the ids beside it, and which rows the fit sees."""

    features: pd.DataFrame
    ids: pd.Series | None
    id_name: str | None
    fit_rows: np.ndarray | None  # positions fitted on (--sample); None: all
    notes: list[str] = field(default_factory=list)

    @property
    def fit_frame(self) -> pd.DataFrame:
        if self.fit_rows is None:
            return self.features
        return self.features.iloc[self.fit_rows]


def prepare_input(params: ClusterInputParams, frame: pd.DataFrame | None = None) -> PreparedInput:
    """Read (unless given) and check the table; raise ``DataError`` naming the first problem:
    unknown column, no numeric column, a single row, all rows missing, k larger than rows."""
    from zhuge.ml.cluster.profile import TEMPLATES
    from zhuge.ml.preprocess import resolve_columns

    frame = read_table(params.input) if frame is None else frame
    frame.columns = [str(c) for c in frame.columns]
    notes: list[str] = []
    id_name = params.id_column
    if params.template is not None:
        features = TEMPLATES[params.template](frame)
        id_name = TEMPLATE_ID[params.template]
        features = features.rename_axis(id_name).reset_index()
        notes.append(
            f"template {params.template}: {len(frame)} input rows -> {len(features)} rows "
            f"(one per {id_name}) x {len(features.columns) - 1} features"
        )
        frame = features
    if id_name is not None:
        reject_unknown_columns([id_name], list(frame.columns))
    if params.columns is not None:
        reject_unknown_columns(params.columns, list(frame.columns))
        if id_name in params.columns:
            raise DataError(f"{id_name!r} is the id column; it cannot also be a feature")
        features = frame[params.columns]
    else:
        features = frame.drop(columns=[id_name]) if id_name else frame
    ids = frame[id_name] if id_name else None

    n = len(features)
    if n == 0:
        raise DataError("the table has no rows")
    if n == 1:
        raise DataError("the table has a single row; clustering needs at least 2 rows")
    if features.shape[1] == 0 or features.isna().all(axis=None):
        raise DataError(f"all rows are missing: every value of all {n} rows is empty")
    spec = preprocess_spec(params)
    if spec is None:
        numeric = features.select_dtypes(["number", "bool"])
        if numeric.shape[1] == 0:
            raise DataError(
                f"no numeric columns in {list(features.columns)} (preprocess none uses only "
                "numeric columns; preprocess auto also encodes categorical and text columns)"
            )
        dropped = [c for c in features.columns if c not in numeric.columns]
        if dropped and params.columns is not None:
            raise DataError(f"column(s) {dropped} are not numeric and preprocess is none")
        if dropped:
            notes.append(f"left out non-numeric column(s) {dropped} (preprocess none)")
        features = numeric
        if features.isna().all(axis=1).all():
            raise DataError("all rows are missing: no row has a single numeric value")
        missing = int(features.isna().sum().sum())
        if missing:
            raise DataError(
                f"{missing} missing value(s) and preprocess none; use --preprocess auto "
                "(KNN imputation) or fill them first"
            )
    else:
        kinds, _ = resolve_columns(features, None if spec == "auto" else spec)
        if not any(kinds.values()):
            raise DataError(
                f"no numeric columns (and no usable categorical or text column) in "
                f"{list(features.columns)}"
            )
        numeric_only = not kinds["categorical"] and not kinds["text"]
        if numeric_only and features[kinds["numeric"]].isna().all(axis=1).all():
            raise DataError("all rows are missing: no row has a single numeric value")

    fit_rows = None
    if params.sample is not None and params.sample < n:
        rng = np.random.default_rng(params.random_state)
        fit_rows = np.sort(rng.choice(n, params.sample, replace=False))
        notes.append(f"fitted on a random sample of {params.sample} of {n} rows")
    fitted = n if fit_rows is None else len(fit_rows)
    for k, what in ((params.k, "k"), (params.k_min, "k_min")):
        if k is not None and k > fitted:
            raise DataError(
                f"{what}={k} is larger than the number of rows ({fitted}); ask for at most "
                f"{fitted} clusters"
            )
    return PreparedInput(features.reset_index(drop=True), ids, id_name, fit_rows, notes)


def check_plan(params: ClusterInputParams, prepared: PreparedInput) -> None:
    """Refuse now what the Segmenter's planning would refuse once the job runs (planned on the
    table's shape before preprocessing; the job plans again on the prepared matrix)."""
    from zhuge.ml.cluster.planning import plan_fit
    from zhuge.ml.cluster.search import AUTO_ALGORITHMS

    auto = params.algorithm == "auto"
    rows = len(prepared.fit_frame)
    plan_fit(
        rows,
        max(1, prepared.features.shape[1]),
        list(AUTO_ALGORITHMS) if auto else [params.algorithm],
        k=params.k or params.k_max,
        explicit=not auto,
        memory_limit_bytes=int(params.memory_limit_gb * 2**30) if params.memory_limit_gb else None,
    )


@dataclass(frozen=True)
class Route:
    """In memory or streamed, and why (from the table's size, before reading it)."""

    stream: bool
    rows: int | None
    columns: int | None
    note: str = ""


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def choose_route(params: ClusterParams) -> Route:
    """Plan the table's size from its Parquet metadata; stream it, read it, or refuse."""
    from zhuge.ml.cluster.planning import PREPARE_COPIES, default_memory_limit

    if _is_csv(params.input) or params.template is not None:
        if params.stream == "on":
            raise DataError("streaming needs a Parquet input without a template")
        return Route(False, None, None)
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = existing_location(params.input, "input")
    try:
        with fs.open(path, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
            schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as exc:
        if fs.isdir(path):
            return Route(False, None, None)  # a partitioned dataset: read_table copes
        raise DataError(f"input file {params.input} is not a readable Parquet file: {exc}") from exc
    rows = meta.num_rows
    cols = len(params.columns or [c for c in schema.names if c != params.id_column])
    need = rows * cols * 8 * PREPARE_COPIES
    limit = (
        int(params.memory_limit_gb * 2**30) if params.memory_limit_gb else default_memory_limit()
    )
    if params.stream == "off" or (params.stream == "auto" and need <= limit):
        return Route(False, rows, cols)
    size = f"{rows} rows x {cols} columns need about {_size(need)} in memory"
    why = "asked for" if params.stream == "on" else f"{size}, over the {_size(limit)} limit"
    if params.algorithm not in STREAMABLE:
        raise DataError(
            f"refusing to run: {why}, and only minibatch-kmeans can stream; use "
            f"--algorithm minibatch-kmeans (or auto), or run {params.algorithm} on a smaller "
            "extract of the table"
        )
    if isinstance(params.preprocess, dict):
        raise DataError(
            "streaming standardises numeric columns only; use --preprocess auto or none"
        )
    return Route(True, rows, cols, f"streamed in pages of {params.batch_rows} rows ({why})")
