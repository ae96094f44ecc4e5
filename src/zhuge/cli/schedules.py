"""zhuge schedules add / ls / show / pause / resume / rm / run-now: the tenant's cron
schedules of pipelines, fired by the server's schedulers once per slot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zhuge.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    print_json,
    user_errors,
    when,
)
from zhuge.cli.pipelines import ParamOpt, SourceOpt, TemplateOpt, VmsOpt, parse_pipeline_params
from zhuge.errors import InvalidRequest

schedules_app = typer.Typer(
    help="Run a pipeline on a cron schedule, once per slot, in a time zone of your choice. "
    "Start with: zhuge schedules add nightly --cron '0 2 * * *' --pipeline nightly.yaml",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The schedule's name (unique in your tenant).")]

ADD_HELP = """Add a schedule: run the pipeline file (or a shipped template) at every slot of \
the cron expression, in --timezone's local time, exactly once per slot.

The file may use {{ slot }} (the slot's time, in the schedule's time zone) and \
{{ slot - 1d }}, so each run reads the data of its own day. The schedule runs as your \
tenant with your token's permissions; revoking the token pauses it.

Daylight saving: a local time skipped by spring-forward runs once at the next valid \
time (02:30 -> 03:00); a local time repeated by fall-back runs once, at its first \
occurrence. After downtime: --catch-up latest runs the latest missed slot once, none runs \
nothing; either way `zhuge schedules show` lists the slots not run, with the reason.

\b
Examples:
  zhuge schedules add nightly --cron '0 2 * * *' --timezone Asia/Shanghai \\
      --pipeline nightly.yaml --param data=dataset://fleet
  zhuge schedules add fleet --cron '30 1 * * *' --template fleet-nightly \\
      --source dataset://telemetry --vms dataset://vms
"""


_ADD_OPTIONS = {"cron": "--cron", "timezone": "--timezone", "catch_up": "--catch-up"}


def _in_add_words(param: str) -> str:
    """An error's field in ``schedules add``'s words: its own options by name; a pipeline
    step's parameter (``steps.prepare.params.input``) stays the file's, not another
    command's option of that name."""
    return _ADD_OPTIONS.get(param, param)


def _params(pairs: list[str], source: str | None, vms: str | None) -> dict[str, Any]:
    params = parse_pipeline_params(pairs)
    for key, value in (("source", source), ("vms", vms)):
        if value is not None:
            params[key] = value
    return params


@schedules_app.command("add", help=ADD_HELP)
def schedules_add(
    name: NameArg,
    cron: Annotated[
        str, typer.Option("--cron", help="Five fields: minute hour day month weekday.")
    ],
    pipeline: Annotated[
        Path | None,
        typer.Option("--pipeline", help="The pipeline file (YAML).", dir_okay=False),
    ] = None,
    template: TemplateOpt = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA time zone of the cron expression.")
    ] = "UTC",
    param: ParamOpt = None,
    source: SourceOpt = None,
    vms: VmsOpt = None,
    overlap: Annotated[
        str,
        typer.Option(
            "--overlap",
            help="skip: a slot whose previous run is still active is recorded as skipped; "
            "queue: it runs anyway, after it in the queue.",
        ),
    ] = "skip",
    catch_up: Annotated[
        str,
        typer.Option(
            "--catch-up", help="After downtime: latest (run the latest slot once) or none."
        ),
    ] = "latest",
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    with user_errors(json_output, _in_add_words):
        if (pipeline is None) == (template is None):
            raise InvalidRequest("give --pipeline FILE.yaml or --template NAME (one of them)")
        document = None
        if pipeline is not None:
            try:
                document = pipeline.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidRequest(f"--pipeline {pipeline}: cannot read it ({exc})") from exc
        added = client(url, token).add_schedule(
            name,
            cron,
            pipeline=document,
            template=template,
            timezone=timezone,
            params=_params(param or [], source, vms),
            overlap=overlap,
            catch_up=catch_up,
        )
    if json_output:
        print_json(added)
        return
    console.print(
        f"schedule {added['name']}: '{added['cron']}' in {added['timezone']}, "
        f"overlap {added['overlap']}, catch-up {added['catch_up']}"
    )
    console.print(f"next: zhuge schedules show {added['name']}", highlight=False)


@schedules_app.command("ls")
def schedules_ls(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List the tenant's schedules, each with its next slot and latest run."""
    with user_errors(json_output):
        found = client(url, token).schedules()
    if json_output:
        print_json(found)
        return
    table = Table()
    for col in ("name", "cron", "timezone", "next (local)", "last run", "state"):
        table.add_column(col)
    for s in found:
        last = s["last_run"]
        table.add_row(
            s["name"],
            s["cron"],
            s["timezone"],
            (s["next_slot"] or {}).get("local", "-"),
            f"{last['outcome']} {when(last['slot'])}" if last else "-",
            f"paused: {s['paused_reason']}" if s["paused"] else "active",
        )
    console.print(table)


@schedules_app.command("show")
def schedules_show(
    name: NameArg, json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """The schedule, its next slots (local and UTC) and its latest runs.

    Each run names its pipeline and the pipeline's state; a slot not run says why.

    Example: zhuge schedules show nightly
    """
    with user_errors(json_output):
        found = client(url, token).schedule(name)
    if json_output:
        print_json(found)
        return
    source = f"template {found['template']}" if found["template"] else "its pipeline file"
    console.print(
        f"[bold]{found['name']}[/]  '{found['cron']}' in {found['timezone']}, {source}, "
        f"overlap {found['overlap']}, catch-up {found['catch_up']}, runs as token "
        f"{found['token_id']}"
    )
    if found["paused"]:
        console.print(f"[yellow]paused[/]: {found['paused_reason']}")
    if found["params"]:
        console.print("params: " + ", ".join(f"{k}={v}" for k, v in found["params"].items()))
    upcoming = Table(title="next slots")
    upcoming.add_column("local")
    upcoming.add_column("UTC")
    for slot in found["next_slots"]:
        upcoming.add_row(slot["local"], slot["utc"])
    console.print(upcoming)
    if not found["runs"]:
        console.print("no runs yet (zhuge schedules run-now NAME runs one now)", highlight=False)
        return
    runs = Table(title="latest runs")
    for col in ("slot (local)", "trigger", "outcome", "pipeline", "state", "reason"):
        runs.add_column(col)
    for r in found["runs"]:
        runs.add_row(
            r["slot_local"],
            r["trigger"],
            r["outcome"],
            str(r["pipeline_id"] or "-"),
            r["pipeline_state"] or "-",
            r["reason"] or "",
        )
    console.print(runs)


@schedules_app.command("pause")
def schedules_pause(
    name: NameArg,
    reason: Annotated[str, typer.Option("--reason", help="Why, shown by ls and show.")] = "",
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Stop firing the schedule's slots until it is resumed."""
    with user_errors(json_output):
        done = client(url, token).pause_schedule(name, reason)
    _changed(done, json_output, "paused")


@schedules_app.command("resume")
def schedules_resume(
    name: NameArg, json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Fire again from the next slot, with your token's permissions from now on.

    Slots that passed while it was paused are not run (zhuge schedules run-now runs one).
    """
    with user_errors(json_output):
        done = client(url, token).resume_schedule(name)
    _changed(done, json_output, "resumed")


@schedules_app.command("rm")
def schedules_rm(
    name: NameArg, json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Remove the schedule and its run records (the pipelines it ran stay)."""
    with user_errors(json_output):
        done = client(url, token).remove_schedule(name)
    _changed(done, json_output, "removed")


@schedules_app.command("run-now")
def schedules_run_now(
    name: NameArg, json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Run the schedule's pipeline once now (slot: now), whether paused or not."""
    with user_errors(json_output):
        run = client(url, token).run_schedule_now(name)
    if json_output:
        print_json(run)
        return
    console.print(f"schedule {name}: pipeline {run['pipeline_id']} started")
    console.print(f"next: zhuge pipeline show {run['pipeline_id']}", highlight=False)


def _changed(done: dict[str, Any], json_output: bool, what: str) -> None:
    if json_output:
        print_json(done)
    else:
        console.print(f"schedule {done['name']} {what}")
