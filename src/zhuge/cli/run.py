"""Run one job to completion for a convenience command (``zhuge forecast``, ``zhuge cluster``...).

The job goes to the server at ZHUGE_URL when one answers; otherwise an embedded platform is
started in-process for the duration of the command (same store, same Dask, same code path),
so the commands work on a laptop with nothing running. Progress is shown as a bar.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from zhuge.cli.common import err_console
from zhuge.client import Client, default_token, default_url
from zhuge.errors import ZhugeError

POLL_SECONDS = 0.25


def local_path(value: str | Path | None) -> str | None:
    """Absolute path for a local file (workers may run elsewhere); URLs pass through."""
    if value is None:
        return None
    text = str(value)
    if "://" in text:
        return text
    return str(Path(text).expanduser().resolve())


def _progress_bar(json_output: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[state]}"),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
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


def _via_server(client: Client, kind: str, params: dict[str, Any], title: str, json_output: bool):
    job = client.submit(kind, params)
    try:
        return _follow(lambda: client.get(job.id).raw, title, json_output)
    except KeyboardInterrupt:
        client.cancel(job.id)
        err_console.print(f"cancelled job {job.id}")
        raise typer.Exit(130) from None


def _embedded(kind: str, params: dict[str, Any], title: str, json_output: bool):
    from zhuge.api.schemas import JobOut
    from zhuge.config import Settings
    from zhuge.jobs.model import Principal
    from zhuge.jobs.service import submit_job
    from zhuge.platform import ADMIN_TENANT, Platform

    settings = Settings.from_env()
    if not json_output:
        err_console.print(
            f"[dim]no zhuge server at {default_url()}; running in-process (home {settings.home})[/]"
        )
    with Platform(settings) as platform:
        assert platform.store is not None and platform.scheduler is not None
        admin = Principal(token_id="embedded", tenant=ADMIN_TENANT, role="admin")
        job, _ = submit_job(
            platform.store, principal=admin, settings=platform.settings, kind=kind, params=params
        )
        platform.scheduler.notify()
        store = platform.store
        try:
            return _follow(
                lambda: JobOut.of(store.get(job.id), settings.artifacts_root).model_dump(
                    mode="json"
                ),
                title,
                json_output,
            )
        except KeyboardInterrupt:
            store.cancel(job.id)
            raise typer.Exit(130) from None


def run_job(kind: str, params: dict[str, Any], *, title: str, json_output: bool) -> dict[str, Any]:
    """Submit ``kind`` with ``params``, wait with a progress bar, return the finished job
    (as the API describes it). Exits 1 with the job's error if it did not succeed."""
    client = Client(default_url(), default_token())
    embedded = os.environ.get("ZHUGE_EMBEDDED") == "1" or not client.health()
    try:
        if embedded:
            job = _embedded(kind, params, title, json_output)
        else:
            job = _via_server(client, kind, params, title, json_output)
    finally:
        client.close()
    if job["state"] != "succeeded":
        message = job.get("error") or f"job {job['id']} ended {job['state']}"
        raise ZhugeError(f"{kind} failed: {message}", details={"job_id": job["id"]})
    return job


def run_and_report(
    kind: str, params: dict[str, Any], *, title: str, json_output: bool
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``run_job``, then the end every convenience command shares: with ``--json`` print
    ``{"job_id": ..., **result}`` and return None; else return ``(job, result)`` to print."""
    job = run_job(kind, params, title=title, json_output=json_output)
    if json_output:
        from zhuge.cli.common import print_json

        print_json({"job_id": job["id"], **job["result"]})
        return None
    return job, job["result"]
