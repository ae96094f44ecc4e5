"""Run jobs for a convenience command (``zhuge forecast``, ``zhuge cluster``...), one way
whether the platform is a remote server or embedded in this process.

:func:`connect` gives a ``Client`` of the server at ZHUGE_URL when one answers; otherwise it
starts an embedded platform for the command (the admin of its own ZHUGE_HOME) and serves its
API privately to this process (:mod:`zhuge.api.private_server`). Either way everything goes
through the API, so what works here works against a remote server:

- a local file given to a data option becomes a dataset, uploaded once and then reused by
  digest, unless it lies under the server's allowed roots for this tenant (:func:`data_ref`);
- the job is submitted and followed with a progress bar; Ctrl-C cancels it;
- ``--out FILE`` downloads the job's output artifact and replaces FILE only once it is
  complete (:func:`save_output`); a job that fails leaves FILE as it was.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from zhuge.cli.common import count, err_console
from zhuge.client import Client, default_token, default_url
from zhuge.errors import ConfigError, DataError, ZhugeError

POLL_SECONDS = 0.25

# the server's data roots for a client's token, asked once per command
_roots: weakref.WeakKeyDictionary[Client, list[Path]] = weakref.WeakKeyDictionary()


@contextmanager
def connect(json_output: bool = False) -> Iterator[Client]:
    """A client of the server at ZHUGE_URL if one answers (and ZHUGE_EMBEDDED is not 1), else
    of an embedded platform that lives as long as the block."""
    remote = Client(default_url(), default_token())
    if os.environ.get("ZHUGE_EMBEDDED") != "1" and remote.health():
        with remote:
            yield remote
        return
    remote.close()
    if detach.on:
        raise ConfigError(
            f"--detach needs a zhuge server (zhuge up; none answers at {default_url()}): on an "
            "in-process platform the job would stop with this command"
        )
    with _embedded(json_output) as client:
        yield client


@contextmanager
def _embedded(json_output: bool) -> Iterator[Client]:
    from zhuge.api.private_server import serve_privately
    from zhuge.config import Settings
    from zhuge.platform import Platform

    settings = Settings.from_env()
    if not json_output:
        err_console.print(
            f"[dim]no zhuge server at {default_url()}; running in-process (home {settings.home})[/]"
        )
    with ExitStack() as stack:
        stack.enter_context(_quiet_dask())
        try:
            # Ctrl-C while Dask starts would leave it half-made (tracebacks at exit): it is
            # taken once the platform is up, then everything stops in order
            with _interrupt_when_started():
                platform = stack.enter_context(Platform(settings))
                api = stack.enter_context(serve_privately(platform.app()))
                client = stack.enter_context(
                    Client(api.url, platform.token, transport=api.transport)
                )
                _quiet_workers(platform)
        except KeyboardInterrupt:
            stack.close()
            err_console.print("interrupted: nothing was submitted")
            raise typer.Exit(130) from None
        yield client


@contextmanager
def _interrupt_when_started() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it; say so when pressed."""
    pressed: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        if not pressed:
            err_console.print("stopping once the in-process platform has started...")
        pressed.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


# Dask's own reports of a shutdown this command asked for: tasks cut short (CancelledError),
# a worker still busy with a cancelled job killed, its semaphores then "leaked". Errors remain.
_DASK_LOGGERS = ("distributed", "distributed.worker.state_machine", "distributed.nanny")
_TRACKER_WARNING = "ignore::UserWarning:multiprocessing.resource_tracker"


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask logs errors only in this process, and the processes it starts ignore the
    semaphore warning (PYTHONWARNINGS), for an embedded platform's life; restored after."""
    saved = {name: logging.getLogger(name).level for name in _DASK_LOGGERS}
    warnings_before = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (warnings_before, _TRACKER_WARNING)))
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if warnings_before is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = warnings_before


def _quiet_unraisable(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``hook`` but for a Dask client of a job cut short, closed by the garbage collector
    after its event loop ("IOLoop is closed"): nothing a user could act on."""

    def quiet(unraisable: Any) -> None:
        closed_loop = isinstance(unraisable.exc_value, RuntimeError) and "IOLoop is closed" in (
            str(unraisable.exc_value)
        )
        if not (closed_loop and "distributed" in getattr(unraisable.object, "__module__", "")):
            hook(unraisable)

    return quiet


def _not_a_lost_heartbeat(record: logging.LogRecord) -> bool:
    """False for a worker's "Failed to communicate with scheduler during heartbeat": the
    embedded scheduler lives in this command's process, so a worker loses it only while the
    command shuts the platform down (a heartbeat in flight as the worker closes its
    connections, seen after Ctrl-C)."""
    return not record.getMessage().startswith("Failed to communicate with scheduler")


def _quiet_workers(platform: Any) -> None:
    """Each Dask worker of the embedded cluster logs errors only: its "ended with
    CancelledError" warnings are the command's own Ctrl-C."""
    executor = getattr(platform, "executor", None)
    dask_client = getattr(executor, "client", None)
    if dask_client is None or getattr(executor, "cluster", None) is None:
        return  # an existing cluster's workers are not ours to quiet
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietShutdown(WorkerPlugin):
        name = "zhuge-cli-quiet-shutdown"

        def setup(self, worker: Any) -> None:
            for logger in _DASK_LOGGERS:
                logging.getLogger(logger).setLevel(logging.ERROR)
            logging.getLogger("distributed.worker").addFilter(_not_a_lost_heartbeat)
            sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)

    dask_client.register_plugin(QuietShutdown())


def local_path(value: str | Path | None) -> str | None:
    """Absolute path for a local file; URLs and references pass through."""
    if value is None:
        return None
    text = str(value)
    if "://" in text:
        return text
    return str(Path(text).expanduser().resolve())


def is_local(value: str | Path | None) -> bool:
    """True for a local path (or nothing): the command can read it to check it before it
    submits; a URL or a dataset or connection reference only the server can read."""
    return value is None or "://" not in str(value)


def data_ref(client: Client, value: str | Path | None, *, flag: str) -> str | None:
    """What the server is to read for data option ``flag``'s ``value``: URLs and references
    (``dataset://``, ``connection://``) as given; a local path under one of the server's
    allowed roots for this tenant as its absolute path; any other local file as the reference
    of a dataset it is uploaded to (``Client.put_dataset``: content the server already has,
    by SHA-256, is not sent again)."""
    if value is None:
        return None
    text = str(value)
    if not is_local(text):
        return text
    path = Path(text).expanduser().resolve()
    if not path.exists():
        raise DataError(f"{flag} {text}: no such file")
    roots = _server_roots(client)
    if any(path.is_relative_to(root) for root in roots):
        return str(path)
    if not path.is_file():
        where = ", ".join(map(str, roots)) or "none are set"
        raise DataError(
            f"{flag} {text} is a folder outside the server's data roots ({where}): give a "
            "file, which is uploaded as a dataset, or a folder under a root"
        )
    return client.put_dataset(path)["ref"]


def _server_roots(client: Client) -> list[Path]:
    if client not in _roots:
        _roots[client] = [Path(root).resolve() for root in client.data_roots()]
    return _roots[client]


def data_refs(client: Client, params: dict[str, Any], flags: Mapping[str, str]) -> dict[str, Any]:
    """``params`` with each data parameter named in ``flags`` (parameter -> option, as
    ``{"input": "--input"}``) turned into what the server reads (:func:`data_ref`)."""
    return {**params, **{k: data_ref(client, params.get(k), flag=f) for k, f in flags.items()}}


def read_with_sep(options: dict[str, Any], flag: str = "--input") -> dict[str, Any]:
    """``options`` without its ``sep``; with one (``--sep ';'``), the local CSV its ``input``
    names is read with that separator (its decimal comma still detected) and sent as a
    temporary Parquet file instead, so the server never has to guess. Without one the
    server detects the separator itself (:func:`zhuge.data.sources.sniff_csv`)."""
    options = dict(options)
    sep = options.pop("sep", None)
    if sep is None:
        return options
    source = options.get("input")
    if source is None or not is_local(source):
        raise DataError(f"--sep applies to a local CSV given to {flag}, not to {source or '--sql'}")
    from zhuge.data.sources import read_csv, sniff_format

    path = Path(source)
    if not path.is_file():
        raise DataError(f"{flag} {source}: no such file")
    if sniff_format(str(path)) != "csv":
        raise DataError(f"--sep applies to CSV input; {flag} {source} is Parquet")
    frame = read_csv(path, sep=sep)
    from zhuge.data.sources import _standardise

    # checked here, where errors can name the file given rather than its temporary copy
    _standardise(
        frame.head(2000),
        options.get("columns") or {},
        options.get("timestamp_unit") or "auto",
        f"{flag} {source} (read with --sep {sep!r})",
    )
    folder = Path(tempfile.mkdtemp(prefix="zhuge-sep-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    converted = folder / f"{path.stem}.parquet"
    frame.to_parquet(converted, index=False)
    return {**options, "input": str(converted)}


def refuse_telemetry_as_forecast(value: str | None, flag: str = "--forecast") -> None:
    """A local file given as a forecast that holds telemetry (``value``, no ``yhat``) is
    refused with the option it was meant for, rather than as a forecast missing ``yhat``."""
    if value is None or not is_local(value) or not Path(value).is_file():
        return
    from zhuge.data.sources import read_csv, sniff_format

    if sniff_format(value) == "parquet":
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(value).names)
        except (OSError, ValueError):
            return  # unreadable: the planner's own check says so
    else:
        names = set(read_csv(value, nrows=1).columns)  # type: ignore[union-attr]
    if "yhat" not in names and names & {"value", "cpu", "load"}:
        raise DataError(
            f"{flag} {value} holds telemetry (a value column, no yhat), not a forecast: give "
            f"it to --input, which forecasts first (zhuge plan-migrations --input {value} ...)"
        )


def checked_out(out: Path | None, flag: str = "--out") -> Path | None:
    """``out`` made absolute, once it is sure it can be written (its folder exists and it is
    not a folder): checked before the job runs, so a typo costs no work."""
    if out is None:
        return None
    path = Path(out).expanduser().absolute()
    if not path.parent.is_dir():
        raise DataError(f"{flag} {out}: cannot write it, folder {path.parent} does not exist")
    if path.is_dir():
        raise DataError(f"{flag} {out}: cannot write it, it is a folder")
    return path


def save_output(client: Client, job: dict[str, Any], out: Path | None) -> str | None:
    """Download the artifact the job's result names as its ``output`` to ``out``, replacing
    the file only once the download is complete; the path written, or None."""
    if out is None:
        return None
    return str(client.download_artifact(job["id"], job["result"]["output"], out))


class _CountColumn(ProgressColumn):
    """``4.9/25`` (rounded) once the job reports a total; nothing before."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{count(task.completed)}/{count(task.total)}")


class _EtaColumn(TimeRemainingColumn):
    """``eta 0:01:20`` once the job reports a total and has moved; nothing before."""

    def render(self, task: Task) -> Text:
        if task.total is None or not task.completed or task.finished:
            return Text("")
        return Text("eta ", style="progress.remaining") + super().render(task)


def _progress_bar(json_output: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _CountColumn(),
        TextColumn("{task.fields[state]}"),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        _EtaColumn(),
        console=err_console,
        transient=False,
        disable=json_output,
    )


def _follow(get: Callable[[], dict[str, Any]], title: str, json_output: bool) -> dict[str, Any]:
    with _progress_bar(json_output) as bar:
        task = bar.add_task(title, total=None, state="queued", message="")
        while True:
            job = get()
            progress = job.get("progress") or {}
            total = progress.get("total")
            bar.update(
                task,
                total=total if total else None,
                completed=progress.get("done", 0),
                state=job["state"],
                message=str(progress.get("message", ""))[:60],
            )
            if job["state"] in ("succeeded", "cancelled", "dead"):
                if job["state"] == "succeeded" and total:
                    bar.update(task, completed=total)
                return job
            time.sleep(POLL_SECONDS)


class _Detach:
    """``zhuge --detach`` (or ``--detach`` after a convenience command): submit, say how to
    follow the job, and return, rather than wait. Set by the ``zhuge`` callback each run."""

    on: bool = False


detach = _Detach()


def _detached(client: Client, job_id: int, kind: str, out: Path | None, json_output: bool) -> None:
    follow = [
        f"zhuge jobs wait {job_id}",
        f"zhuge jobs logs {job_id} --follow",
        f"zhuge jobs show {job_id}",
        f"zhuge jobs download {job_id} --out {out or 'FILE'}",
        f"zhuge jobs cancel {job_id}",
    ]
    if json_output:
        from zhuge.cli.common import print_json

        print_json({"job_id": job_id, "kind": kind, "state": "queued", "follow": follow})
    else:
        from zhuge.cli.common import console

        console.print(f"job [bold]{job_id}[/] ({kind}) submitted; it runs without this command")
        for line in follow:
            console.print(f"  {line}", highlight=False)


def run_job(
    client: Client,
    kind: str,
    params: dict[str, Any],
    *,
    title: str,
    json_output: bool,
    out: Path | None = None,
) -> dict[str, Any]:
    """Submit ``kind`` with ``params``, wait with a progress bar, return the finished job
    (as the API describes it). Raises with the job's error if it did not succeed; Ctrl-C
    cancels the job and exits 130. With ``--detach``: print the job's id and the commands
    that follow it, and exit 0."""
    submitted = client.submit(kind, params)
    if detach.on:
        _detached(client, submitted.id, kind, out, json_output)
        raise typer.Exit(0)
    try:
        return follow_job(client, submitted.id, kind=kind, title=title, json_output=json_output)
    except KeyboardInterrupt:
        client.cancel(submitted.id)
        err_console.print(f"cancelled job {submitted.id}")
        raise typer.Exit(130) from None


def follow_job(
    client: Client, job_id: int, *, kind: str, title: str, json_output: bool
) -> dict[str, Any]:
    """Wait for a submitted job with a progress bar and return it (as the API describes it);
    raise with its error if it did not succeed."""
    job = _follow(lambda: client.get(job_id).raw, title, json_output)
    if job["state"] != "succeeded":
        message = job.get("error") or f"job {job['id']} ended {job['state']}"
        raise ZhugeError(f"{kind} failed: {message}", details={"job_id": job["id"]})
    return job


def run_and_report(
    kind: str,
    params: dict[str, Any],
    *,
    title: str,
    json_output: bool,
    data: Mapping[str, str] | None = None,
    out: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """What every convenience command does once its options are checked: connect, turn the
    data parameters named in ``data`` (parameter -> option) into what the server reads, run
    the job, download its output to ``out``. With ``--json`` print ``{"job_id": ...,
    **result, "out": ...}`` and return None; else return ``(job, result)`` to print, the
    result's ``out`` being the file written (or None)."""
    out = checked_out(out)
    with connect(json_output) as client:
        params = data_refs(client, params, data or {})
        job = run_job(client, kind, params, title=title, json_output=json_output, out=out)
        result = {**job["result"], "out": save_output(client, job, out)}
    if json_output:
        from zhuge.cli.common import print_json

        print_json({"job_id": job["id"], **result})
        return None
    return job, result
