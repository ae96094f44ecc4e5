"""zhuge datasets put / ls / get / rm: the files jobs read, uploaded to the server by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from zhuge.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    err_console,
    print_json,
    user_errors,
    when,
)

datasets_app = typer.Typer(
    help="Upload, list, download and remove datasets: the files jobs read, by name "
    "(dataset://NAME, or dataset://NAME@sha256:... for one exact version).",
    no_args_is_help=True,
)

PROGRESS_FROM_BYTES = 64 * 1024**2  # smaller files go up without a progress bar

Sha256Opt = Annotated[
    str | None, typer.Option("--sha256", help="One version, by its SHA-256 (default: newest).")
]


def size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@contextmanager
def transfer_progress(show: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar on stderr fed as ``(phase, done, total)``; None when not shown."""
    if not show:
        yield None
        return
    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        yield update


def dataset_table(datasets: list[dict[str, Any]]) -> Table:
    tenants = len({d["tenant"] for d in datasets}) > 1
    table = Table()
    for col in (*(("tenant",) if tenants else ()), "name", "sha256", "size", "format", "created"):
        table.add_column(col, justify="right" if col == "size" else "left")
    table.add_column("by")
    for d in datasets:
        table.add_row(
            *((d["tenant"],) if tenants else ()),
            d["name"],
            d["sha256"][:12],
            size(d["size_bytes"]),
            d["format"],
            when(d["created_at"]),
            d["created_by"] or "-",
        )
    return table


@datasets_app.command("put")
def put(
    file: Annotated[Path, typer.Argument(help="A CSV or Parquet file.")],
    name: Annotated[
        str | None, typer.Option("--name", help="The dataset's name (default: the file's stem).")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="csv or parquet (default: from the content).")
    ] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload a file as a new version of a dataset and print its reference.

    Content the dataset already has is not sent again (the file is hashed first).

    Example: zhuge datasets put fleet/telemetry.parquet --name telemetry
    """
    with user_errors(json_output):
        show = not json_output and file.is_file() and file.stat().st_size >= PROGRESS_FROM_BYTES
        with transfer_progress(show) as progress:
            dataset = client(url, token).put_dataset(file, name, format=format, progress=progress)
    if json_output:
        print_json(dataset)
    else:
        console.print(dataset["ref"], highlight=False, soft_wrap=True)
        err_console.print(
            f"[dim]{dataset['name']}: {size(dataset['size_bytes'])} {dataset['format']}, "
            f"uploaded {when(dataset['created_at'])}[/]"
        )


@datasets_app.command("ls")
def ls(
    name: Annotated[str | None, typer.Option("--name", help="Only this dataset.")] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List datasets, every version, newest first (an admin sees every tenant's)."""
    with user_errors(json_output):
        datasets = client(url, token).datasets(name)
    if json_output:
        print_json(datasets)
    elif not datasets:
        console.print("no datasets")
    else:
        console.print(dataset_table(datasets))


@datasets_app.command("get")
def get(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write it.")],
    sha256: Sha256Opt = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a dataset's newest version (or --sha256's), checked against its SHA-256."""
    with user_errors(json_output):
        path = client(url, token).download_dataset(name, out, sha256)
    if json_output:
        print_json({"name": name, "path": str(path), "size_bytes": path.stat().st_size})
    else:
        console.print(f"wrote {path} ({size(path.stat().st_size)})")


@datasets_app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    sha256: Sha256Opt = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove every version of a dataset, or the one with --sha256."""
    with user_errors(json_output):
        removed = client(url, token).remove_dataset(name, sha256)
    if json_output:
        print_json(removed)
    else:
        n = removed["removed"]
        console.print(f"removed {n} version{'s' if n != 1 else ''} of {name}")
