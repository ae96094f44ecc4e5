"""``zhuge plot forecast|plan|clusters JOB``: pictures of a finished job's output, for when
looking beats reading; ``zhuge forecast ... --plot out.png`` draws one as the job ends.

The pictures are drawn by matplotlib (the ``plot`` extra) with its object API (a ``Figure``
of its own, no pyplot state, no display needed). Each drawing function takes frames and a
path, so it is the same whether the frames came from a job's artifacts or a local file:

- forecast: a series' history (when the telemetry can be read), its forecast ``yhat`` and
  the widest quantile interval as a band;
- plan: a timeline of migration windows, one lane per host (per VM without a VM table);
- clusters: each cluster's profile (its mean of every standardised feature) and the rows in a
  2-D projection (PCA of the standardised numeric features) coloured by cluster.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zhuge.cli.common import JsonOpt, console, print_json, user_errors
from zhuge.cli.run import checked_out, connect
from zhuge.errors import DataError, MissingDependency

if TYPE_CHECKING:  # numpy and pandas load when a plot is drawn, not with every command
    import pandas as pd

plot_app = typer.Typer(
    help="Draw a finished job's output as a PNG (needs the plot extra: "
    "pip install 'zhuge\\[plot]').",
    no_args_is_help=True,
)

MAX_LANES = 40  # hosts (or VMs) drawn in a plan's timeline; the busiest first
MAX_POINTS = 20_000  # rows drawn in a cluster projection (a random sample above)


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependency(
            "plots need matplotlib: pip install 'zhuge[plot]' (or pip install matplotlib)"
        ) from exc
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, out: Path) -> Path:
    out = Path(out).expanduser().absolute()
    if not out.parent.is_dir():
        raise DataError(f"--out {out}: cannot write it, folder {out.parent} does not exist")
    fig.savefig(out, dpi=110)
    return out


# -- drawings -----------------------------------------------------------------------------


def draw_forecast(
    forecast: pd.DataFrame,
    out: Path,
    *,
    series: str | None = None,
    history: pd.DataFrame | None = None,
    history_points: int = 7 * 24 * 12,
) -> Path:
    """History, forecast and the widest interval of one series (``series``, else the
    first) of a forecast frame (``series_id, timestamp, yhat [, yhat_qNN ...]``)."""

    if forecast.empty:
        raise DataError("the forecast is empty: nothing to draw")
    ids = forecast["series_id"].astype(str)
    chosen = str(series) if series is not None else ids.iloc[0]
    rows = forecast[ids == chosen].sort_values("timestamp")
    if rows.empty:
        some = ", ".join(ids.drop_duplicates().head(5))
        raise DataError(f"--series {chosen}: no such series in the forecast (it has {some}, ...)")
    fig = _figure(10, 4)
    ax = fig.add_subplot()
    if history is not None and not history.empty:
        past = history[history["series_id"].astype(str) == chosen].sort_values("timestamp")
        past = past.tail(history_points)
        if not past.empty:
            ax.plot(past["timestamp"], past["value"], color="0.35", lw=0.8, label="history")
    quantiles = sorted(c for c in rows.columns if c.startswith("yhat_q"))
    if len(quantiles) >= 2:
        low, high = quantiles[0], quantiles[-1]
        ax.fill_between(
            rows["timestamp"],
            rows[low],
            rows[high],
            color="tab:blue",
            alpha=0.2,
            label=f"{low.removeprefix('yhat_')}-{high.removeprefix('yhat_')}",
        )
    ax.plot(rows["timestamp"], rows["yhat"], color="tab:blue", lw=1.6, label="forecast")
    ax.set_title(f"{chosen}: forecast" + (f" ({rows['model'].iloc[0]})" if "model" in rows else ""))
    ax.set_ylabel("CPU %")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, out)


def draw_plan(plan: pd.DataFrame, out: Path, *, vms: pd.DataFrame | None = None) -> Path:
    """A timeline of a migration plan: each placed VM's window as a bar in its host's lane
    (``vms``: the VM table, ``vm_id, host_id``), coloured by predicted downtime."""
    import pandas as pd

    placed = plan.dropna(subset=["start"]).copy()
    if placed.empty:
        raise DataError("the plan placed no VM: nothing to draw")
    placed["start"] = pd.to_datetime(placed["start"])
    placed["end"] = pd.to_datetime(placed["end"])
    lane = "vm_id"
    if vms is not None and {"vm_id", "host_id"} <= set(vms.columns):
        hosts = vms.drop_duplicates("vm_id").set_index("vm_id")["host_id"]
        placed["host_id"] = placed["vm_id"].map(hosts).fillna("?").astype(str)
        lane = "host_id"
    busiest = placed[lane].value_counts().index[:MAX_LANES]
    shown = placed[placed[lane].isin(busiest)]
    lanes = {name: i for i, name in enumerate(sorted(busiest, key=str))}
    fig = _figure(11, max(3.0, 0.3 * len(lanes) + 1.5))
    ax = fig.add_subplot()
    downtime = shown["predicted_downtime_ms"].astype(float)
    span = (downtime.max() - downtime.min()) or 1.0
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    # a migration lasts seconds in a day-long plan: drawn at least 1/150 of the span wide
    least = (shown["end"].max() - shown["start"].min()) / 150
    for row, d in zip(shown.itertuples(index=False), downtime, strict=True):
        y = lanes[getattr(row, lane)]
        width = max(row.end - row.start, least)
        ax.barh(y, width, left=row.start, height=0.7, color=cmap((d - downtime.min()) / span))
    ax.set_yticks(list(lanes.values()), [str(k) for k in lanes])
    ax.set_xlabel("migration window")
    what = "host" if lane == "host_id" else "VM"
    more = (
        f" ({MAX_LANES} busiest of {placed[lane].nunique()})"
        if len(lanes) < placed[lane].nunique()
        else ""
    )
    ax.set_title(f"migration plan: {len(placed):,} VMs by {what}{more}; colour = downtime")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)


def draw_clusters(labels: pd.DataFrame, out: Path, *, features: pd.DataFrame | None) -> Path:
    """Each cluster's profile (mean of each standardised numeric feature) and a 2-D PCA
    projection of the rows, coloured by cluster; cluster sizes alone without ``features``."""
    import numpy as np
    import pandas as pd

    label = labels["label"].to_numpy()
    fig = _figure(12, 5)
    numeric = None if features is None else features.select_dtypes("number")
    if numeric is None or numeric.shape[1] == 0 or len(numeric) != len(label):
        # no table, or not one row per label (a template's telemetry): sizes only
        ax = fig.add_subplot()
        sizes = pd.Series(label).value_counts().sort_index()
        ax.bar([str(k) for k in sizes.index], sizes.to_numpy(), color="tab:blue")
        ax.set_xlabel("cluster")
        ax.set_title("cluster sizes (--input: the table clustered, for profiles)")
        return _save(fig, out)
    values = numeric.to_numpy(dtype="float64")
    values = np.where(np.isfinite(values), values, np.nan)
    mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    z = np.nan_to_num((values - mean) / np.where(std > 0, std, 1.0))
    profile_ax, points_ax = fig.subplots(1, 2, width_ratios=[1, 1.2])
    clusters = sorted(set(label.tolist()))
    profile = np.array([z[label == c].mean(axis=0) for c in clusters])
    image = profile_ax.imshow(profile, aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2)
    profile_ax.set_yticks(range(len(clusters)), [f"{c} ({(label == c).sum():,})" for c in clusters])
    profile_ax.set_xticks(range(numeric.shape[1]), list(numeric.columns), rotation=45, ha="right")
    profile_ax.set_title("profile: mean of each feature (std units)")
    fig.colorbar(image, ax=profile_ax, shrink=0.8)
    rng = np.random.default_rng(0)
    keep = rng.choice(len(z), MAX_POINTS, replace=False) if len(z) > MAX_POINTS else slice(None)
    centred = z - z.mean(axis=0)
    axes = np.linalg.svd(centred[keep], full_matrices=False)[2][:2]
    xy = centred[keep] @ axes.T
    if xy.shape[1] == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    scatter = points_ax.scatter(xy[:, 0], xy[:, 1], c=label[keep], cmap="tab10", s=6)
    points_ax.legend(*scatter.legend_elements(), title="cluster", loc="best", fontsize="small")
    points_ax.set_title("rows, 2-D projection (PCA)")
    return _save(fig, out)


# -- reading a job's output and inputs --------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    from zhuge.data.sources import read_csv, sniff_format

    if sniff_format(str(path)) == "csv":
        return read_csv(path)  # type: ignore[return-value]
    return pd.read_parquet(path)


def _finished(c: Any, job_id: int, kinds: tuple[str, ...]) -> dict[str, Any]:
    job = c.get(job_id).raw
    if job["kind"] not in kinds:
        raise DataError(f"job {job_id} is a {job['kind']} job, not {' or '.join(kinds)}")
    if job["state"] != "succeeded":
        raise DataError(f"job {job_id} is {job['state']}: only a succeeded job has an output")
    return job


def _output(c: Any, job: dict[str, Any], folder: Path) -> pd.DataFrame:
    import pandas as pd

    name = job["result"]["output"]
    path = c.download_artifact(job["id"], name, folder / Path(name).name)
    return pd.read_parquet(path)


def _job_data(c: Any, value: Any, folder: Path, given: Path | None) -> pd.DataFrame | None:
    """A job's data parameter as a frame: the ``given`` file, else the dataset it names
    (downloaded), else its path when this machine can read it; None when it cannot."""
    if given is not None:
        if not Path(given).expanduser().is_file():
            raise DataError(f"{given}: no such file")
        return _read_table(Path(given).expanduser())
    if not isinstance(value, str):
        return None
    if value.startswith("dataset://"):
        name, _, digest = value.removeprefix("dataset://").partition("@")
        path = c.download_dataset(name, folder / "input", digest.removeprefix("sha256:") or None)
        return _read_table(path)
    path = Path(value)
    return _read_table(path) if "://" not in value and path.is_file() else None


def _history(frame: pd.DataFrame | None, job: dict[str, Any]) -> pd.DataFrame | None:
    if frame is None:
        return None
    from zhuge.data.sources import _standardise

    params = job.get("params") or {}
    try:
        return _standardise(
            frame, params.get("columns") or {}, params.get("timestamp_unit", "auto"), "input"
        ).frame
    except DataError:
        return None  # the history is a nicety; the forecast is drawn without it


def _report(out: Path, json_output: bool, what: str) -> None:
    if json_output:
        print_json({"plot": str(out)})
    else:
        console.print(f"{what}: {out}")


PlotOut = Annotated[Path, typer.Option("--out", help="The PNG to write.")]
InputPlotOpt = Annotated[
    Path | None,
    typer.Option("--input", help="The job's input file (default: its dataset, or its path)."),
]


@plot_app.command("forecast")
def plot_forecast(
    job_id: Annotated[int, typer.Argument(help="A succeeded forecast job.")],
    series: Annotated[
        str | None, typer.Option("--series", help="The series to draw (default: the first).")
    ] = None,
    out: PlotOut = Path("forecast.png"),
    input_: InputPlotOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """One series' history, forecast and interval. Example: zhuge plot forecast 12 --series vm-1"""
    with user_errors(json_output), tempfile.TemporaryDirectory() as tmp, connect(json_output) as c:
        job = _finished(c, job_id, ("forecast",))
        forecast = _output(c, job, Path(tmp))
        history = _history(_job_data(c, job["params"].get("input"), Path(tmp), input_), job)
        written = draw_forecast(forecast, out, series=series, history=history)
    _report(written, json_output, "forecast plot")


@plot_app.command("plan")
def plot_plan(
    job_id: Annotated[int, typer.Argument(help="A succeeded plan-migration job.")],
    out: PlotOut = Path("plan.png"),
    vms: Annotated[
        Path | None,
        typer.Option("--vms", help="The VM table, for one lane per host (default: the job's)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """A per-host timeline of the plan's migration windows. Example: zhuge plot plan 14"""
    with user_errors(json_output), tempfile.TemporaryDirectory() as tmp, connect(json_output) as c:
        job = _finished(c, job_id, ("plan-migration",))
        plan = _output(c, job, Path(tmp))
        table = _job_data(c, job["params"].get("vms"), Path(tmp), vms)
        written = draw_plan(plan, out, vms=table)
    _report(written, json_output, "plan plot")


@plot_app.command("clusters")
def plot_clusters(
    job_id: Annotated[int, typer.Argument(help="A succeeded cluster or cluster-predict job.")],
    out: PlotOut = Path("clusters.png"),
    input_: InputPlotOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Each cluster's profile and a 2-D projection. Example: zhuge plot clusters 11"""
    with user_errors(json_output), tempfile.TemporaryDirectory() as tmp, connect(json_output) as c:
        job = _finished(c, job_id, ("cluster", "cluster-predict"))
        labels = _output(c, job, Path(tmp))
        features = _job_data(c, job["params"].get("input"), Path(tmp), input_)
        written = draw_clusters(labels, out, features=features)
    _report(written, json_output, "clusters plot")


# -- zhuge forecast ... --plot ------------------------------------------------------------


def require_matplotlib() -> None:
    """Fail before a job runs, not after, when the picture cannot be drawn."""
    _figure(1, 1)


@contextmanager
def forecast_download(out: Path | None, plot: Path | None) -> Iterator[Path | None]:
    """Where ``zhuge forecast`` downloads its forecast: ``out``, or a temporary file when only
    ``--plot`` needs it (checked, with matplotlib, before the job runs)."""
    if plot is None or out is not None:
        if plot is not None:
            checked_out(plot, "--plot")
            require_matplotlib()
        yield out
        return
    checked_out(plot, "--plot")
    require_matplotlib()
    with tempfile.TemporaryDirectory(prefix="zhuge-plot-") as tmp:
        yield Path(tmp) / "forecast.parquet"


def draw_forecast_file(
    forecast: Path,
    plot: Path,
    *,
    telemetry: str | None,
    columns: str | None,
    timestamp_unit: str,
) -> Path:
    """The first series of a downloaded forecast, with its history from ``telemetry`` when
    that is a local file this command can read."""
    import pandas as pd

    history = None
    if telemetry and "://" not in telemetry and Path(telemetry).expanduser().exists():
        from zhuge.data.sources import read_telemetry

        try:
            history = read_telemetry(
                Path(telemetry).expanduser(), columns=columns, timestamp_unit=timestamp_unit
            ).frame
        except DataError:
            history = None  # drawn without it
    return draw_forecast(pd.read_parquet(forecast), plot, history=history)
