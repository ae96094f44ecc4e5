"""zhuge models ls / show / promote / rollback / alias / rm / config: the tenant's model
registry. Versions come from ``zhuge train ... --register NAME``; a version is used with
``--model-from NAME@champion`` (or ``NAME@3``)."""

from __future__ import annotations

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
from zhuge.errors import InvalidParams

models_app = typer.Typer(
    help="Registered models: versions with lineage, aliases (champion, challenger), the "
    "release gate's decisions, rollback. Register with `zhuge train ... --register NAME`.",
    no_args_is_help=True,
)

USES_SHOWN = 10  # jobs listed under "used by jobs" (the newest); --json has them all
NameArg = Annotated[str, typer.Argument(help="The registered model's name.")]
VersionArg = Annotated[int, typer.Argument(help="A version number (zhuge models show NAME).")]


def _aliases(aliases: dict[str, int]) -> str:
    return ", ".join(f"{a}→{v}" for a, v in aliases.items()) or "-"


@models_app.command("ls")
def models_ls(json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List the tenant's registered models."""
    with user_errors(json_output):
        found = client(url, token).models()
    if json_output:
        print_json(found)
        return
    table = Table()
    for col in ("name", "versions", "latest", "aliases", "gate", "created"):
        table.add_column(col)
    for m in found:
        c = m["config"]
        gate = "manual" if c.get("manual") else f"{c['metric']} -{c['margin']:.0%} {c['test']}"
        if m.get("task") == "cluster":
            gate = "cluster: by hand"
        table.add_row(
            m["name"],
            str(m["versions"]),
            str(m["latest"] or "-"),
            _aliases(m["aliases"]),
            gate,
            when(m["created_at"]),
        )
    console.print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_model(found: dict[str, Any]) -> None:
    """What ``zhuge models show`` prints (docs/models.md shows an example)."""
    c = found["config"]
    console.print(f"[bold]{found['name']}[/]  aliases: {_aliases(found['aliases'])}")
    if found.get("task") == "cluster":
        console.print(
            "cluster model: no release gate; the first version is champion, later ones by "
            f"zhuge models promote {found['name']} VERSION"
        )
    else:
        console.print(
            f"gate: {c['metric']} better by {c['margin']:.0%}, {c['test']} at level {c['level']}, "
            f"at least {c['min_series']} series, {c['gate_windows']} window(s)"
            + (", manual promotion only" if c["manual"] else "")
            + f"; drift: x{c['drift_factor']} for {c['drift_scorings']} scorings -> "
            f"{c['drift_action']}"
        )
    table = Table(title="versions")
    for col in ("version", "aliases", "job", "created", "datasets", "decision", "why"):
        table.add_column(col)
    for v in found["versions"]:
        gate = v.get("gate") or {}
        datasets = ", ".join(
            f"{d['name'] or str(d['ref']).rsplit('/', 1)[-1]}@{(d.get('sha256') or '?')[:12]}"
            for d in v["lineage"].get("datasets", [])
        )
        table.add_row(
            str(v["version"]),
            ", ".join(v["aliases"]) or "-",
            str(v["job_id"] or "-"),
            when(v["created_at"]),
            datasets or "-",
            gate.get("decision", "-"),
            gate.get("reason", "-"),
        )
    console.print(table)
    history = Table(title="alias history")
    for col in ("at", "action", "alias", "version", "was", "by", "reason"):
        history.add_column(col)
    for e in found["alias_history"]:
        history.add_row(
            when(e["at"]),
            e["action"],
            e["alias"],
            str(e["version"]),
            _fmt(e["previous_version"]),
            e["actor"] or "platform",
            e["reason"],
        )
    console.print(history)
    if found.get("used_by"):
        used = found["used_by"]
        shown = used[-USES_SHOWN:]  # the newest; --json has them all
        console.print(
            "used by jobs: "
            + ("... " if len(used) > len(shown) else "")
            + ", ".join(
                f"{u['job_id']} ({u['kind'] or '?'}, {u['model_ref'] or '?'} → version "
                f"{u['version']})"
                for u in shown
            )
            + (f" ({len(used)} in all)" if len(used) > len(shown) else "")
        )
    for e in found["events"]:
        if e["alias"] is None and e["action"] in ("drift", "remove"):
            what = f"version {e['version']}" if e["version"] is not None else ""
            console.print(f"{when(e['at'])}  {e['action']} {what}: {e['reason'] or '-'}")
    if found["live"]:
        live = Table(title="live record")
        for col in ("at", "version", "MASE", "coverage", "gate MASE", "drifted"):
            live.add_column(col)
        for s in found["live"]:
            m = s["metrics"]
            live.add_row(
                when(s["at"]),
                str(s["version"]),
                _fmt(m.get("mase")),
                _fmt(m.get("coverage")),
                _fmt(m.get("gate_mase")),
                "yes" if s["drifted"] else "no",
            )
        console.print(live)


@models_app.command("show")
def models_show(
    name: NameArg, json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Versions, aliases, alias history, lineage, gate decisions and the live record."""
    with user_errors(json_output):
        found = client(url, token).model(name)
    if json_output:
        print_json(found)
    else:
        print_model(found)


def _changed(done: dict[str, Any], json_output: bool, what: str) -> None:
    if json_output:
        print_json(done)
    else:
        console.print(f"{done['model']} version {done['version']} {what}")


@models_app.command("promote")
def models_promote(
    name: NameArg,
    version: VersionArg,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make VERSION the champion by hand (the release gate does it on evidence)."""
    with user_errors(json_output):
        done = client(url, token).promote_model(name, version)
    _changed(done, json_output, "is champion")


@models_app.command("rollback")
def models_rollback(
    name: NameArg, json_output: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Make the previous champion (from the alias history) champion again."""
    with user_errors(json_output):
        done = client(url, token).rollback_model(name)
    _changed(done, json_output, "is champion again")


@models_app.command("alias")
def models_alias(
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="champion, challenger, or a name of yours.")],
    version: VersionArg,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Point ALIAS at VERSION."""
    with user_errors(json_output):
        done = client(url, token).alias_model(name, alias, version)
    _changed(done, json_output, f"is {alias}")


@models_app.command("rm")
def models_rm(
    name: NameArg,
    version: VersionArg,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove VERSION (refused while an alias points at it; its job keeps its artifacts)."""
    with user_errors(json_output):
        done = client(url, token).remove_model_version(name, version)
    if json_output:
        print_json(done)
    else:
        console.print(f"{name} version {done['version']} removed")


def _settings(pairs: list[str]) -> dict[str, Any]:
    import json

    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidParams(f"SETTING must be key=value, not {pair!r}")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


@models_app.command("config")
def models_config(
    name: NameArg,
    settings: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[SETTING]...",
            help="key=value: metric, margin, level, test (dm|bootstrap), min_series, manual, "
            "gate_windows, drift_factor, drift_scorings, drift_action (none|retrain|rollback).",
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            "--metric",
            help="The gate's metric, lower is better: mase (default), mae, or decision_regret "
            "(the load in the migration window the forecast picks, above the quietest one).",
        ),
    ] = None,
    json_output: JsonOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Change the release gate's and drift's settings of a model.

    \b
    Examples:
      zhuge models config fleet-cpu --metric decision_regret
      zhuge models config fleet-cpu margin=0.05 drift_action=retrain
    """
    with user_errors(json_output):
        changes = _settings(settings or [])
        if metric is not None:
            changes["metric"] = metric
        if not changes:
            raise InvalidParams("give a setting to change: --metric NAME, or key=value")
        done = client(url, token).configure_model(name, **changes)
    if json_output:
        print_json(done)
    else:
        console.print(", ".join(f"{k}={v}" for k, v in done.items()))


def train_and_register(options: dict[str, Any], name: str, json_output: bool) -> None:
    """``zhuge train ... --register NAME``: the ``model-train`` job, then its decision."""
    from zhuge.cli.forecast import FLEET_DATA, checked_params
    from zhuge.cli.run import run_and_report
    from zhuge.jobs.registry import check_name

    with user_errors(json_output):
        check_name(name)
        params = {**checked_params("train", options), "register_as": name}
        done = run_and_report(
            "model-train",
            params,
            title=f"training a version of {name}",
            json_output=json_output,
            data=FLEET_DATA,
        )
    if done is None:
        return
    _, result = done
    gate = result["gate"]
    console.print(
        f"[bold]{result['ref']}[/] registered: {gate['decision']} ({gate['reason']}); "
        f"aliases: {', '.join(result['aliases']) or '-'}"
    )
    console.print(
        f"use it: zhuge forecast --input ... --model-from {name}@champion; "
        f"the evidence: zhuge models show {name}"
    )


@models_app.command("score")
def models_score(
    name: NameArg,
    actuals: Annotated[
        str | None,
        typer.Option(
            "--actuals",
            help="What happened: telemetry as a file, dataset://NAME or connection://NAME/KEY.",
        ),
    ] = None,
    sql: Annotated[str | None, typer.Option("--sql", help="Or a SQL query giving it.")] = None,
    connection: Annotated[
        str | None, typer.Option("--connection", help="The SQL connection --sql runs on.")
    ] = None,
    columns: Annotated[
        str | None, typer.Option("--columns", help="series_id=vm,timestamp=ts,value=cpu")
    ] = None,
    timestamp_unit: Annotated[
        str, typer.Option("--timestamp-unit", help="auto, iso, s, ms, us or ns.")
    ] = "auto",
    vms: Annotated[
        str | None,
        typer.Option(
            "--vms",
            help="VM table (vm_id, host_id, cluster_id, vcpus): also score "
            "a VM-level model's forecasts rolled up to hosts and clusters.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Score the forecasts NAME already made against what then happened; append to its live
    record; act on drift as configured (zhuge models config NAME drift_action=...)."""
    from zhuge.cli.run import local_path, run_and_report
    from zhuge.jobs.kinds import get_kind

    with user_errors(json_output):
        params = get_kind("model-score").normalise(
            {
                k: v
                for k, v in {
                    "model": name,
                    "input": local_path(actuals),
                    "sql": sql,
                    "connection": connection,
                    "columns": columns,
                    "timestamp_unit": timestamp_unit,
                    "vms": local_path(vms),
                }.items()
                if v is not None
            }
        )
        done = run_and_report(
            "model-score",
            params,
            title=f"scoring {name}",
            json_output=json_output,
            data={"input": "--actuals", "vms": "--vms"},
        )
    if done is None:
        return
    _, result = done
    for s in result["scored"]:
        console.print(
            f"job {s['job']} (version {s['version']}): MASE {_fmt(s['mase'])}, coverage "
            f"{_fmt(s['coverage'])}, gate MASE {_fmt(s['gate_mase'])}"
            + (" [red]drifted[/]" if s["drifted"] else "")
            + (f"; {s['action']['action']}: {s['action'].get('outcome')}" if "action" in s else "")
        )
    if not result["scored"]:
        console.print("nothing to score: no forecast of this model has been revealed yet")
