"""``zhuge up`` on a busy port fails in words before it starts anything; on another port it
says which ZHUGE_URL the other shells need."""

from __future__ import annotations

import socket
from typing import ClassVar

import pytest
import uvicorn
from typer.testing import CliRunner

import zhuge.platform
from zhuge.cli import app


class _Platform:
    """Records that it was started; serves nothing."""

    started: ClassVar[list[_Platform]] = []

    def __init__(self, settings, **_) -> None:
        self.settings = settings

    def start(self) -> _Platform:
        self.started.append(self)
        return self

    def app(self):
        return lambda scope, receive, send: None

    def stop(self) -> None:
        pass


@pytest.fixture
def platform(monkeypatch) -> list:
    _Platform.started = []
    monkeypatch.setattr(zhuge.platform, "Platform", _Platform)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    return _Platform.started


def test_a_busy_port_is_refused_before_anything_starts(platform, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            app, ["up", "--port", str(port), "--home", str(tmp_path)], env={"ZHUGE_URL": ""}
        )
    text = " ".join(result.output.split())
    assert result.exit_code == 1
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in text
    assert "Errno" not in text and "releasing" not in text and "Traceback" not in text
    assert platform == []  # no Dask, no database


def test_up_on_another_port_prints_the_zhuge_url_to_export(platform, tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    result = CliRunner().invoke(
        app, ["up", "--port", str(port), "--home", str(tmp_path)], env={"ZHUGE_URL": ""}
    )
    assert result.exit_code == 0, result.output
    assert f"export ZHUGE_URL=http://127.0.0.1:{port}" in result.output
    assert len(platform) == 1


def test_up_on_the_default_url_prints_no_export(platform, tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(
        app, ["up", "--port", str(port), "--home", str(tmp_path)], env={"ZHUGE_URL": url}
    )
    assert result.exit_code == 0, result.output
    assert "export ZHUGE_URL" not in result.output
