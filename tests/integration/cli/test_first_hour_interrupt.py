"""Ctrl-C in a convenience command on the embedded platform: the job is cancelled, the
command says so and exits 130, and Dask's shutdown noise (CancelledError warnings, a client
closed after its loop, leaked semaphores) is not printed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zhuge.data.demo import write_fleet

pytestmark = pytest.mark.slow


def _wait_running(db: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                (n,) = conn.execute("select count(*) from jobs where state='running'").fetchone()
            if n:
                return
        except sqlite3.Error:
            pass  # not created yet
        time.sleep(0.1)
    pytest.fail("the job never started running")


def test_ctrl_c_cancels_the_job_and_prints_only_that(env, tmp_path):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    write_fleet(fleet, vms=60, days=14, seed=1)
    data = str(fleet / "telemetry.parquet")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhuge", "forecast", "--model", "autoets", "--input", data],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_running(Path(env["ZHUGE_HOME"]) / "zhuge.db", proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelled job 1" in err
    after = err.split("cancelled job 1", 1)[1]
    assert after.strip() == "", after  # no Dask warning, no traceback
    assert out == ""
