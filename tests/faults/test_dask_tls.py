"""Dask traffic between hosts over TLS (``ZHUGE_DASK_TLS_CA``/``_CERT``/``_KEY``), with the
certificates the documented command makes: a ``dask scheduler`` speaking TLS only, a
``zhuge worker`` joining it, and zhuge's Dask client running work there; a client without
the certificate, and settings that are incomplete or name plain TCP, are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client
from typer.testing import CliRunner

from tests.conftest import free_port, wait_for
from zhuge.cli import app
from zhuge.config import Settings
from zhuge.errors import ConfigError
from zhuge.jobs import dask_tls
from zhuge.jobs.executor import DaskExecutor

REPO = Path(__file__).resolve().parents[2]


def _make_certs(folder: Path) -> dict[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the certificates cannot be made")
    subprocess.run(["bash", str(REPO / "scripts" / "make-dask-certs.sh"), str(folder)], check=True)
    return {
        "ZHUGE_DASK_TLS_CA": str(folder / "ca.pem"),
        "ZHUGE_DASK_TLS_CERT": str(folder / "node.pem"),
        "ZHUGE_DASK_TLS_KEY": str(folder / "node-key.pem"),
    }


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, str]:
    return _make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory) -> dict[str, str]:
    return _make_certs(tmp_path_factory.mktemp("other-certs"))


@pytest.mark.slow
def test_work_runs_over_tls_and_a_client_of_another_ca_is_refused(certs, other_certs, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZHUGE_", "DASK_"))}
    env.update(certs)
    env["PYTHONPATH"] = str(REPO)
    address = f"tls://127.0.0.1:{free_port()}"
    scheduler = _start(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--protocol", "tls", "--no-dashboard",
         "--tls-ca-file", certs["ZHUGE_DASK_TLS_CA"], "--tls-cert",
         certs["ZHUGE_DASK_TLS_CERT"], "--tls-key", certs["ZHUGE_DASK_TLS_KEY"]],
        env, tmp_path / "scheduler.log",
    )  # fmt: skip
    worker = None
    executor = None
    try:
        worker = _start(
            [sys.executable, "-m", "zhuge", "worker", address, "--nworkers", "1", "--cpus", "1",
             "--memory", "1", "--gpus", "0"],
            env, tmp_path / "worker.log",
        )  # fmt: skip
        settings = Settings.from_env(env)
        executor = DaskExecutor(address=address, security=dask_tls.security(settings)).start()
        (seen,) = wait_for(
            executor.workers,
            until=lambda ws: len(ws) == 1,
            what="the TLS worker to join",
            timeout=120,
            interval=0.5,
        )
        assert seen.address.startswith("tls://")
        assert executor.client.submit(sum, [20, 22], pure=False).result(timeout=60) == 42
        # a certificate of another CA: the scheduler does not let it in
        stranger = dask_tls.security(Settings.from_env(other_certs))
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=stranger, timeout="5s", set_as_default=False)
    finally:
        if executor is not None:
            executor.close()
        for proc in (worker, scheduler):
            if proc is not None:
                _stop(proc)


def test_incomplete_tls_settings_name_what_is_missing(certs):
    settings = Settings.from_env({"ZHUGE_DASK_TLS_CA": certs["ZHUGE_DASK_TLS_CA"]})
    with pytest.raises(ConfigError, match="ZHUGE_DASK_TLS_CERT, ZHUGE_DASK_TLS_KEY is not set"):
        dask_tls.security(settings)
    bad = Settings.from_env({**certs, "ZHUGE_DASK_TLS_KEY": "/nonexistent/key.pem"})
    with pytest.raises(ConfigError, match=r"ZHUGE_DASK_TLS_KEY=/nonexistent/key\.pem: no such"):
        dask_tls.security(bad)
    assert dask_tls.security(Settings.from_env({})) is None


def test_zhuge_worker_with_tls_refuses_a_plain_tcp_address(certs, monkeypatch):
    started: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda path, argv: started.append(argv))
    r = CliRunner().invoke(
        app, ["worker", "tcp://127.0.0.1:8786", "--cpus", "1", "--memory", "1", "--gpus", "0"],
        env=certs,
    )  # fmt: skip
    assert r.exit_code == 1 and "must start with tls://" in " ".join(r.output.split())
    assert started == []
    r = CliRunner().invoke(
        app, ["worker", "tls://127.0.0.1:8786", "--cpus", "1", "--memory", "1", "--gpus", "0"],
        env=certs,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (argv,) = started
    assert argv[argv.index("--tls-ca-file") + 1] == certs["ZHUGE_DASK_TLS_CA"]
    assert argv[argv.index("--tls-cert") + 1] == certs["ZHUGE_DASK_TLS_CERT"]
