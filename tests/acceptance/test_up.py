"""`zhuge up` as a real subprocess, driven through the CLI: kill a worker mid-job, stop and
kill the server with jobs queued and running, and check that every job finishes exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobStore

pytestmark = pytest.mark.slow

ZHUGE = [sys.executable, "-m", "zhuge"]


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ZHUGE_HOME": str(home),
            "ZHUGE_URL": self.url,
            "ZHUGE_LEASE_SECONDS": "2",
            "ZHUGE_HEARTBEAT_SECONDS": "0.3",
            "ZHUGE_RETRY_BASE_SECONDS": "0.1",
            "ZHUGE_POLL_SECONDS": "0.1",
        }
        self.env.pop("ZHUGE_TOKEN", None)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Server:
        self.starts += 1
        self.log = self.home / f"server-{self.starts}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [
                    *ZHUGE,
                    "up",
                    "--port",
                    str(self.port),
                    "--workers",
                    "2",
                    "--log-level",
                    "warning",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a kill takes the workers too
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError("zhuge up did not become healthy in 60 s")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*ZHUGE, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check:
            assert done.returncode == 0, f"zhuge {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill_all(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def worker_pid(self, address: str) -> int:
        port = int(address.rsplit(":", 1)[1])
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if any(
                    c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                    for c in child.net_connections()
                ):
                    return child.pid
            except psutil.Error:
                continue
        raise AssertionError(f"no process listens on {address}")


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.kill_all()


def wait_state(server: Server, job_id: int, predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = server.cli_json("jobs", "show", str(job_id))
        if predicate(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached the expected state: {job}")


def succeeded_events(home: Path) -> dict[int, int]:
    store = JobStore.open(f"sqlite:///{home / 'zhuge.db'}")
    try:
        counts: dict[int, int] = {}
        for job in store.list(limit=1000):
            counts[job.id] = sum(e.to_state is JobState.SUCCEEDED for e in store.events(job.id))
        return counts
    finally:
        store.dispose()


def test_up_survives_worker_kill_and_server_restarts(server):
    server.start()
    token = server.home / "token"
    assert token.stat().st_mode & 0o777 == 0o600

    # 1. a job whose worker is SIGKILLed mid-run finishes on another attempt
    job = server.cli_json("submit", "sleep", "-p", "seconds=3")
    running = wait_state(server, job["id"], lambda j: j["state"] == "running" and j["worker"])
    os.kill(server.worker_pid(running["worker"]), signal.SIGKILL)
    server.cli("jobs", "wait", str(job["id"]), "--timeout", "60")
    after = server.cli_json("jobs", "show", str(job["id"]))
    assert after["state"] == "succeeded" and after["attempt"] >= 2

    # 2. a clean stop (SIGTERM) with jobs running and queued loses nothing
    ids = [server.cli_json("submit", "sleep", "-p", "seconds=5")["id"] for _ in range(4)]
    wait_state(server, ids[0], lambda j: j["state"] == "running")
    assert server.terminate() == 0
    store = JobStore.open(f"sqlite:///{server.home / 'zhuge.db'}")
    states = {store.get(i).state for i in ids}
    store.dispose()
    assert JobState.RUNNING not in states  # released back to the queue, not stranded
    assert JobState.QUEUED in states

    # 3. restart: the queued jobs finish
    server.start()
    for i in ids:
        server.cli("jobs", "wait", str(i), "--timeout", "60")

    # 4. the whole server and its workers SIGKILLed mid-job: restart finds the job again
    victim = server.cli_json("submit", "sleep", "-p", "seconds=2")["id"]
    wait_state(server, victim, lambda j: j["state"] == "running" and j["worker"])
    server.kill_all()
    server.start()
    server.cli("jobs", "wait", str(victim), "--timeout", "60")

    # no job ran twice to completion
    counts = succeeded_events(server.home)
    assert set(counts.values()) == {1}, counts
    assert len(counts) == 6

    status = server.cli_json("status")
    assert status["states"]["succeeded"] == 6
    # the killed server's workers stop being listed once they are not reported for 10 s
    deadline = time.monotonic() + 20
    while len(server.cli_json("status")["workers"]) != 2:
        assert time.monotonic() < deadline, server.cli_json("status")["workers"]
        time.sleep(1)


def test_cli_reports_bad_input_clearly_and_changes_nothing(server):
    server.start()
    bad = server.cli("submit", "sleep", "-p", "seconds=abc", check=False)
    assert bad.returncode == 1
    assert "invalid parameters for kind 'sleep'" in bad.stderr and "Traceback" not in bad.stderr
    unknown = server.cli("submit", "nope", check=False)
    assert unknown.returncode == 1 and "unknown job kind 'nope'" in unknown.stderr
    missing = server.cli("jobs", "show", "4242", check=False)
    assert missing.returncode == 1 and "job 4242 does not exist" in missing.stderr
    notoken = subprocess.run(
        [*ZHUGE, "jobs", "ls"],
        env={**server.env, "ZHUGE_TOKEN": "zt_nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert notoken.returncode == 1 and "unknown, revoked or expired" in notoken.stderr
    assert server.cli_json("jobs", "ls") == []

    # idempotency through the CLI
    a = server.cli_json("submit", "echo", "-p", "x=1", "--idempotency-key", "once")
    b = server.cli_json("submit", "echo", "-p", "x=1", "--idempotency-key", "once")
    assert a["id"] == b["id"]
    clash = server.cli("submit", "echo", "-p", "x=2", "--idempotency-key", "once", check=False)
    assert clash.returncode == 1 and "already used" in clash.stderr

    # wait, logs, dead and retry
    dead = server.cli_json(
        "submit", "sleep", "-p", "seconds=0", "-p", "fail_times=5", "--max-attempts", "1"
    )
    waited = server.cli("jobs", "wait", str(dead["id"]), "--timeout", "30", check=False)
    assert waited.returncode == 1 and "dead" in waited.stdout
    retried = server.cli_json("jobs", "retry", str(dead["id"]))
    assert retried["state"] == "queued"
    ok = server.cli_json("submit", "sleep", "-p", "seconds=0.2", "--wait")
    assert ok["state"] == "succeeded"
    logs = server.cli("jobs", "logs", str(ok["id"])).stdout
    assert "sleeping 0.2s" in logs and "awake" in logs
    # --follow streams a running job's lines and returns when it ends
    slow = server.cli_json("submit", "sleep", "-p", "seconds=1.5")
    followed = server.cli("jobs", "logs", str(slow["id"]), "--follow").stdout
    assert "sleeping 1.5s" in followed and "awake" in followed
    assert server.cli_json("jobs", "show", str(slow["id"]))["state"] == "succeeded"
