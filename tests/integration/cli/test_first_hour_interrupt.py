"""Ctrl-C in a convenience command on the embedded platform: the job is cancelled, the
command says so and exits 130, and Dask's shutdown noise (CancelledError warnings, a client
closed after its loop, leaked semaphores) is not printed."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_for
from zhuge.cli.run import _not_a_lost_heartbeat
from zhuge.data.demo import write_fleet

pytestmark = pytest.mark.slow


def _running_jobs(db: Path, proc: subprocess.Popen) -> int:
    assert proc.poll() is None, proc.communicate()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("select count(*) from jobs where state='running'").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def _wait_running(db: Path, proc: subprocess.Popen) -> None:
    wait_for(lambda: _running_jobs(db, proc), what="the job to start running", timeout=180)


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


def test_ctrl_c_while_the_platform_starts_stops_it_in_order(env, tmp_path):
    data = tmp_path / "fleet.csv"
    data.write_text("series_id,timestamp,value\nvm-1,2024-03-01T00:00:00,1\n")
    db = Path(env["ZHUGE_HOME"]) / "zhuge.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhuge", "prepare", "--input", str(data)],
        env={**os.environ, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def store_opened() -> bool:  # the store is opened before Dask starts
            assert proc.poll() is None, proc.communicate()
            return db.exists()

        wait_for(store_opened, what="the embedded store to be opened", interval=0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    # pressed during the start (held until it is up), or, on a fast machine, once it ran
    assert "interrupted: nothing was submitted" in err or "cancelled job" in err


def test_a_workers_lost_heartbeat_is_not_printed_but_its_other_errors_are(caplog):
    """A worker's heartbeat in flight as Ctrl-C closes it logs "Failed to communicate with
    scheduler during heartbeat" with a traceback (seen once in CI after "cancelled job 1");
    the embedded scheduler is in the command's process, so that is always the shutdown."""
    worker_log = logging.getLogger("distributed.worker.test-heartbeat")
    worker_log.addFilter(_not_a_lost_heartbeat)
    try:
        with caplog.at_level(logging.ERROR, logger=worker_log.name):
            try:
                raise OSError("ConnectionPool closing.")
            except OSError:
                worker_log.exception("Failed to communicate with scheduler during heartbeat.")
            worker_log.error("Compute Failed: %s", "a real error")
    finally:
        worker_log.removeFilter(_not_a_lost_heartbeat)
    assert [r.getMessage() for r in caplog.records] == ["Compute Failed: a real error"]
