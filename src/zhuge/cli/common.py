"""What every command shares: the client, JSON or Rich output, and error reporting."""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from zhuge.client import Client
from zhuge.errors import ZhugeError

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
UrlOpt = Annotated[
    str | None, typer.Option("--url", envvar="ZHUGE_URL", help="API URL (default: local).")
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="ZHUGE_TOKEN", help="Bearer token (default: ZHUGE_HOME/token)."),
]

T = TypeVar("T")


def client(url: str | None = None, token: str | None = None) -> Client:
    return Client(url, token)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


Flags = Mapping[str, str] | Callable[[str], str] | None


# Parameters whose option is not their name dashed (one option fills a list, or says more).
OPTION_OF = {"models": "--model", "blackouts": "--blackout", "actual": "--evaluate-with"}


def flag(param: str, flags: Flags = None) -> str:
    """The command-line option that fills job parameter ``param``: ``--timestamp-unit`` for
    ``timestamp_unit`` unless ``flags`` says otherwise (``{"models": "--model"}``, or a
    function such as ``zhuge submit``'s, whose parameters are ``-p NAME=VALUE``). A name
    no command has as an option stays the parameter's name: never an option that is not."""
    if callable(flags):
        return flags(param)
    option = (flags or {}).get(param) or OPTION_OF.get(param) or "--" + param.replace("_", "-")
    return option if option in _all_options() else param


@functools.cache
def _all_options() -> frozenset[str]:
    """Every option of every ``zhuge`` command."""
    import typer.main

    from zhuge.cli import app

    found: set[str] = set()
    stack = [typer.main.get_command(app)]
    while stack:
        command = stack.pop()
        stack.extend(getattr(command, "commands", {}).values())
        for param in command.params:
            found.update(getattr(param, "opts", ()))
    return frozenset(found)


def in_flag_words(exc: ZhugeError, flags: Flags = None) -> list[str]:
    """An error's message and its field errors as lines in the words of the command line.

    The SDK and API name job parameters (``columns='series_id=vm'``, ``(vms)``, a field's
    ``loc``); on the command line the same error names the option: ``--columns
    'series_id=vm'``, ``(--vms)``, ``--freq: Input should be ...``. Parameters an error is
    about are listed in its ``details["params"]`` (or are its field errors' ``loc``)."""
    details = exc.details
    message = exc.message
    field_errors = (
        [d for d in details if isinstance(d, dict) and "msg" in d]
        if isinstance(details, list)
        else []
    )
    params = list(details.get("params") or []) if isinstance(details, dict) else []
    params += [p for d in field_errors if (p := _loc_param(d))]
    # zhuge submit's -p NAME=VALUE spell parameters as the API does: its message stays
    for param in dict.fromkeys(params) if not callable(flags) else ():
        option = flag(param, flags)
        if option == param:
            continue  # no option of that name: the message keeps the parameter's
        message = re.sub(rf"\b{re.escape(param)}=", f"{option} ", message)
        message = re.sub(rf"\({re.escape(param)}\)", f"({option})", message)
        if "_" in param:  # an identifier (model_from) is no word of prose: always the option
            message = re.sub(rf"(?<![-\w]){re.escape(param)}\b", option, message)
    if field_errors:
        named = [flag(p, flags) for d in field_errors if (p := _loc_param(d))]
        head, colon, _ = message.partition(": ")
        # zhuge submit's -p NAME=VALUE are parameters; elsewhere they are the options
        if colon and named and head.startswith("invalid parameters") and not callable(flags):
            message = f"invalid {', '.join(dict.fromkeys(named))}"
    lines = [message]
    for d in field_errors[:20]:
        text = str(d["msg"]).removeprefix("Value error, ")
        param = _loc_param(d)
        lines.append(f"{flag(param, flags)}: {text}" if param else text)
    if len(lines) == 2 and not _loc_param(field_errors[0]) and message.startswith("invalid param"):
        # one error about the options together (sql needs connection): just that, once
        return [lines[1]]
    return lines


def _loc_param(field_error: Mapping[str, Any]) -> str | None:
    """The parameter a field error is about: its location's last name (``quantiles`` for
    ``["quantiles", 1]``), None for an error about the parameters together."""
    names = [p for p in field_error.get("loc") or () if isinstance(p, str) and p != "params"]
    return names[-1] if names else None


@contextmanager
def user_errors(json_output: bool = False, flags: Flags = None) -> Iterator[None]:
    """Report zhuge errors as one clear line (or a JSON error), exit code 1, no traceback.

    In words of the command line (:func:`in_flag_words`; ``flags`` maps the parameters whose
    option is not simply ``--`` and the name dashed); ``--json`` keeps the API's words."""
    from zhuge.errors import WaitTimeout

    try:
        yield
    except WaitTimeout:
        raise  # the caller decides what a timeout means (``jobs wait`` exits 2)
    except ZhugeError as exc:
        if json_output:
            print_json(
                {
                    "error": {
                        "type": type(exc).__name__,
                        "message": exc.message,
                        "details": exc.details,
                    }
                }
            )
        else:
            first, *rest = in_flag_words(exc, flags)
            err_console.print(f"[bold red]error:[/] {escape(first)}")
            for line in rest:
                err_console.print(f"  [red]•[/] {escape(line)}")
        raise typer.Exit(1) from None


def run_cli(fn: Callable[[], T], json_output: bool = False) -> T:
    with user_errors(json_output):
        return fn()


def when(value: str | None) -> str:
    """An ISO timestamp from the API, shown short and local."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(value: Any) -> str:
    """A duration as people write it: ``1h``, ``90min`` → ``1h30min``, ``2d``; from seconds,
    a ``timedelta``/``pd.Timedelta``, or text as pandas prints it (``0 days 01:00:00``) or
    as ISO 8601 (``PT1H``). Anything else is shown as it is."""
    if value is None:
        return "-"
    total: float | None = None
    if isinstance(value, int | float):
        total = float(value)
    elif hasattr(value, "total_seconds"):
        total = value.total_seconds()
    elif isinstance(value, str):
        try:
            import pandas as pd

            total = pd.Timedelta(value).total_seconds()
        except (ValueError, TypeError):
            return value
    if total is None:
        return str(value)
    if total < 1:
        return f"{total * 1000:.0f}ms"
    left, parts = round(total), []
    for name, size in _UNITS:
        if left >= size:
            parts.append(f"{left // size}{name}")
            left %= size
    return "".join(parts[:2])  # 1d2h, not 1d2h3min4s


def count(value: Any) -> str:
    """A progress count as people read it: ``4.9`` not ``4.899999999999999``, ``25`` not
    ``25.0``; ``-`` when unknown."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def progress_text(progress: Mapping[str, Any] | None) -> str:
    """``done/total message`` of a job's progress, rounded."""
    if not progress:
        return ""
    text = f"{count(progress.get('done'))}/{count(progress.get('total'))}"
    return f"{text} {progress.get('message') or ''}".strip()


STATE_STYLE = {
    "blocked": "dim",
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "lost": "yellow",
    "cancelled": "magenta",
    "dead": "bold red",
}


def styled_state(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"
