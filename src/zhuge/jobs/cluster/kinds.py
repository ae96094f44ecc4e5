"""The job kinds ``cluster``, ``cluster-predict`` and ``tune``.

A result's ``output`` names the artifact a caller usually wants (``zhuge cluster --out``
downloads it through the API); jobs write nowhere but their own artifact folder."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pandas as pd

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError, ModelNotFound
from zhuge.jobs.cluster.inputs import (
    PreparedInput,
    Route,
    choose_route,
    prepare_input,
    preprocess_spec,
    read_table,
    reject_unknown_columns,
)
from zhuge.jobs.cluster.params import (
    STREAM_K_SAMPLE,
    TEMPLATE_ID,
    ClusterInputParams,
    ClusterParams,
    PredictParams,
    TuneParams,
)
from zhuge.jobs.cluster.report import profile_summary, search_report
from zhuge.jobs.context import JobContext
from zhuge.jobs.kinds import kind
from zhuge.jobs.outputs import json_safe, latest_saved

LABELS = "labels.parquet"  # the output of cluster and cluster-predict


def _makedirs(url: str) -> None:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path, exist_ok=True)


# -- fitting -----------------------------------------------------------------------------------


class RungMap:
    """``ctx.map`` for a search that evaluates its candidates in rounds (rungs): each round's
    bar says which round it is and how many candidates the rounds before it evaluated, so
    its "6/6" is not read as the whole search (whose table lists every round's)."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx, self.rounds, self.before = ctx, 0, 0

    def __call__(self, fn: Any, items: Any) -> list[Any]:
        self.rounds += 1
        message = f"candidates evaluated in round {self.rounds}"
        if self.before:
            message += f" ({self.before} in the rounds before)"
        out = self.ctx.map(fn, items, message=message)
        self.before += len(out)
        return out


def _segmenter(params: ClusterInputParams, ctx: JobContext) -> Any:
    from zhuge.ml.cluster import Segmenter

    return Segmenter(
        algorithm=params.algorithm,
        n_clusters=params.k,
        k_range=(params.k_min, params.k_max),
        preprocess=preprocess_spec(params),
        random_state=params.random_state,
        # candidates of each rung are evaluated on the cluster's workers
        map_fn=RungMap(ctx),
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
    report = search_report(seg)
    report["notes"] = [*notes, *report["notes"]]

    labels_frame = _labels_frame(labels, prepared.ids, prepared.id_name)
    artifacts = {"labels": ctx.artifacts.write_parquet(LABELS, labels_frame)}
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
        "registered": _register(params, ctx, model_dir, report),
        **report,
        "rows": len(labels),
        "features": columns,
        "id_column": prepared.id_name,
        "template": params.template,
        "streamed": False,
        "sizes": {str(k): int(v) for k, v in sizes.items()},
        "noise": int((labels < 0).sum()),
        "profile": profile_summary(profile) if profile is not None else [],
        "model_hash": manifest["files"],
        "artifacts": artifacts,
        "seconds": round(time.perf_counter() - started, 3),
    }
    result = json_safe(result)
    artifacts["summary"] = ctx.artifacts.write_json("summary.json", result)
    result["output"] = LABELS
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
    if params.algorithm == "auto":
        notes.append(
            "streamed: only minibatch-kmeans learns from pages; auto's other candidates "
            "(genie, hdbscan, dbscan, ward, average, spectral, gmm) need the rows in memory: "
            "--sample N gives them a sample"
        )
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
    labels_url = ctx.artifacts.path(LABELS)
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
        "registered": _register(
            params, ctx, model_dir, {"algorithm": "minibatch_kmeans", "n_clusters": k}
        ),
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
        "profile": profile_summary(profile),
        "model_hash": manifest["files"],
        "artifacts": artifacts,
        "seconds": round(time.perf_counter() - started, 3),
    }
    report = json_safe(report)
    artifacts["summary"] = ctx.artifacts.write_json("summary.json", report)
    report["output"] = LABELS
    ctx.progress(4, 4, f"{k} clusters")
    return report


def _register(
    params: ClusterParams, ctx: JobContext, folder: ArtifactDir, report: dict[str, Any]
) -> dict[str, Any] | None:
    """``register_as``: the saved model as the next version of that registered model."""
    if params.register_as is None:
        return None
    from zhuge.jobs.registry.use import register_cluster_model

    keys = ("algorithm", "params", "n_clusters", "can_predict", "winner", "reason", "decided_by")
    return register_cluster_model(
        ctx, params.register_as, params, folder, {k: report[k] for k in keys if k in report}
    )


# -- predict ------------------------------------------------------------------------------------


def resolve_model(ref: int | str, artifacts_root: ArtifactDir | None) -> tuple[Any, dict[str, Any]]:
    """(model, manifest metadata) of a cluster job (its latest saved model), by its id; the
    job's tenant was checked when the job naming it was submitted and again as it started."""
    from zhuge.ml.cluster.model import load_model

    ref = str(ref).strip()
    if not ref.isdigit():
        raise DataError(f"model_from {ref!r} is not a job id")
    if artifacts_root is None:
        raise DataError(f"model job {ref}: no artifact store to look in")
    folder = latest_saved(artifacts_root, ref, "model")
    if folder is not None:
        return _load(folder, load_model)
    raise DataError(f"job {ref} saved no clustering model (is it a cluster job that succeeded?)")


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
    from zhuge.jobs.registry.use import used_version
    from zhuge.ml.cluster.profile import TEMPLATES

    ctx.progress(0, 2, "loading the model")
    version = used_version(ctx, "cluster")  # NAME@VERSION when model_from named one
    model, meta = resolve_model(params.model_from, ctx.artifacts_root)
    used = meta.get("input", {})
    frame = read_table(params.input)
    frame.columns = [str(c) for c in frame.columns]
    id_name = params.id_column or used.get("id_column")
    if used.get("template"):
        id_name = TEMPLATE_ID[used["template"]]
        frame = TEMPLATES[used["template"]](frame).rename_axis(id_name).reset_index()
    columns = used.get("columns") or [c for c in frame.columns if c != id_name]
    needed = getattr(model, "required_columns", None) or columns
    lacking = [c for c in needed if c not in frame.columns]
    if lacking:
        raise DataError(
            f"the model needs the columns {needed}; the new table lacks {lacking} "
            f"(it has {list(frame.columns)})"
        )
    if id_name is not None and id_name not in frame.columns:
        if params.id_column:
            reject_unknown_columns([id_name], list(frame.columns))
        id_name = None
    if len(frame) == 0:
        raise DataError("the new table has no rows")
    ctx.progress(1, 2, f"labelling {len(frame)} rows")
    present = [c for c in columns if c in frame.columns]  # dropped-in-fit ones may be absent
    labels = np.asarray(model.predict(frame[present]), dtype=np.int64)
    labels_frame = _labels_frame(labels, frame[id_name] if id_name else None, id_name)
    artifacts = {"labels": ctx.artifacts.write_parquet(LABELS, labels_frame)}
    sizes = pd.Series(labels).value_counts().sort_index()
    result = json_safe(
        {
            "model_from": params.model_from,
            "model_version": version,
            "algorithm": meta.get("algorithm"),
            "n_clusters": meta.get("n_clusters"),
            "rows": len(labels),
            "sizes": {str(k): int(v) for k, v in sizes.items()},
            "id_column": id_name,
            "artifacts": artifacts,
            "output": LABELS,
        }
    )
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
    report = search_report(seg)
    report["notes"] = [*prepared.notes, *report["notes"]]
    report["rows"] = len(prepared.fit_frame)
    report["features"] = [str(c) for c in prepared.features.columns]
    report["seconds"] = round(time.perf_counter() - started, 3)
    report = json_safe(report)
    report["artifacts"] = {"candidates": ctx.artifacts.write_json("candidates.json", report)}
    return report
