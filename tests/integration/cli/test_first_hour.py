"""A newcomer's first hour (issue 18): inputs as people have them, errors in the words of the
command line, Ctrl-C that says what it left running. Every check here fails before a job is
submitted, so no platform starts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.cli import jobs as jobs_cli

GERMAN = (
    "vm;Zeitstempel;Auslastung\n"
    "vm-1;2024-03-01T00:00:00;12,5\n"
    "vm-1;2024-03-01T00:05:00;13,0\n"
    "vm-2;2024-03-01T00:00:00;7,25\n"
)


def _fail(env, *args: str):
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # Rich wraps long lines


@pytest.fixture
def submitted(monkeypatch) -> list:
    """Jobs the commands submit (none should be: each error comes first)."""
    seen: list = []
    from zhuge.client import Client

    monkeypatch.setattr(Client, "submit", lambda self, *a, **k: seen.append(a))
    return seen


def test_semicolon_csv_missing_columns_suggest_the_columns_flag(env, tmp_path, submitted):
    path = tmp_path / "fleet.csv"
    path.write_text(GERMAN)
    output = _fail(env, "forecast", "--input", str(path))
    assert "columns present: ['vm', 'Zeitstempel', 'Auslastung']" in output
    assert "--columns 'series_id=vm,timestamp=Zeitstempel,value=Auslastung'" in output
    assert not submitted


def test_timestamp_unit_error_names_the_likely_unit_before_submitting(env, tmp_path, submitted):
    path = tmp_path / "fleet.csv"
    path.write_text("series_id,timestamp,value\nvm-1,1392388020000,1.0\nvm-1,1392388080000,2\n")
    output = _fail(env, "forecast", "--input", str(path), "--timestamp-unit", "s")
    assert "look like epoch ms" in output
    assert "--timestamp-unit 'ms'" in output
    assert "RuntimeWarning" not in output
    assert not submitted


@pytest.mark.parametrize("freq", ["60min", "1H", "1h", "1 hour"])
def test_freq_aliases_are_accepted(env, tmp_path, freq, submitted):
    path = tmp_path / "fleet.csv"
    path.write_text("series_id,timestamp,value\nvm-1,2024-03-01T00:00:00,1\n")
    # a bad horizon stops the command after --freq was accepted
    output = _fail(env, "forecast", "--input", str(path), "--freq", freq, "--horizon", "soon")
    assert "--freq" not in output
    assert "--horizon" in output


def test_field_errors_name_the_flag_and_json_keeps_the_parameter(env, tmp_path, submitted):
    path = tmp_path / "fleet.csv"
    path.write_text("series_id,timestamp,value\nvm-1,2024-03-01T00:00:00,1\n")
    output = _fail(env, "forecast", "--input", str(path), "--freq", "15min")
    assert "invalid --freq" in output
    assert "--freq: Input should be '5min'" in output
    result = CliRunner().invoke(
        app, ["forecast", "--input", str(path), "--freq", "15min", "--json"], env=env
    )
    error = json.loads(result.stdout)["error"]
    assert error["details"][0]["loc"][-1] == "freq"
    assert "--freq" not in error["message"]


class _FakeClient:
    """A server whose job never finishes, and a user who presses Ctrl-C while waiting."""

    def __init__(self) -> None:
        self.cancelled: list[int] = []

    def submit(self, kind, params, **_):
        return SimpleNamespace(id=41, kind=kind, state="queued")

    def wait(self, job_id, timeout=None):
        raise KeyboardInterrupt

    def cancel(self, job_id):
        self.cancelled.append(job_id)


@pytest.mark.parametrize(
    "args", [["submit", "sleep", "-p", "seconds=100", "--wait"], ["jobs", "wait", "41"]]
)
def test_ctrl_c_while_waiting_says_which_job_keeps_running(monkeypatch, args):
    fake = _FakeClient()
    monkeypatch.setattr(jobs_cli, "client", lambda *a, **k: fake)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    lines = result.output.strip().splitlines()
    text = " ".join(result.output.split())
    assert "job 41 keeps running" in text
    assert "zhuge jobs cancel 41" in text
    assert len(lines) <= 2  # that message and nothing else (no traceback, no job table)
    assert fake.cancelled == []  # waiting stopped, the job did not


def test_help_shows_brackets_that_rich_markup_would_swallow():
    result = CliRunner().invoke(app, ["forecast", "--help"], env={"COLUMNS": "250"})
    assert "lstm (needs zhuge[torch])" in result.output


def test_backtest_coverage_column_says_which_interval():
    from zhuge.cli.forecast import _coverage_title

    assert _coverage_title({"params": {"quantiles": [0.9, 0.1]}}) == "coverage q10-q90"
    assert _coverage_title({"params": {"quantiles": [0.05, 0.5, 0.95]}}) == "coverage q5-q95"


def test_telemetry_given_as_a_forecast_points_to_input(env, tmp_path, submitted):
    import pandas as pd

    telemetry = tmp_path / "telemetry.parquet"
    pd.DataFrame(
        {"series_id": ["vm-1"], "timestamp": [pd.Timestamp("2024-03-01")], "value": [3.0]}
    ).to_parquet(telemetry)
    vms = tmp_path / "vms.parquet"
    pd.DataFrame({"vm_id": ["vm-1"], "host_id": ["h1"], "memory_gb": [8.0]}).to_parquet(vms)
    output = _fail(
        env, "plan-migrations", "--forecast", str(telemetry), "--vms", str(vms), "--deadline", "24h"
    )
    assert "holds telemetry" in output and "give it to --input" in output
    assert "lacks" not in output
    assert not submitted


def test_level_without_host_ids_names_the_columns_and_vms_options(env, tmp_path, submitted):
    path = tmp_path / "fleet.csv"
    path.write_text("series_id,timestamp,value\nvm-1,2024-03-01T00:00:00,1\n")
    output = _fail(env, "forecast", "--input", str(path), "--level", "host")
    assert "map one with --columns 'host_id=NAME' or give the VM table (--vms)" in output
    assert not submitted


def test_an_error_about_options_together_is_said_once_without_the_model_location(env):
    output = _fail(env, "forecast", "--sql", "select 1")
    assert output.startswith("error: sql needs connection")
    assert "(params)" not in output and "•" not in output


def test_flag_words_for_nested_locations_and_for_submit_parameters():
    from zhuge.cli.common import in_flag_words
    from zhuge.errors import DataError, InvalidParams

    nested = InvalidParams(
        "invalid parameters for kind 'forecast': quantiles",
        details=[{"loc": ["quantiles", 1], "msg": "Value error, must lie in (0, 1)"}],
    )
    assert in_flag_words(nested) == ["invalid --quantiles", "--quantiles: must lie in (0, 1)"]
    # zhuge submit -p NAME=VALUE: the API's parameter names are the command line's words
    error = DataError("model_from 9 is no such job", details={"params": ["model_from"]})
    assert in_flag_words(error, lambda name: f"-p {name}") == ["model_from 9 is no such job"]
    assert in_flag_words(error) == ["--model-from 9 is no such job"]


def test_a_parameter_no_command_has_as_an_option_is_not_given_a_made_up_flag():
    from zhuge.cli.common import flag, in_flag_words
    from zhuge.errors import DataError, InvalidParams

    assert flag("blackouts") == "--blackout" and flag("models") == "--model"
    assert flag("k_min") == "k_min"  # no --k-min anywhere
    error = InvalidParams(
        "invalid parameters for kind 'cluster': k_min",
        details=[{"loc": ["k_min"], "msg": "Value error, k_min (8) exceeds k_max (2)"}],
    )
    assert "--k-min" not in " ".join(in_flag_words(error))
    kept = DataError("pass k_min=2", details={"params": ["k_min"]})
    assert in_flag_words(kept) == ["pass k_min=2"]
