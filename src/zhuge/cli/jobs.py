"""zhuge submit / jobs ... / status / kinds: the job queue from the command line."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.panel import Panel
from rich.table import Table

from zhuge.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    err_console,
    print_json,
    progress_text,
    seconds,
    styled_state,
    user_errors,
    when,
)
from zhuge.errors import InvalidRequest, WaitTimeout
from zhuge.jobs.admission import parse_duration
from zhuge.jobs.queues import MAX_GANG

jobs_app = typer.Typer(help="Inspect and control jobs.", no_args_is_help=True)


def parse_params(pairs: list[str], params_file: Path | None) -> dict[str, Any]:
    """``key=value`` pairs over an optional JSON file; values are JSON where they parse
    (``seconds=1.5`` is a number, ``name=web`` a string, ``ids=[1,2]`` a list)."""
    params: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text())
        except OSError as exc:
            raise InvalidRequest(f"cannot read {params_file}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{params_file} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InvalidRequest(f"{params_file} must hold a JSON object of parameters")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"--param {pair!r} is not key=value")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params


class Placement(StrEnum):
    binpack = "binpack"
    spread = "spread"


_RESOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")


def parse_timeout(value: str | None) -> float | None:
    """``--timeout``: seconds, or a duration such as 90s, 30m, 2h."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise typer.BadParameter(f"must be more than 0 seconds, not {value!r}")
    return seconds


def parse_resources(
    *, cpu: float | None, memory: float | None, gpu: float, pairs: list[str]
) -> dict[str, float] | None:
    """The resources of ``--cpu``, ``--memory`` (GB: ``memory_gb``), ``--gpu`` and each
    ``--resource name=amount``; None (the kind's own) when none is given."""
    resources: dict[str, float] = {}
    for flag, name, amount in (("--cpu", "CPU", cpu), ("--memory", "memory_gb", memory)):
        if amount is not None:
            if amount <= 0:
                raise typer.BadParameter(f"must be more than 0, not {amount:g}", param_hint=flag)
            resources[name] = amount
    if gpu > 0:
        resources["GPU"] = gpu
    elif gpu < 0:
        raise typer.BadParameter(f"must be 0 or more, not {gpu:g}", param_hint="--gpu")
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not _RESOURCE_NAME.fullmatch(name):
            raise typer.BadParameter(
                f"{pair!r} is not name=amount (a name of letters, digits and _, e.g. ssd=1)",
                param_hint="--resource",
            )
        try:
            amount = float(raw)
        except ValueError:
            amount = float("nan")
        if not amount > 0 or amount == float("inf"):
            raise typer.BadParameter(
                f"{pair!r}: the amount must be a number more than 0", param_hint="--resource"
            )
        if name in resources:
            raise typer.BadParameter(f"{name} is given twice", param_hint="--resource")
        resources[name] = amount
    return resources or None


def parse_after(value: str | None) -> list[int]:
    """``--after 12,13``: job ids, comma-separated."""
    if not value:
        return []
    ids = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise typer.BadParameter(
                f"{part!r} is not a job id: give ids separated by commas, e.g. 12,13",
                param_hint="--after",
            )
        ids.append(int(part))
    return ids


def job_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(show_lines=False)
    for col in ("id", "kind", "state", "attempt", "prio", "created", "took", "worker"):
        table.add_column(col, justify="right" if col in ("id", "attempt", "prio") else "left")
    for j in jobs:
        table.add_row(
            str(j["id"]),
            j["kind"],
            styled_state(j["state"]),
            f"{j['attempt']}/{j['max_attempts']}",
            str(j["priority"]),
            when(j["created_at"]),
            seconds(j["duration_seconds"]),
            j["worker"] or "-",
        )
    return table


def show_job(job: dict[str, Any], events: list[dict[str, Any]]) -> None:
    fields = [
        ("state", styled_state(job["state"])),
        ("kind", job["kind"]),
        ("params", json.dumps(job["params"])),
        (
            "attempt",
            f"{job['attempt']} (failed {job['failures']} of max {job['max_attempts']}, "
            f"lost {job['lost']} of max {job['max_lost']})",
        ),
        ("priority", str(job["priority"])),
        ("resources", json.dumps(job["resources"])),
        ("created", when(job["created_at"])),
        ("started", when(job["started_at"])),
        ("finished", when(job["finished_at"])),
        ("took", seconds(job["duration_seconds"])),
        ("cpu", f"{job['cpu_seconds']:.2f} s"),
        ("worker", ", ".join(job.get("assigned_workers") or []) or job["worker"] or "-"),
    ]
    if job.get("gang", 1) > 1:
        fields.append(("gang", str(job["gang"])))
    if job.get("timeout_s") is not None:
        fields.append(("time limit", seconds(job["timeout_s"])))
    given = job.get("model_ref") or (job.get("params") or {}).get("model_from")
    if isinstance(given, str) and "@" in given:  # a registry reference, NAME@ALIAS
        resolved = job.get("model_version") or "resolved when the job starts"
        fields.append(("model", f"{given} → {resolved}"))
    if job.get("after"):
        fields.append(("after", ", ".join(f"job {a}" for a in job["after"])))
    if job.get("pipeline_id") is not None:
        fields.append(("pipeline", f"{job['pipeline_id']} (step {job.get('step')})"))
    if job.get("cancelled_by") is not None:
        fields.append(("cancelled", f"by the end of upstream job {job['cancelled_by']}"))
    if job.get("pending_reason") and job["state"] == "queued":
        fields.append(("waits", f"[yellow]{job['pending_reason']}[/]"))
    if job.get("progress"):
        fields.append(("progress", progress_text(job["progress"])))
    if job.get("artifacts"):
        fields.append(("artifacts", job["artifacts"]))
    if job.get("result") is not None:
        text = json.dumps(job["result"])
        fields.append(("result", text if len(text) < 400 else text[:400] + " …"))
    if job.get("error"):
        fields.append(("error", f"[red]{job['error']}[/]"))
    body = "\n".join(f"[bold]{k:>10}[/]  {v}" for k, v in fields)
    console.print(Panel(body, title=f"job {job['id']}", expand=False))
    if job.get("traceback") and job["state"] in ("dead", "queued"):
        console.print(
            Panel(job["traceback"].rstrip(), title="last traceback", style="red", expand=False)
        )
    table = Table(title="history")
    for col in ("at", "attempt", "from", "to", "reason", "message"):
        table.add_column(col)
    for e in events:
        table.add_row(
            when(e["at"]),
            str(e["attempt"]),
            e["from_state"] or "",
            e["to_state"],
            e.get("reason") or "",
            e["message"],
        )
    console.print(table)


def submit(
    kind: Annotated[
        str, typer.Argument(help="Job kind, e.g. sleep, echo, forecast (see `zhuge kinds`).")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A parameter as key=value (repeatable; JSON values)."),
    ] = None,
    params_file: Annotated[
        Path | None, typer.Option("--params-file", help="JSON file of parameters.")
    ] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first (-1000..1000).")] = 0,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Resubmitting with the same key returns the same job, not a new one."),
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(help="Attempts whose code may fail before the job is dead.")
    ] = 3,
    max_lost: Annotated[
        int,
        typer.Option(
            help="Attempts the infrastructure may lose (worker died, lease lost) before the "
            "job is dead; they spend no --max-attempts."
        ),
    ] = 10,
    cpu: Annotated[
        float | None,
        typer.Option(
            help="CPUs each copy needs (e.g. 4). Any resource option replaces the "
            "kind's default resources."
        ),
    ] = None,
    memory: Annotated[
        float | None, typer.Option(help="Memory each copy needs, in GB (resource memory_gb).")
    ] = None,
    gpu: Annotated[
        float, typer.Option(help="GPUs to reserve (e.g. 1, or 0.5 to share one).")
    ] = 0.0,
    resource: Annotated[
        list[str] | None,
        typer.Option(
            "--resource",
            help="A custom resource workers advertise, as name=amount (repeatable), e.g. ssd=1.",
        ),
    ] = None,
    gang: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_GANG,
            help="Run N copies at once on N distinct workers, admitted together or not at all.",
        ),
    ] = 1,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Stop each attempt after this long: seconds, or 90s, 30m, 2h "
            "(default: the kind's)."
        ),
    ] = None,
    placement: Annotated[
        Placement | None,
        typer.Option(
            help="binpack: the fullest worker that fits; spread: the emptiest "
            "(default: the queues file's)."
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            help="Job ids that must succeed first, e.g. 12,13: the job waits (blocked) until "
            "they have; if one ends dead or cancelled, so is this one. Read their outputs "
            "with job://12/FILE."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job to finish.")] = False,
    wait_timeout: Annotated[
        float | None,
        typer.Option(help="With --wait: stop waiting after S seconds (exit 2; the job stays)."),
    ] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a job to the queue.

    Examples: zhuge submit sleep -p seconds=2 --wait;
    zhuge submit tune -p ... --cpu 4 --memory 16 --gang 4 --timeout 2h --placement spread;
    zhuge submit plan-migration -p forecast=job://12/forecast.parquet ... --after 12
    """
    timeout_s = parse_timeout(timeout)
    upstream = parse_after(after)
    resources = parse_resources(cpu=cpu, memory=memory, gpu=gpu, pairs=resource or [])
    with user_errors(json_output, flags=lambda name: f"-p {name}"):
        params = parse_params(param or [], params_file)
        c = client(url, token)
        job = c.submit(
            kind,
            params,
            priority=priority,
            resources=resources,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            max_lost=max_lost,
            gang=gang,
            timeout_s=timeout_s,
            placement=placement.value if placement is not None else None,
            after=upstream,
        )
        if wait:
            try:
                job = c.wait(job.id, timeout=wait_timeout)
            except KeyboardInterrupt:
                left_running(job.id, json_output)
            except WaitTimeout as exc:
                if json_output:
                    print_json({"error": {"type": "WaitTimeout", "message": exc.message}})
                else:
                    console.print(f"[yellow]{exc.message}[/]")
                raise typer.Exit(2) from None
        if json_output:
            print_json(job.raw)
        else:
            console.print(f"job [bold]{job.id}[/] ({job.kind}) {styled_state(job.state)}")
            if job.state == "succeeded":
                console.print_json(data=job.result)
            elif job.error:
                console.print(f"[red]{job.error}[/]")
    if wait and job.state != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("ls")
def ls(
    state: Annotated[
        str | None,
        typer.Option(help="blocked, queued, running, succeeded, cancelled, dead."),
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List jobs, newest first."""
    with user_errors(json_output):
        jobs = [j.raw for j in client(url, token).list(state=state, kind=kind, limit=limit)]
    if json_output:
        print_json(jobs)
    elif not jobs:
        console.print("no jobs")
    else:
        console.print(job_table(jobs))


@jobs_app.command("show")
def show(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Everything about one job: state, timings, result or error, history."""
    with user_errors(json_output):
        c = client(url, token)
        job = c.get(job_id).raw
        events = c.events(job_id)
    if json_output:
        print_json({**job, "events": events})
    else:
        show_job(job, events)


@jobs_app.command("why")
def why(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Why a job waits: its place in its tenant's queue and in the cluster's, and what it
    waits for; or where it runs, or how it ended.

    Example: job 812 is 3rd in forecasting's queue and 17th in the cluster: waiting for
    quota: forecasting uses 8/8 CPU, cohort has 0 idle
    """
    with user_errors(json_output):
        data = client(url, token).why(job_id)
    if json_output:
        print_json(data)
        return
    console.print(data["summary"], highlight=False)
    asks = ", ".join(f"{k}={v:g}" for k, v in sorted(data["resources"].items())) or "nothing"
    if data["gang"] > 1:
        asks += f" on each of {data['gang']} workers (gang)"
    extra = [f"asks {asks}", f"priority {data['priority']}"]
    aged = data.get("effective_priority")
    if aged is not None and abs(aged - data["priority"]) >= 0.005:
        extra[-1] += f" ({aged:.2f} with aging)"
    if data.get("timeout_s") is not None:
        extra.append(f"time limit {seconds(data['timeout_s'])}")
    if data.get("placement"):
        extra.append(data["placement"])
    console.print(f"[dim]{'; '.join(extra)}[/]", highlight=False)


@jobs_app.command("logs")
def logs(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print a job's log lines (all attempts)."""
    with user_errors(json_output):
        c = client(url, token)
        lines = c.follow_logs(job_id) if follow else iter(c.logs(job_id)["lines"])
        for line in lines:
            if json_output:
                print_json(line)
            else:
                console.print(
                    f"[dim]{when(line['at'])} #{line['attempt']}[/] {line['line']}", highlight=False
                )


@jobs_app.command("cancel")
def cancel(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel a queued or running job (a running job's Dask task is cancelled)."""
    with user_errors(json_output):
        job = client(url, token).cancel(job_id)
    if json_output:
        print_json(job.raw)
    else:
        console.print(f"job [bold]{job.id}[/] {styled_state(job.state)}")


def left_running(job_id: int, json_output: bool) -> NoReturn:
    """Ctrl-C while waiting: stop waiting, not the job. Say which job goes on and how to
    follow or cancel it (one message, no traceback), exit 130."""
    message = (
        f"stopped waiting; job {job_id} keeps running on the server. "
        f"Follow it: zhuge jobs wait {job_id}. Cancel it: zhuge jobs cancel {job_id}"
    )
    if json_output:
        print_json({"error": {"type": "Interrupted", "message": message, "job_id": job_id}})
    else:
        err_console.print(message, highlight=False)
    raise typer.Exit(130)


@jobs_app.command("wait")
def wait(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    timeout: Annotated[float | None, typer.Option(help="Give up after S seconds (exit 2).")] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Wait until a job is succeeded, cancelled or dead. Exit 0 only if it succeeded."""
    from zhuge.errors import WaitTimeout

    try:
        with user_errors(json_output):
            job = client(url, token).wait(job_id, timeout=timeout)
    except KeyboardInterrupt:
        left_running(job_id, json_output)
    except WaitTimeout as exc:  # user_errors re-raises nothing else but Exit
        if json_output:
            print_json({"error": {"type": "WaitTimeout", "message": exc.message}})
        else:
            console.print(f"[yellow]{exc.message}[/]")
        raise typer.Exit(2) from None
    if json_output:
        print_json(job.raw)
    else:
        console.print(f"job [bold]{job.id}[/] {styled_state(job.state)}")
        if job.error and job.state != "succeeded":
            console.print(f"[red]{job.error}[/]")
    if job.state != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("retry")
def retry(
    job_id: Annotated[int, typer.Argument(help="Job id of a dead job.")],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Re-queue a dead job with a fresh set of attempts; the jobs submitted after it that
    its end cancelled wait for it again (blocked)."""
    with user_errors(json_output):
        job = client(url, token).retry(job_id)
    if json_output:
        print_json(job.raw)
    else:
        console.print(f"job [bold]{job.id}[/] {styled_state(job.state)}")


@jobs_app.command("download")
def download(
    job_id: Annotated[int, typer.Argument(help="Job id.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write, replaced whole.")],
    name: Annotated[
        str | None,
        typer.Option("--name", help="An artifact's name (default: the job's output)."),
    ] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Download a finished job's output (or one of its artifacts) to a file: what --out of a
    convenience command does, for a job started with --detach. Example:
    zhuge jobs download 12 --out forecast.parquet"""
    from zhuge.cli.run import checked_out

    with user_errors(json_output):
        target = checked_out(out)
        c = client(url, token)
        if name is None:
            job = c.get(job_id)
            output = (job.result or {}).get("output") if job.state == "succeeded" else None
            if output is None:
                raise InvalidRequest(
                    f"job {job_id} is {job.state} and has no output to download"
                    + (f"; wait for it: zhuge jobs wait {job_id}" if not job.done else "")
                )
            name = output
        written = c.download_artifact(job_id, name, target)
    if json_output:
        print_json({"job_id": job_id, "name": name, "out": str(written)})
    else:
        console.print(f"job {job_id}: {name} written to {written}")


def status(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Readiness (and why not), queue depth by state, and the workers with their resources."""
    with user_errors(json_output):
        api = client(url, token)
        data = api.status()
        data["readiness"] = api.readiness()
    if json_output:
        print_json(data)
        return
    ready = data["readiness"]
    if ready["ready"]:
        live = ", ".join(f"{s['name']} (zhuge {s['version']})" for s in ready["schedulers"])
        console.print(f"[green]ready[/]: scheduler(s) {live}")
    else:
        console.print("[red]not ready[/]: " + "; ".join(ready["reasons"]))
    states = Table(title=f"jobs (queue depth {data['queue_depth']})")
    for s in data["states"]:
        states.add_column(styled_state(s), justify="right")
    states.add_row(*(str(n) for n in data["states"].values()))
    console.print(states)
    workers = Table(title=f"workers ({len(data['workers'])})")
    for col in ("address", "resources", "running", "last seen"):
        workers.add_column(col)
    for w in data["workers"]:
        res = ", ".join(f"{k}={v:g}" for k, v in sorted(w["resources"].items()))
        workers.add_row(w["address"], res, str(w["running"]), when(w["last_seen"]))
    console.print(workers)


def kinds(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """The job kinds this server runs, with their parameters."""
    with user_errors(json_output):
        data = client(url, token).kinds()
    if json_output:
        print_json(data)
        return
    table = Table()
    for col in ("kind", "description", "parameters"):
        table.add_column(col)
    for k in data:
        props = k["params_schema"].get("properties", {})
        table.add_row(k["name"], k["description"], ", ".join(props))
    console.print(table)
