"""Output people read: durations as people write them, rounded progress, an ETA."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from rich.console import Console
from rich.progress import Progress

from zhuge.cli import run
from zhuge.cli.common import count, duration, progress_text
from zhuge.cli.jobs import show_job


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0 days 01:00:00", "1h"),  # as pandas prints a Timedelta
        ("PT1H30M", "1h30min"),
        (pd.Timedelta("30min"), "30min"),
        (dt.timedelta(days=2, hours=3, minutes=4), "2d3h"),
        (5400.0, "1h30min"),
        (0.25, "250ms"),
        ("2024-01-15 00:00:00", "2024-01-15 00:00:00"),  # not a duration: as it is
    ],
)
def test_durations_read_as_people_write_them(value, text):
    assert duration(value) == text


def test_progress_counts_are_rounded():
    assert count(4.899999999999999) == "4.9"
    assert count(25.0) == "25"
    assert count(12000) == "12,000"
    assert progress_text({"done": 4.899999999999999, "total": 25.0, "message": "chunks"}) == (
        "4.9/25 chunks"
    )


def test_jobs_show_prints_rounded_progress(monkeypatch):
    out = Console(record=True, width=200)
    monkeypatch.setattr("zhuge.cli.jobs.console", out)
    job = {
        "id": 7,
        "kind": "forecast",
        "state": "running",
        "params": {},
        "attempt": 1,
        "failures": 0,
        "max_attempts": 3,
        "lost": 0,
        "max_lost": 3,
        "priority": 0,
        "resources": {},
        "cpu_seconds": 0.0,
        "worker": None,
        "created_at": None,
        "started_at": None,
        "finished_at": None,
        "duration_seconds": None,
        "progress": {"done": 4.899999999999999, "total": 25.0, "message": "series"},
    }
    show_job(job, [])
    text = out.export_text()
    assert "4.9/25 series" in text
    assert "4.899999999999999" not in text


def _render(total: float | None, completed: float, elapsed: float) -> str:
    console = Console(record=True, width=200, force_terminal=False)
    columns = run._progress_bar(json_output=False).columns  # the command's own columns
    with Progress(*columns, console=console, auto_refresh=False) as progress:
        task = progress.add_task("forecasting", total=total, state="running", message="")
        progress.update(task, completed=completed)
        # two samples a known time apart: the speed Rich derives the ETA from
        t = progress.tasks[0]
        t._progress.clear()
        t._progress.extend([_sample(0.0, 0.0), _sample(elapsed, completed)])
        t.start_time = 0.0
        progress.get_time = lambda: elapsed  # a fixed clock
        progress.refresh()
    return console.export_text()


def _sample(timestamp: float, completed: float):
    from rich.progress import ProgressSample

    return ProgressSample(timestamp, completed)


def test_progress_bar_shows_a_rounded_count_and_an_eta():
    text = _render(total=25.0, completed=5.0, elapsed=10.0)
    assert "5/25" in text
    assert "eta 0:00:40" in text  # 20 left at 0.5 a second


def test_no_eta_before_a_total_or_any_progress():
    assert "eta" not in _render(total=None, completed=0.0, elapsed=10.0)
    assert "eta" not in _render(total=25.0, completed=0.0, elapsed=10.0)


def test_an_error_piped_is_one_line_whatever_its_length():
    """CI's worker path (``/tmp/pytest-of-root/pytest-7/popen-gw0/...``) made a database URL
    long enough for an error to wrap in the middle of "newer zhuge": a pipe or a log gets
    each line of stderr whole, however narrow the terminal it claims; only a terminal wraps."""
    from typer.testing import CliRunner

    from zhuge.cli import app

    missing = "/tmp/" + "d" * 150 + "/config.toml"
    result = CliRunner().invoke(
        app, ["db", "current"], env={"ZHUGE_CONFIG": missing, "COLUMNS": "80"}
    )
    assert result.exit_code == 1
    assert result.output == f"error: ZHUGE_CONFIG={missing}: no such file\n"
