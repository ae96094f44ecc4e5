"""Job kinds ``cluster``, ``cluster-predict`` and ``tune``: segmentation on the platform.

``cluster`` reads a table (CSV or Parquet, any fsspec URL), optionally turns it into features
with a template (``rfm``: one row per customer; ``load-profile``: one row per VM), plans the
resources, searches algorithms and parameters with
:class:`~zhuge.ml.cluster.Segmenter` -- each rung's candidates spread over the Dask workers
through ``ctx.map`` -- and writes to the attempt's artifact folder:

* ``labels.parquet``: ``label`` per row in the input's order (``-1``: noise), beside the id
  column when one was named (templates: one row per customer / VM, with its id);
* ``profile.parquet``: per cluster and numeric feature, mean / median vs the overall mean;
* ``model/``: the fitted preprocessing + model with a hashed manifest (``cluster-predict``);
* ``summary.json``: what the result holds.

**Too big for memory.** Before reading, the table's size is planned from the Parquet metadata
(rows x columns). If it would not fit, a k-means request (or ``auto``) on Parquet *streams*:
MiniBatchKMeans over pages of ``batch_rows`` rows, labels written in a second streaming pass
(``zhuge.ml.cluster.streaming``); k is chosen first on a uniform sample. Anything else is
refused with a message saying what would work. ``stream="on"`` streams whatever the size.

``tune`` runs the same search and reports every candidate (with the process that evaluated
it) without writing labels. Inputs are checked by :func:`prepare_input` before anything is
fitted or written; the CLI runs the same checks before submitting.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError, InvalidRequest, ModelNotFound
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import KindParams, kind
from zhuge.jobs.outputs import check_out, copy_out, existing_location, json_safe, latest_saved

__all__ = [
    "ALGORITHM_CHOICES",
    "ClusterParams",
    "PredictParams",
    "PreparedInput",
    "TuneParams",
    "check_out",
    "check_plan",
    "choose_route",
    "prepare_input",
    "read_table",
    "resolve_model",
]

ALGORITHM_CHOICES = ("auto", "kmeans", "minibatch_kmeans", "dbscan", "hdbscan", "gmm", "spectral")
STREAMABLE = ("auto", "kmeans", "minibatch_kmeans")
TEMPLATE_ID = {"rfm": "customer_id", "load-profile": "series_id"}
STREAM_K_SAMPLE = 20_000  # rows drawn to choose k before streaming
PROFILE_TOP = 3  # features per cluster in the result (profile.parquet has all)


# -- parameters -----------------------------------------------------------------------------


class ClusterInputParams(KindParams):
    """What to cluster and how to search; shared by ``cluster`` and ``tune``."""

    input: str = Field(description="CSV or Parquet table (path or fsspec URL).")
    columns: list[str] | None = Field(None, description="Feature columns (default: all).")
    id_column: str | None = Field(
        None, description="Column copied to the labels and left out of the features."
    )
    template: Literal["rfm", "load-profile"] | None = Field(
        None,
        description="rfm: transactions (customer_id, timestamp, amount) -> recency, frequency, "
        "monetary per customer; load-profile: telemetry (series_id, timestamp, value) -> "
        "24-hour load shape per VM.",
    )
    algorithm: str = Field("auto", description=f"One of {', '.join(ALGORITHM_CHOICES)}.")
    k: int | None = Field(
        None, ge=1, description="Number of clusters; None: chosen in k_min..k_max."
    )
    k_min: int = Field(2, ge=2)
    k_max: int = Field(10, ge=2)
    preprocess: Literal["auto", "none"] | dict[str, Any] = Field(
        "auto", description="auto, none, or a preprocessing spec (zhuge.ml.preprocess)."
    )
    sample: int | None = Field(
        None, ge=2, description="Fit on a random sample of this many rows; label all rows."
    )
    random_state: int = 0
    memory_limit_gb: float | None = Field(
        None, gt=0, description="Memory the fit may plan to use (default: 70 % of available)."
    )

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        name = value.strip().lower().replace("-", "_")
        if name not in ALGORITHM_CHOICES:
            raise ValueError(f"unknown algorithm {value!r}; choose one of {ALGORITHM_CHOICES}")
        return name

    @field_validator("preprocess")
    @classmethod
    def _preprocess(cls, value: Any) -> Any:
        if isinstance(value, dict):
            from zhuge.ml.preprocess import PreprocessSpec

            try:
                PreprocessSpec.from_dict(value)
            except (InvalidRequest, TypeError) as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _k_range(self) -> ClusterInputParams:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) is larger than k_max ({self.k_max})")
        return self


class ClusterParams(ClusterInputParams):
    out: str | None = Field(None, description="Also write labels.parquet here.")
    stream: Literal["auto", "on", "off"] = Field(
        "auto", description="Stream Parquet in pages: auto (when it would not fit), on, off."
    )
    batch_rows: int = Field(100_000, ge=100, description="Rows per page when streaming.")


class TuneParams(ClusterInputParams):
    pass


class PredictParams(KindParams):
    model_from: str = Field(description="A cluster job id, or a saved model folder.")
    input: str = Field(description="CSV or Parquet table with the columns the model was fit on.")
    id_column: str | None = Field(
        None, description="Copied to the labels (default: the one the model was fit with)."
    )
    out: str | None = Field(None, description="Also write labels.parquet here.")


# -- reading and checking the input ---------------------------------------------------------


def _is_csv(url: str) -> bool:
    return url.lower().endswith((".csv", ".csv.gz", ".tsv"))


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


def _unknown(names: list[str], frame_columns: list[str], what: str = "table") -> None:
    missing = [c for c in names if c not in frame_columns]
    if missing:
        raise DataError(f"unknown column name(s) {missing}; the {what} has {frame_columns}")


def _spec(params: ClusterInputParams) -> Any:
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
        _unknown([id_name], list(frame.columns))
    if params.columns is not None:
        _unknown(params.columns, list(frame.columns))
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
    spec = _spec(params)
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


def _makedirs(url: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path, exist_ok=True)


# -- results ----------------------------------------------------------------------------------


def _profile_summary(profile: pd.DataFrame) -> list[dict[str, Any]]:
    """Per cluster: size, share and the PROFILE_TOP features that set it apart most."""
    out = []
    for label, part in profile.groupby("cluster", sort=True):
        top = part.head(PROFILE_TOP)
        out.append(
            {
                "cluster": int(label),
                "size": int(part["size"].iloc[0]),
                "share": float(part["share"].iloc[0]),
                "features": top[
                    ["feature", "mean", "median", "overall_mean", "difference_sd"]
                ].to_dict(orient="records"),
            }
        )
    return out


def _search_report(seg: Any) -> dict[str, Any]:
    search = seg.search_
    gap = search.gap
    return {
        "algorithm": seg.result_.algorithm,
        "params": seg.result_.params,
        "n_clusters": int(seg.n_clusters_),
        "can_predict": bool(seg.result_.can_predict),
        "winner": search.winner_record.candidate.label(),
        "reason": search.reason,
        "k_selection": search.k_selection,
        "gap": None if gap is None else {"k": gap.ks, "gap": gap.gap, "s": gap.s},
        "rungs": search.rungs,
        "candidates": search.table(),
        "processes": sorted({r.process for r in search.candidates if r.process}),
        "notes": list(seg.notes_),
        "plan": seg.plan_.as_dict(),
        "preprocessing": seg.preprocessor_.description_ if seg.preprocessor_ else ["none"],
    }


# -- fitting -----------------------------------------------------------------------------------


def _segmenter(params: ClusterInputParams, ctx: JobContext) -> Any:
    from zhuge.ml.cluster import Segmenter

    return Segmenter(
        algorithm=params.algorithm,
        n_clusters=params.k,
        k_range=(params.k_min, params.k_max),
        preprocess=_spec(params),
        random_state=params.random_state,
        # candidates of each rung are evaluated on the cluster's workers
        map_fn=functools.partial(ctx.map, message="candidates evaluated"),
        memory_limit_bytes=int(params.memory_limit_gb * 2**30) if params.memory_limit_gb else None,
    )


def _label_all_rows(seg: Any, prepared: PreparedInput) -> tuple[np.ndarray, str | None]:
    """Labels for every row: the fit's own, or, after --sample, the model's prediction (or,
    for algorithms that cannot predict, the label of the nearest fitted row)."""
    if prepared.fit_rows is None:
        return np.asarray(seg.labels_), None
    labels = np.empty(len(prepared.features), dtype=np.int64)
    labels[prepared.fit_rows] = seg.labels_
    rest = np.setdiff1d(np.arange(len(labels)), prepared.fit_rows)
    if seg.can_predict:
        labels[rest] = seg.predict(prepared.features.iloc[rest])
        return labels, None
    from sklearn.neighbors import KNeighborsClassifier

    def prepared_matrix(frame: pd.DataFrame) -> np.ndarray:
        if seg.preprocessor_ is None:
            return frame.to_numpy(dtype=np.float64)
        return seg.preprocessor_.transform(frame)

    nearest = KNeighborsClassifier(n_neighbors=1).fit(
        prepared_matrix(prepared.fit_frame), seg.labels_
    )
    labels[rest] = nearest.predict(prepared_matrix(prepared.features.iloc[rest]))
    note = (
        f"{seg.result_.algorithm} cannot label new rows: the {len(rest)} rows outside the "
        "sample took the label of their nearest sampled row"
    )
    return labels, note


def _labels_frame(labels: np.ndarray, ids: pd.Series | None, id_name: str | None) -> pd.DataFrame:
    frame = pd.DataFrame({"label": labels.astype(np.int64)})
    if ids is not None and id_name is not None:
        frame.insert(0, id_name, ids.reset_index(drop=True))
    return frame


def _model_input(params: ClusterInputParams, columns: list[str], id_name: str | None) -> dict:
    return {"input": {"template": params.template, "columns": columns, "id_column": id_name}}


@kind(
    "cluster",
    params=ClusterParams,
    description="Segment a table: prepare, search algorithms, label rows, profile, save the model.",
)
def run_cluster(params: ClusterParams, ctx: JobContext) -> dict[str, Any]:
    started = time.perf_counter()
    if params.out is not None:
        check_out(params.out)
    ctx.progress(0, 4, "planning")
    route = choose_route(params)
    if route.stream:
        return _run_streaming(params, ctx, route, started)
    ctx.progress(1, 4, "reading input")
    prepared = prepare_input(params)
    ctx.log(f"clustering {len(prepared.features)} rows x {prepared.features.shape[1]} columns")
    seg = _segmenter(params, ctx)
    seg.fit(prepared.fit_frame)
    ctx.progress(3, 4, "labelling and profiling")
    labels, label_note = _label_all_rows(seg, prepared)
    notes = [*prepared.notes, *([label_note] if label_note else [])]
    report = _search_report(seg)
    report["notes"] = [*notes, *report["notes"]]

    labels_frame = _labels_frame(labels, prepared.ids, prepared.id_name)
    artifacts = {"labels": ctx.artifacts.write_parquet("labels.parquet", labels_frame)}
    profile = None
    numeric = prepared.features.select_dtypes(["number", "bool"]).astype(float)
    if numeric.shape[1]:
        from zhuge.ml.cluster.profile import profile_clusters

        profile = profile_clusters(numeric, labels)
        artifacts["profile"] = ctx.artifacts.write_parquet("profile.parquet", profile)
    model_dir = ctx.artifacts.child("model")
    columns = [str(c) for c in prepared.features.columns]
    manifest = seg.save(model_dir.url, metadata=_model_input(params, columns, prepared.id_name))
    artifacts["model"] = model_dir.url
    sizes = pd.Series(labels).value_counts().sort_index()
    result = {
        **report,
        "rows": len(labels),
        "features": columns,
        "id_column": prepared.id_name,
        "template": params.template,
        "streamed": False,
        "sizes": {str(k): int(v) for k, v in sizes.items()},
        "noise": int((labels < 0).sum()),
        "profile": _profile_summary(profile) if profile is not None else [],
        "model_hash": manifest["files"],
        "artifacts": artifacts,
        "seconds": round(time.perf_counter() - started, 3),
    }
    result = json_safe(result)
    artifacts["summary"] = ctx.artifacts.write_json("summary.json", result)
    result["out"] = copy_out(artifacts["labels"], params.out) if params.out else None
    ctx.progress(4, 4, f"{result['n_clusters']} clusters")
    return result


def _run_streaming(
    params: ClusterParams, ctx: JobContext, route: Route, started: float
) -> dict[str, Any]:
    from zhuge.ml.cluster.search import choose_k
    from zhuge.ml.cluster.streaming import numeric_columns, sample_parquet, stream_minibatch_kmeans

    columns = params.columns
    if columns is None:
        columns = [c for c in numeric_columns(params.input) if c != params.id_column]
        if not columns:
            raise DataError(f"no numeric columns in {params.input}")
    rows = route.rows or 0
    if rows < 2:
        raise DataError(f"the table has {rows} row(s); clustering needs at least 2 rows")
    notes = [route.note]
    k = params.k
    if k is None:
        ctx.progress(1, 4, "choosing k on a sample")
        sample = sample_parquet(
            params.input,
            columns,
            params.sample or STREAM_K_SAMPLE,
            batch_rows=params.batch_rows,
            random_state=params.random_state,
        )
        if params.preprocess == "auto":
            sample = (sample - sample.mean(axis=0)) / np.where(
                sample.std(axis=0) > 0, sample.std(axis=0), 1.0
            )
        k, k_note = choose_k(sample, (params.k_min, params.k_max), random_state=params.random_state)
        notes.append(f"k on a sample of {len(sample)} rows: {k_note}")
    elif k > rows:
        raise DataError(f"k={k} is larger than the number of rows ({rows})")
    ctx.progress(2, 4, f"streaming MiniBatchKMeans, k={k}")
    labels_url = ctx.artifacts.path("labels.parquet")
    _makedirs(ctx.artifacts.url)  # the writer opens a file in it
    result = stream_minibatch_kmeans(
        params.input,
        labels_url,
        n_clusters=k,
        columns=columns,
        batch_rows=params.batch_rows,
        standardize=params.preprocess == "auto",
        random_state=params.random_state,
        label_column="label",
        id_column=params.id_column,
    )
    ctx.progress(3, 4, "profiling and saving the model")
    model = result.model
    profile = pd.DataFrame(
        [
            {
                "cluster": c,
                "size": size,
                "share": size / result.n_rows,
                "feature": col,
                "mean": result.cluster_centers[c, j],
                "median": math.nan,  # medians need the rows again; the centre is the mean
                "overall_mean": result.column_means[j],
                "difference_sd": (result.cluster_centers[c, j] - result.column_means[j])
                / model.std[j],
            }
            for c, size in enumerate(result.cluster_sizes)
            for j, col in enumerate(result.columns)
        ]
    )
    profile["_order"] = -profile["difference_sd"].abs()
    profile = profile.sort_values(["cluster", "_order"]).drop(columns="_order")
    artifacts = {
        "labels": labels_url,
        "profile": ctx.artifacts.write_parquet("profile.parquet", profile),
    }
    model_dir = ctx.artifacts.child("model")
    manifest = model.save(model_dir.url, metadata=_model_input(params, columns, params.id_column))
    artifacts["model"] = model_dir.url
    report = {
        "algorithm": "minibatch_kmeans",
        "params": {"n_clusters": k, "batch_rows": params.batch_rows},
        "n_clusters": k,
        "can_predict": True,
        "reason": f"streamed: {route.note}; k={k}",
        "candidates": [],
        "processes": [],
        "notes": notes,
        "plan": {"rows": rows, "columns": len(columns), "route": "stream"},
        "preprocessing": ["standard scaling from a first streaming pass"]
        if params.preprocess == "auto"
        else ["none"],
        "rows": result.n_rows,
        "features": columns,
        "id_column": params.id_column,
        "template": None,
        "streamed": True,
        "pages": result.pages,
        "sizes": {str(i): s for i, s in enumerate(result.cluster_sizes)},
        "noise": 0,
        "profile": _profile_summary(profile),
        "model_hash": manifest["files"],
        "artifacts": artifacts,
        "seconds": round(time.perf_counter() - started, 3),
    }
    report = json_safe(report)
    artifacts["summary"] = ctx.artifacts.write_json("summary.json", report)
    report["out"] = copy_out(labels_url, params.out) if params.out else None
    ctx.progress(4, 4, f"{k} clusters")
    return report


# -- predict ------------------------------------------------------------------------------------


def resolve_model(ref: str, artifacts_root: ArtifactDir | None) -> tuple[Any, dict[str, Any]]:
    """(model, manifest metadata) from a cluster job id (its latest saved model) or a folder."""
    from zhuge.ml.cluster.model import load_model

    ref = str(ref).strip()
    if ref.isdigit():
        if artifacts_root is None:
            raise DataError(f"model job {ref}: no artifact store to look in")
        folder = latest_saved(artifacts_root, ref, "model")
        if folder is not None:
            return _load(folder, load_model)
        raise DataError(
            f"job {ref} saved no clustering model (is it a cluster job that succeeded?)"
        )
    return _load(ArtifactDir(ref), load_model)


def _load(folder: ArtifactDir, load_model: Any) -> tuple[Any, dict[str, Any]]:
    try:
        model = load_model(folder.url)
    except ModelNotFound as exc:
        raise DataError(f"model {folder.url}: {exc.message}") from exc
    return model, folder.read_json("manifest.json").get("metadata", {})


@kind(
    "cluster-predict",
    params=PredictParams,
    description="Label new rows with the model a cluster job saved.",
)
def run_cluster_predict(params: PredictParams, ctx: JobContext) -> dict[str, Any]:
    from zhuge.ml.cluster.profile import TEMPLATES

    if params.out is not None:
        check_out(params.out)
    ctx.progress(0, 2, "loading the model")
    model, meta = resolve_model(params.model_from, ctx.artifacts_root)
    if not meta.get("can_predict", True):
        raise DataError(
            f"the model of {params.model_from} is {meta.get('algorithm')}, which cannot label "
            "new rows; run zhuge cluster on the new table, or fit kmeans, minibatch-kmeans or gmm"
        )
    used = meta.get("input", {})
    frame = read_table(params.input)
    frame.columns = [str(c) for c in frame.columns]
    id_name = params.id_column or used.get("id_column")
    if used.get("template"):
        id_name = TEMPLATE_ID[used["template"]]
        frame = TEMPLATES[used["template"]](frame).rename_axis(id_name).reset_index()
    columns = used.get("columns") or [c for c in frame.columns if c != id_name]
    _unknown(columns, list(frame.columns), "new table (the model was fit on these columns)")
    if id_name is not None and id_name not in frame.columns:
        if params.id_column:
            _unknown([id_name], list(frame.columns))
        id_name = None
    if len(frame) == 0:
        raise DataError("the new table has no rows")
    ctx.progress(1, 2, f"labelling {len(frame)} rows")
    labels = np.asarray(model.predict(frame[columns]), dtype=np.int64)
    labels_frame = _labels_frame(labels, frame[id_name] if id_name else None, id_name)
    artifacts = {"labels": ctx.artifacts.write_parquet("labels.parquet", labels_frame)}
    sizes = pd.Series(labels).value_counts().sort_index()
    result = json_safe(
        {
            "model_from": params.model_from,
            "algorithm": meta.get("algorithm"),
            "n_clusters": meta.get("n_clusters"),
            "rows": len(labels),
            "sizes": {str(k): int(v) for k, v in sizes.items()},
            "id_column": id_name,
            "artifacts": artifacts,
        }
    )
    result["out"] = copy_out(artifacts["labels"], params.out) if params.out else None
    ctx.progress(2, 2, "labelled")
    return result


# -- tune ---------------------------------------------------------------------------------------


@kind(
    "tune",
    params=TuneParams,
    description="Search clustering algorithms and parameters over the Dask workers; report all.",
)
def run_tune(params: TuneParams, ctx: JobContext) -> dict[str, Any]:
    started = time.perf_counter()
    ctx.progress(0, 1, "reading input")
    prepared = prepare_input(params)
    seg = _segmenter(params, ctx)
    seg.fit(prepared.fit_frame)
    report = _search_report(seg)
    report["notes"] = [*prepared.notes, *report["notes"]]
    report["rows"] = len(prepared.fit_frame)
    report["features"] = [str(c) for c in prepared.features.columns]
    report["seconds"] = round(time.perf_counter() - started, 3)
    report = json_safe(report)
    report["artifacts"] = {"candidates": ctx.artifacts.write_json("candidates.json", report)}
    return report
