"""Conveniences every CLI of this kind has: --version, shell completion, a config file that
environment variables override, --wide tables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from zhuge import __version__
from zhuge.cli import app, hoist_global_options
from zhuge.cli import common as common_cli
from zhuge.cli import jobs as jobs_cli
from zhuge.cli.config import apply_config, load_config
from zhuge.errors import ConfigError

UNSET = {"ZHUGE_URL": None, "ZHUGE_TOKEN": None, "ZHUGE_HOME": None, "ZHUGE_EMBEDDED": None}


def _invoke(args, **env):
    return CliRunner().invoke(app, args, env={**UNSET, **env})


def test_version():
    result = _invoke(["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"zhuge {__version__}"


def test_shell_completion_is_offered():
    result = _invoke(["--show-completion", "bash"])
    assert result.exit_code == 0, result.output
    assert "_ZHUGE_COMPLETE" in result.output or "complete" in result.output
    assert "--install-completion" in _invoke(["--help"]).output


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_config_url_is_used_and_the_environment_overrides_it(tmp_path):
    config = _config(tmp_path, 'url = "http://127.0.0.1:9"\n')
    result = _invoke(["jobs", "ls"], ZHUGE_CONFIG=config)
    assert result.exit_code == 1
    assert "http://127.0.0.1:9" in result.output
    result = _invoke(["jobs", "ls"], ZHUGE_CONFIG=config, ZHUGE_URL="http://127.0.0.1:7")
    assert "http://127.0.0.1:7" in result.output and ":9" not in result.output


def test_config_token_file_fills_the_token_unless_the_environment_has_one(tmp_path):
    (tmp_path / "token").write_text("secret-from-file\n")
    config = load_config({"ZHUGE_CONFIG": _config(tmp_path, f'token_file = "{tmp_path}/token"')})
    env: dict[str, str] = {}
    apply_config(config, env)
    assert env["ZHUGE_TOKEN"] == "secret-from-file"
    env = {"ZHUGE_TOKEN": "from-env"}
    apply_config(config, env)
    assert env["ZHUGE_TOKEN"] == "from-env"


def test_config_defaults_fill_options_and_the_command_line_overrides_them(tmp_path, env):
    data = tmp_path / "fleet.csv"
    data.write_text("series_id,timestamp,value\nvm-1,2024-03-01T00:00:00,1\n")
    config = _config(tmp_path, '[defaults.forecast]\nfreq = "15min"\ntimestamp-unit = "iso"\n')
    result = CliRunner().invoke(
        app, ["forecast", "--input", str(data)], env={**env, "ZHUGE_CONFIG": config}
    )
    assert result.exit_code == 1
    assert "--freq: Input should be" in result.output  # the config's 15min was used
    result = CliRunner().invoke(
        app,
        ["forecast", "--input", str(data), "--freq", "1h", "--horizon", "soon"],
        env={**env, "ZHUGE_CONFIG": config},
    )
    assert "--freq" not in result.output and "--horizon" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("urll = 'x'", "unknown key(s) ['urll']"),
        ("[defaults.forcast]\nfreq = '1h'", "[defaults.forcast] is no command"),
        ("[defaults.forecast]\nfrq = '1h'", "[defaults.forecast] has no option 'frq'"),
        ("url = ", "config file"),
    ],
)
def test_config_mistakes_are_named(tmp_path, text, message):
    result = _invoke(["jobs", "ls"], ZHUGE_CONFIG=_config(tmp_path, text))
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_missing_zhuge_config_is_an_error():
    with pytest.raises(ConfigError, match="no such file"):
        load_config({"ZHUGE_CONFIG": "/nonexistent/zhuge.toml"})


def test_wide_after_the_command_is_hoisted():
    assert hoist_global_options(["jobs", "ls", "--wide"]) == ["--wide", "jobs", "ls"]
    assert hoist_global_options(["submit", "x", "--", "--wide"]) == ["submit", "x", "--", "--wide"]


def test_wide_tables_are_not_cut(monkeypatch):
    long_kind = "a-kind-with-a-name-long-enough-to-be-cut-" + "x" * 60
    job = {
        "id": 1,
        "kind": long_kind,
        "state": "queued",
        "priority": 0,
        "attempt": 0,
        "max_attempts": 3,
        "created_at": None,
        "duration_seconds": None,
        "worker": None,
    }
    fake = SimpleNamespace(list=lambda **_: [SimpleNamespace(raw=job, **job)])
    monkeypatch.setattr(jobs_cli, "client", lambda *a, **k: fake)
    for console in (common_cli.console, common_cli.err_console):
        monkeypatch.setattr(console, "_width", console._width)  # restored after the test
    narrow = _invoke(["jobs", "ls"], COLUMNS="80")
    assert narrow.exit_code == 0, narrow.output
    assert long_kind not in narrow.output
    wide = _invoke(["--wide", "jobs", "ls"], COLUMNS="80")
    assert long_kind in wide.output
    narrow = _invoke(["jobs", "ls"], COLUMNS="80")  # --wide lasts one run
    assert long_kind not in narrow.output
    piped = _invoke(["jobs", "ls"], COLUMNS=None)  # not a terminal, no COLUMNS: a file
    assert long_kind in piped.output
