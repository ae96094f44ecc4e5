"""What every command shares: the client, JSON or Rich output, and error reporting."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

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


@contextmanager
def user_errors(json_output: bool = False) -> Iterator[None]:
    """Report zhuge errors as one clear line (or a JSON error), exit code 1, no traceback."""
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
            err_console.print(f"[bold red]error:[/] {exc.message}")
            details = exc.details
            if isinstance(details, list):
                for d in details[:20]:
                    if isinstance(d, dict) and "msg" in d:
                        loc = ".".join(str(p) for p in d.get("loc", []))
                        err_console.print(f"  [red]•[/] {loc}: {d['msg']}")
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


STATE_STYLE = {
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
