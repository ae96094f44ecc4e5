"""``zhuge cluster``, ``zhuge cluster predict`` and ``zhuge tune``: segmentation as commands.

``cluster`` is a Typer group whose callback *is* the clustering command
(``invoke_without_command=True``), so ``zhuge cluster --input ...`` clusters and
``zhuge cluster predict ...`` labels new rows. Inputs are checked here with the job kind's own
functions before a job is submitted, so bad input fails in a second with one line and nothing
is written. The work runs as a ``cluster`` / ``cluster-predict`` / ``tune`` job on the server at
ZHUGE_URL, or on an embedded platform when none answers. The kinds' module loads pandas and
scikit-learn, so it is imported only when a command runs, keeping ``zhuge --help`` fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zhuge.cli.common import JsonOpt, console, user_errors
from zhuge.cli.run import is_local, local_path, run_and_report
from zhuge.errors import InvalidParams

CANDIDATES_SHOWN = 8  # rows of the candidates table; --json has them all
FEATURES_SHOWN = 3
TABLE_DATA = {"input": "--input"}  # parameter -> the option that names data

CLUSTER_HELP = """Segment the rows of a table: prepare, choose the algorithm, label, explain.

zhuge prepares the columns (--preprocess auto: numeric / categorical / text detection, KNN \
imputation, IsolationForest outlier flags, standard or robust scaling, one-hot, TF-IDF, PCA \
to 95 % of variance), chooses the number of clusters by the gap statistic within --k, then \
tries KMeans, Gaussian mixtures, spectral clustering, DBSCAN and HDBSCAN, judging them by \
stability across subsamples and silhouette / Calinski-Harabasz / Davies-Bouldin, with \
successive halving so most candidates see few rows. Candidates run on the Dask workers. \
Memory and time are planned first: what would not fit is refused with the reason or switched \
(with a note); a Parquet table too big for memory is streamed through MiniBatchKMeans.

\b
Examples:
  zhuge cluster --input customers.parquet --id-column customer_id --out labels.parquet
  zhuge cluster --input wine.csv --algorithm gmm --k 3 --json
  zhuge cluster --input table.parquet --columns age,income --k 2..12 --preprocess spec.json
  zhuge cluster --template rfm --input transactions.parquet --out segments.parquet
  zhuge cluster --template load-profile --input fleet.parquet --out vm_groups.parquet
  zhuge cluster predict --model-from 42 --input new.parquet --out new_labels.parquet
  zhuge cluster --input jan.parquet --algorithm kmeans --register customers   # version 1
  zhuge cluster predict --model-from customers@champion --input feb.parquet

\b
labels.parquet: label (-1 = noise for dbscan/hdbscan) in the input's row order, with the
                --id-column beside it (templates: one row per customer_id / series_id).
Artifacts of the job: labels.parquet, profile.parquet, model/ (manifest + hash), summary.json.
\b
Templates: rfm reads customer_id, timestamp, amount (recency_days, frequency, monetary per
customer); load-profile reads series_id, timestamp, value (mean 24-hour shape per VM,
h00..h23, divided by the VM's mean so VMs group by shape, not level).
"""

PREDICT_HELP = """Label new rows with the model a `zhuge cluster` job saved.

The new table needs the columns the model was fit on (templates: the same raw input, e.g. \
transactions for rfm); the same preprocessing is applied. Works for kmeans, \
minibatch-kmeans, gmm and streamed models; dbscan, hdbscan and spectral label only the rows \
they were fit on (refused, with that reason).

\b
Example:
  zhuge cluster --input jan.parquet --algorithm kmeans --out jan_labels.parquet   # job 42
  zhuge cluster predict --model-from 42 --input feb.parquet --out feb_labels.parquet
  zhuge cluster predict --model-from customers@champion --input feb.parquet   # registered

--model-from takes a cluster job's id, or a registered clustering model NAME@ALIAS or \
NAME@VERSION (zhuge cluster ... --register NAME), resolved when the job starts; the version \
it resolved to is recorded on the job (zhuge jobs show).
"""

TUNE_HELP = """Search clustering algorithms and parameters and report every candidate.

The search of `zhuge cluster` on its own: each candidate's scores (stability, silhouette, \
Calinski-Harabasz, Davies-Bouldin, BIC for GMM), how far it got in successive halving, why \
it stopped, which worker process evaluated it, and why the winner won. Nothing is labelled; \
the report is kept as the job's candidates.json.

\b
Example:
  zhuge tune --input customers.parquet --k 2..12 --json
"""

AlgorithmOpt = Annotated[
    str,
    typer.Option(
        "--algorithm",
        help="auto, kmeans, minibatch-kmeans, dbscan, hdbscan, gmm or spectral.",
    ),
]
KOpt = Annotated[
    str,
    typer.Option("--k", help="Number of clusters: 4, or a range to choose from: 2..12."),
]
ColumnsOpt = Annotated[
    str | None, typer.Option("--columns", help="Feature columns, comma-separated (default: all).")
]
PreprocessOpt = Annotated[
    str,
    typer.Option("--preprocess", help="auto, none, or a JSON spec file (zhuge.ml.preprocess)."),
]
SampleOpt = Annotated[
    int | None,
    typer.Option("--sample", help="Fit on a random sample of N rows, then label every row."),
]
IdOpt = Annotated[
    str | None,
    typer.Option("--id-column", help="Copied beside the labels; not used as a feature."),
]
TemplateOpt = Annotated[
    str | None, typer.Option("--template", help="rfm or load-profile (features from raw rows).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
MemoryOpt = Annotated[
    float | None,
    typer.Option("--memory-limit-gb", help="Memory to plan for (default: 70 % of available)."),
]


def _parse_k(text: str) -> dict[str, int | None]:
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return {"k": int(text)}
    match = re.fullmatch(r"(\d+)\s*(?:\.\.|-|:)\s*(\d+)", text)
    if not match:
        raise InvalidParams(f"--k {text!r}: give a number (4) or a range (2..12)")
    low, high = int(match.group(1)), int(match.group(2))
    if low > high:
        raise InvalidParams(
            f"--k {text!r}: the range starts above where it ends; write it low to high "
            f"({high}..{low})"
        )
    return {"k": None, "k_min": low, "k_max": high}


def _preprocess(value: str) -> Any:
    if value in ("auto", "none"):
        return value
    from zhuge.ml.preprocess import load_spec

    return load_spec(Path(value)).to_dict()


def _input_params(
    input_: str | None,
    columns: str | None,
    algorithm: str,
    k: str,
    preprocess: str,
    sample: int | None,
    id_column: str | None,
    template: str | None,
    seed: int,
    memory_limit_gb: float | None,
) -> dict[str, Any]:
    if input_ is None:
        raise InvalidParams("--input is required: the table to cluster (CSV or Parquet)")
    return {
        "input": local_path(input_),
        "columns": [c.strip() for c in columns.split(",") if c.strip()] if columns else None,
        "algorithm": algorithm,
        **_parse_k(k),
        "preprocess": _preprocess(preprocess),
        "sample": sample,
        "id_column": id_column,
        "template": template,
        "random_state": seed,
        "memory_limit_gb": memory_limit_gb,
    }


def cluster_command(
    ctx: typer.Context,
    input_: Annotated[
        str | None,
        typer.Option("--input", help="CSV or Parquet table to segment (a file or dataset://)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Download the labels to this file (Parquet), replaced whole."),
    ] = None,
    columns: ColumnsOpt = None,
    algorithm: AlgorithmOpt = "auto",
    k: KOpt = "2..10",
    preprocess: PreprocessOpt = "auto",
    sample: SampleOpt = None,
    id_column: IdOpt = None,
    template: TemplateOpt = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Stream a Parquet table in pages through MiniBatchKMeans, whatever its size "
            "(default: only when it would not fit in memory).",
        ),
    ] = False,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", help="Rows per page when streaming.")
    ] = 100_000,
    seed: SeedOpt = 0,
    memory_limit_gb: MemoryOpt = None,
    register_as: Annotated[
        str | None,
        typer.Option(
            "--register",
            help="Also register the model as the next version of this registered model (the "
            "first becomes champion; promote later ones with zhuge models promote).",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    with user_errors(json_output):
        from zhuge.jobs.cluster import ClusterParams, check_plan, choose_route, prepare_input
        from zhuge.jobs.kinds import get_kind

        params = get_kind("cluster").normalise(
            {
                **_input_params(
                    input_, columns, algorithm, k, preprocess, sample, id_column, template,
                    seed, memory_limit_gb,
                ),
                "stream": "on" if stream else "auto",
                "batch_rows": batch_rows,
                "register_as": register_as,
            }
        )  # fmt: skip
        checked = ClusterParams.model_validate(params)
        if is_local(checked.input) and not choose_route(checked).stream:
            check_plan(checked, prepare_input(checked))
        done = run_and_report(
            "cluster", params, title="clustering", json_output=json_output, data=TABLE_DATA,
            out=out,
        )  # fmt: skip
    if done:
        job, result = done
        _print_cluster(result, job)


def predict_command(
    model_from: Annotated[
        str,
        typer.Option(
            "--model-from",
            help="The cluster job's id, or a registered NAME@ALIAS / NAME@VERSION "
            "(customers@champion).",
        ),
    ],
    input_: Annotated[
        str, typer.Option("--input", help="CSV or Parquet table to label (a file or dataset://).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Download the labels to this file (Parquet), replaced whole."),
    ] = None,
    id_column: IdOpt = None,
    json_output: JsonOpt = False,
) -> None:
    with user_errors(json_output):
        from zhuge.jobs.cluster import read_table
        from zhuge.jobs.kinds import get_kind

        params = get_kind("cluster-predict").normalise(
            {
                "model_from": int(model_from) if model_from.strip().isdigit() else model_from,
                "input": local_path(input_),
                "id_column": id_column,
            }
        )
        if is_local(params["input"]):
            read_table(params["input"])  # a missing or unreadable file fails here, not in a job
        done = run_and_report(
            "cluster-predict", params, title="labelling", json_output=json_output,
            data=TABLE_DATA, out=out,
        )  # fmt: skip
    if not done:
        return
    job, result = done
    source = result.get("model_version") or f"job {result['model_from']}'s"
    table = Table(title=f"Labelled {result['rows']:,} rows with {source} "
                  f"{result['algorithm']} model (job {job['id']})")  # fmt: skip
    table.add_column("cluster", justify="right")
    table.add_column("rows", justify="right")
    for label, size in result["sizes"].items():
        table.add_row(label, f"{size:,}")
    console.print(table)
    console.print(f"labels: {result['out'] or result['artifacts']['labels']}")


def tune_command(
    input_: Annotated[
        str | None, typer.Option("--input", help="CSV or Parquet table (a file or dataset://).")
    ] = None,
    columns: ColumnsOpt = None,
    algorithm: AlgorithmOpt = "auto",
    k: KOpt = "2..10",
    preprocess: PreprocessOpt = "auto",
    sample: SampleOpt = None,
    id_column: IdOpt = None,
    template: TemplateOpt = None,
    seed: SeedOpt = 0,
    memory_limit_gb: MemoryOpt = None,
    json_output: JsonOpt = False,
) -> None:
    with user_errors(json_output):
        from zhuge.jobs.cluster import TuneParams, check_plan, prepare_input
        from zhuge.jobs.kinds import get_kind

        params = get_kind("tune").normalise(
            _input_params(
                input_, columns, algorithm, k, preprocess, sample, id_column, template, seed,
                memory_limit_gb,
            )
        )  # fmt: skip
        checked = TuneParams.model_validate(params)
        if is_local(checked.input):
            check_plan(checked, prepare_input(checked))
        done = run_and_report(
            "tune", params, title="searching", json_output=json_output, data=TABLE_DATA
        )
    if not done:
        return
    job, result = done
    _print_choice(result, f"Search over {result['rows']:,} rows (job {job['id']})")
    _print_candidates(result, show_all=True)
    processes = result.get("processes") or []
    console.print(f"candidates evaluated in {len(processes)} process(es)")


# -- output ---------------------------------------------------------------------------------


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _print_choice(result: dict[str, Any], title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    params = ", ".join(f"{k}={v}" for k, v in sorted(result["params"].items()))
    table.add_row("algorithm", f"{result['algorithm']}({params})")
    table.add_row("clusters", str(result["n_clusters"]))
    table.add_row("features", ", ".join(result.get("features", [])) or "-")
    table.add_row("preprocessing", "\n".join(result.get("preprocessing", [])))
    table.add_row("why", result["reason"])
    if result.get("notes"):
        table.add_row("[yellow]notes[/]", "\n".join(result["notes"]))
    console.print(table)


# (header, score key, digits): auto's indices, then the explicit search's criteria
_SCORE_COLUMNS = (
    ("DBCV", "dbcv", 3),
    ("DuNN", "dunn_owa", 3),
    ("silh.", "silhouette", 3),
    ("rank", "mean_rank", 1),
    ("stab.", "stability", 2),
    ("CH", "calinski_harabasz", 0),
    ("DB", "davies_bouldin", 2),
)


def _print_candidates(result: dict[str, Any], *, show_all: bool = False) -> None:
    """One line per candidate, long labels cut with an ellipsis: the shortlist first (the
    winner, then the best ranked), the rest counted; --json (or zhuge tune) lists all."""
    rows = result.get("candidates") or []
    if not rows:
        return
    shown = rows if show_all else rows[:CANDIDATES_SHOWN]
    present = [c for c in _SCORE_COLUMNS if any(c[1] in r["scores"] for r in shown)]
    if {"dbcv", "stability"} <= {c[1] for c in present}:  # auto: its own indices only
        present = [c for c in present if c[1] not in ("calinski_harabasz", "davies_bouldin")]
    decided = f", decided by {result['decided_by']}" if result.get("decided_by") else ""
    table = Table(title=f"Candidates ({len(rows)}), best first{decided}", title_justify="left")
    table.add_column("candidate", no_wrap=True, overflow="ellipsis", max_width=44)
    table.add_column("k", justify="right")
    for header, _, _ in present:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True, overflow="ellipsis", max_width=30)
    for r in shown:
        s = r["scores"]
        won = r["candidate"] == result.get("winner")
        outcome = "[bold green]winner[/]" if won else (r["eliminated"] if r["valid"] else r["note"])
        table.add_row(
            f"[green]{r['candidate']}[/]" if won else r["candidate"],
            str(r["n_clusters"]),
            *(_num(s.get(key), digits) for _, key, digits in present),
            outcome or "",
        )
    console.print(table)
    if len(rows) > len(shown):
        console.print(f"[dim]... and {len(rows) - len(shown)} more (--json lists all)[/]")


def _print_cluster(result: dict[str, Any], job: dict[str, Any]) -> None:
    streamed = " (streamed)" if result.get("streamed") else ""
    _print_choice(result, f"Segmented {result['rows']:,} rows{streamed} (job {job['id']})")
    _print_candidates(result)
    profile = Table(title="Clusters: size and what sets each apart (mean vs overall, in sd)")
    profile.add_column("cluster", justify="right")
    profile.add_column("rows", justify="right")
    profile.add_column("share", justify="right")
    profile.add_column("distinguishing features")
    for c in result.get("profile", []):
        features = "; ".join(
            f"{f['feature']} {_num(f['mean'], 2)} (overall {_num(f['overall_mean'], 2)}, "
            f"{f['difference_sd']:+.2f} sd)"
            if f.get("difference_sd") is not None
            else f"{f['feature']} {_num(f['mean'], 2)}"
            for f in c["features"][:FEATURES_SHOWN]
        )
        name = "noise (-1)" if c.get("noise") else str(c["cluster"])  # not a cluster
        profile.add_row(name, f"{c['size']:,}", f"{c['share']:.1%}", features)
    if result.get("profile"):
        console.print(profile)
    if result.get("noise"):
        console.print(f"noise (label -1): {result['noise']:,} rows")
    console.print(f"labels: {result['out'] or result['artifacts']['labels']}")
    if result.get("registered"):
        done = result["registered"]
        console.print(
            f"[bold]{done['ref']}[/] registered ({(done.get('gate') or {}).get('reason', '')}); "
            f"aliases: {', '.join(done['aliases']) or '-'}"
        )
    console.print(
        f"[dim]model: {result['artifacts']['model']}  "
        f"(label new rows: zhuge cluster predict --model-from {job['id']} --input NEW)[/]"
    )


def register(app: typer.Typer) -> None:
    """Add ``cluster`` (with ``predict``) and ``tune`` to ``app``."""
    cluster_app = typer.Typer(
        name="cluster",
        help=CLUSTER_HELP,
        invoke_without_command=True,
        no_args_is_help=False,
    )
    cluster_app.callback()(cluster_command)
    cluster_app.command("predict", help=PREDICT_HELP)(predict_command)
    app.add_typer(cluster_app, name="cluster")
    app.command("tune", help=TUNE_HELP)(tune_command)
