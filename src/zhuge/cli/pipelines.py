"""zhuge pipeline run|show|ls|cancel: graphs of jobs submitted at once (docs/pipelines.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from zhuge.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    print_json,
    styled_state,
    user_errors,
    when,
)
from zhuge.client import Client
from zhuge.errors import InvalidRequest

# the options a pipeline run takes, here and on `zhuge schedules add`
TemplateOpt = Annotated[
    str | None,
    typer.Option("--template", help="A shipped pipeline instead of a file: fleet-nightly."),
]
SourceOpt = Annotated[
    str | None,
    typer.Option("--source", help="fleet-nightly's telemetry: a dataset or connection."),
]
VmsOpt = Annotated[
    str | None, typer.Option("--vms", help="fleet-nightly's VM table (hosts, memory).")
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", help="A value for one of the file's parameters, NAME=VALUE (repeatable)."
    ),
]

pipeline_app = typer.Typer(
    help="Run a graph of jobs (steps with their kinds, params and `after` edges) at once; "
    "show it with each step's state. Example: zhuge pipeline run nightly.yaml --param "
    "data=dataset://fleet",
    no_args_is_help=True,
)

POLL_SECONDS = 0.25
FINISHED = ("succeeded", "failed", "cancelled")


def parse_pipeline_params(pairs: list[str]) -> dict[str, Any]:
    """``--param k=v`` values: YAML scalars (``24`` a number, ``true`` a boolean, text else)."""
    import yaml

    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidRequest(f"--param {pair!r} is not NAME=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        params[key.strip()] = value if isinstance(value, str | int | float | bool) else raw
    return params


def read_pipeline_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a YAML file: {exc}") from None
    if not isinstance(loaded, dict):
        raise InvalidRequest(f"{path} must hold a mapping with name, params and steps")
    return loaded


def template_or_file(file: Path | None, template: str | None) -> dict[str, Any]:
    """The pipeline document of FILE or of a shipped ``--template`` (one of them)."""
    if (file is None) == (template is None):
        raise InvalidRequest("give a pipeline file or --template NAME (one of them)")
    if template is not None:
        import yaml

        from zhuge.jobs.templates import template_document

        return yaml.safe_load(template_document(template))
    assert file is not None
    return read_pipeline_file(file)


def graph(pipeline: dict[str, Any]) -> Tree:
    """The steps as a tree: each under the step it waits for (the first, when several; the
    others named), roots at the top, with its state and job id."""
    title = (
        f"pipeline [bold]{pipeline['id']}[/] {pipeline['name']} {styled_state(pipeline['state'])}"
    )
    tree = Tree(title)
    steps = pipeline["steps"]
    nodes: dict[str, Tree] = {}
    for step in steps:  # in an order where each step follows those it waits for
        after = step["after"]
        label = f"[bold]{step['name']}[/] {styled_state(step['state'])} job {step['job_id']}"
        label += f" [dim]({step['kind']})[/]"
        if len(after) > 1:
            label += f" [dim]after {', '.join(after)}[/]"
        if step.get("error") and step["state"] in ("dead", "cancelled"):
            label += f"\n[red]{step['error'].splitlines()[0][:160]}[/]"
        parent = nodes.get(after[0]) if after else None
        nodes[step["name"]] = (parent or tree).add(label)
    return tree


def wait_for_pipeline(c: Client, pipeline_id: int) -> dict[str, Any]:
    while True:
        found = c.pipeline(pipeline_id)
        if found["state"] in FINISHED:
            return found
        time.sleep(POLL_SECONDS)


@pipeline_app.command("run")
def run(
    file: Annotated[
        Path | None, typer.Argument(help="The pipeline file (YAML).", show_default=False)
    ] = None,
    template: TemplateOpt = None,
    source: SourceOpt = None,
    vms: VmsOpt = None,
    param: ParamOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every step has finished.")
    ] = False,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit every step of a pipeline file in one transaction and print the pipeline's id.
    A cycle, an unknown step, kind, parameter or reference is refused, naming the step and
    field, and nothing is stored.

    Example: zhuge pipeline run examples/pipelines/forecast-and-plan.yaml
    --param telemetry=dataset://fleet --param horizon=24

    The nightly fleet run, shipped: zhuge pipeline run --template fleet-nightly
    --source dataset://telemetry --vms dataset://vms
    """
    with user_errors(json_output):
        document = template_or_file(file, template)
        params = parse_pipeline_params(param or [])
        params.update({k: v for k, v in (("source", source), ("vms", vms)) if v is not None})
        c = client(url, token)
        pipeline = c.run_pipeline(document, params)
        if wait:
            pipeline = wait_for_pipeline(c, pipeline["id"])
    if json_output:
        print_json(pipeline)
    else:
        console.print(graph(pipeline))
        if not wait:
            console.print(
                f"follow it: zhuge pipeline show {pipeline['id']}; stop it: zhuge pipeline "
                f"cancel {pipeline['id']}",
                highlight=False,
            )
    if wait and pipeline["state"] != "succeeded":
        raise typer.Exit(1)


@pipeline_app.command("show")
def show(
    pipeline_id: Annotated[int, typer.Argument(help="Pipeline id.", min=1)],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Draw the pipeline's graph with each step's state and job id.

    Example: zhuge pipeline show 3 (then zhuge jobs show JOB for one step)
    """
    with user_errors(json_output):
        pipeline = client(url, token).pipeline(pipeline_id)
    if json_output:
        print_json(pipeline)
        return
    console.print(graph(pipeline))
    origin = pipeline.get("origin") or "submitted by hand"
    console.print(f"created {when(pipeline['created_at'])}, {origin}", highlight=False)
    if pipeline["params"]:
        shown = ", ".join(f"{k}={v}" for k, v in pipeline["params"].items())
        console.print(f"params: {shown}", highlight=False)


@pipeline_app.command("ls")
def ls(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List your pipelines, newest first, with their state and steps.

    Example: zhuge pipeline ls --limit 5
    """
    with user_errors(json_output):
        found = client(url, token).pipelines(limit=limit)
    if json_output:
        print_json(found)
        return
    table = Table()
    for column in ("id", "name", "state", "steps", "created", "origin"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for p in found:
        done = sum(s["state"] == "succeeded" for s in p["steps"])
        table.add_row(
            str(p["id"]),
            p["name"],
            styled_state(p["state"]),
            f"{done}/{len(p['steps'])} succeeded",
            when(p["created_at"]),
            p.get("origin") or "-",
        )
    console.print(table)


@pipeline_app.command("cancel")
def cancel(
    pipeline_id: Annotated[int, typer.Argument(help="Pipeline id.", min=1)],
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel every step that has not finished (blocked, queued or running); finished steps
    keep their outcome.

    Example: zhuge pipeline cancel 3
    """
    with user_errors(json_output):
        pipeline = client(url, token).cancel_pipeline(pipeline_id)
    if json_output:
        print_json(pipeline)
    else:
        console.print(graph(pipeline))
