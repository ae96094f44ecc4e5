"""`zhuge up` as a real subprocess, driven through the CLI: kill a worker mid-job, stop and
kill the server with jobs queued and running, and check that every job finishes exactly once.

"Mid-job" is forced, not raced: those jobs are ``test-gate`` jobs (``tests/integration/
platform/gate.py``) that run until the test opens their gate, so a job the test kills cannot
have finished first. The server imports that module and preloads it in its Dask workers.
Waits are for states, with timeouts that only bound a hang.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import REPO, free_port, wait_for
from tests.integration.platform.gate import GATE, KINDS_MODULE, Gate
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobStore

pytestmark = pytest.mark.slow

ZHUGE = [sys.executable, "-m", "zhuge"]
# `zhuge up` with the test-only gate kinds registered (submissions are checked against them)
ZHUGE_UP_WITH_GATES = [
    sys.executable,
    "-c",
    f"import {KINDS_MODULE}; from zhuge.cli import main; main()",
    "up",
]
QUIET = ["--log-level", "warning"]
LEASE_SECONDS = 10  # how long a SIGKILLed server's running jobs wait to be found lost


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "ZHUGE_HOME": str(home),
            "ZHUGE_URL": self.url,
            "ZHUGE_LEASE_SECONDS": str(LEASE_SECONDS),
            "ZHUGE_HEARTBEAT_SECONDS": "0.5",
            "ZHUGE_RETRY_BASE_SECONDS": "0.1",
            "ZHUGE_POLL_SECONDS": "0.1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "500",  # a log line with a long path stays on one line
            "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([KINDS_MODULE]),
        }
        self.env.pop("ZHUGE_TOKEN", None)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> Server:
        self.starts += 1
        self.log = self.home / f"server-{self.starts}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [*ZHUGE_UP_WITH_GATES, "--port", str(self.port), "--workers", "2", *QUIET],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a kill takes the workers too
            )

        def healthy() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, what="zhuge up to answer /healthz", interval=0.2)
        self.auth = {"Authorization": f"Bearer {(self.home / 'token').read_text().strip()}"}
        return self

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*ZHUGE, *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if check:
            assert done.returncode == 0, f"zhuge {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def submit_gated(self, gate: Gate) -> int:
        return self.cli_json("submit", GATE, "-p", f"path={gate.path}")["id"]

    def job(self, job_id: int) -> dict:
        r = httpx.get(f"{self.url}/v1/jobs/{job_id}", headers=self.auth, timeout=30)
        r.raise_for_status()
        return r.json()

    def wait_job(self, job_id: int, accept, what: str) -> dict:
        return wait_for(
            lambda: self.job(job_id), until=accept, what=f"job {job_id} {what}", interval=0.1
        )

    def processes(self) -> list[psutil.Process]:
        assert self.proc is not None
        main = psutil.Process(self.proc.pid)
        return [main, *main.children(recursive=True)]

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)

    def kill_all(self) -> None:
        """SIGKILL the server and its workers, and wait until every one of them is gone."""
        assert self.proc is not None
        procs = self.processes()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        _, alive = psutil.wait_procs(procs, timeout=60)
        assert not alive, alive

    def worker_pid(self, address: str) -> int:
        port = int(address.rsplit(":", 1)[1])
        for child in self.processes()[1:]:
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
    s = Server(tmp_path / "home")
    s.home.mkdir()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.kill_all()


def running_on_a_worker(job: dict) -> bool:
    return job["state"] == "running" and bool(job["worker"])


def lost_reasons(server: Server, job_id: int) -> list[tuple[int, str]]:
    events = server.cli_json("jobs", "show", str(job_id))["events"]
    return [(e["attempt"], e["reason"]) for e in events if e["to_state"] == "lost"]


def open_store(home: Path) -> JobStore:
    return JobStore.open(f"sqlite:///{home / 'zhuge.db'}")


def succeeded_events(home: Path) -> dict[int, int]:
    store = open_store(home)
    try:
        counts: dict[int, int] = {}
        for job in store.list(limit=1000):
            counts[job.id] = sum(e.to_state is JobState.SUCCEEDED for e in store.events(job.id))
        return counts
    finally:
        store.dispose()


def test_up_survives_worker_kill_and_server_restarts(server, tmp_path):
    server.start()
    token = server.home / "token"
    assert token.stat().st_mode & 0o777 == 0o600

    # 1. a job whose worker is SIGKILLed mid-run finishes on another attempt
    gate = Gate(tmp_path / "gate-1")
    job_id = server.submit_gated(gate)
    running = server.wait_job(job_id, running_on_a_worker, "to start")
    victim = psutil.Process(server.worker_pid(running["worker"]))
    victim.kill()
    victim.wait(timeout=60)
    gate.open()  # the killed attempt was still at its gate; only a new attempt can pass it
    server.cli("jobs", "wait", str(job_id), "--timeout", "120")
    after = server.cli_json("jobs", "show", str(job_id))
    assert after["state"] == "succeeded" and after["result"]["attempt"] == after["attempt"] >= 2
    assert (after["failures"], after["lost"]) == (0, after["attempt"] - 1)  # lost, not failed
    assert lost_reasons(server, job_id)[0] in ((1, "worker_died"), (1, "lease_lost"))

    # 2. a clean stop (SIGTERM) with jobs running and queued loses nothing
    gate = Gate(tmp_path / "gate-2")
    ids = [server.submit_gated(gate) for _ in range(4)]
    wait_for(
        lambda: [i for i in ids if running_on_a_worker(server.job(i))],
        until=lambda started: len(started) == 2,  # two workers: two run, two wait
        what="two of the four jobs to start",
    )
    assert server.terminate() == 0
    store = open_store(server.home)
    states = [store.get(i).state for i in ids]
    drained = [i for i in ids if store.events(i)[-1].reason == "drained"]
    store.dispose()
    assert states == [JobState.QUEUED] * 4  # the running ones released back to the queue
    assert len(drained) == 2

    # 3. restart: the queued jobs finish
    server.start()
    gate.open()
    for i in ids:
        server.cli("jobs", "wait", str(i), "--timeout", "120")

    # 4. the whole server and its workers SIGKILLed mid-job: restart finds the job again
    gate = Gate(tmp_path / "gate-3")
    victim_id = server.submit_gated(gate)
    server.wait_job(victim_id, running_on_a_worker, "to start")
    server.kill_all()
    store = open_store(server.home)
    assert store.get(victim_id).state is JobState.RUNNING  # mid-run, and nobody left to say
    store.dispose()
    gate.open()  # its first attempt's process is gone: a new attempt must run
    server.start()
    server.cli("jobs", "wait", str(victim_id), "--timeout", "120")
    victim = server.job(victim_id)
    assert victim["state"] == "succeeded" and victim["attempt"] >= 2
    assert (1, "lease_lost") in lost_reasons(server, victim_id)

    # no job ran twice to completion
    counts = succeeded_events(server.home)
    assert counts == {i: 1 for i in [job_id, *ids, victim_id]}, counts
    status = server.cli_json("status")
    assert status["states"]["succeeded"] == 6
    # the killed server's workers stop being listed once they are not reported for a while
    wait_for(
        lambda: server.cli_json("status")["workers"],
        until=lambda workers: len(workers) == 2,
        what="only the running server's two workers to be listed",
        interval=1.0,
    )


def test_cli_reports_bad_input_clearly_and_changes_nothing(server, tmp_path):
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
        timeout=180,
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
    waited = server.cli("jobs", "wait", str(dead["id"]), "--timeout", "120", check=False)
    assert waited.returncode == 1 and "dead" in waited.stdout
    assert [j["id"] for j in server.cli_json("jobs", "ls", "--state", "dead")] == [dead["id"]]
    retried = server.cli_json("jobs", "retry", str(dead["id"]))
    assert retried["state"] == "queued"
    ok = server.cli_json("submit", "sleep", "-p", "seconds=0.2", "--wait")
    assert ok["state"] == "succeeded"
    logs = server.cli("jobs", "logs", str(ok["id"])).stdout
    assert "sleeping 0.2s" in logs and "awake" in logs

    # --follow prints a running job's lines as they come, and returns when the job ends
    gate = Gate(tmp_path / "follow")
    follow_id = server.submit_gated(gate)
    with subprocess.Popen(
        [*ZHUGE, "jobs", "logs", str(follow_id), "--follow"],
        env=server.env,
        stdout=subprocess.PIPE,
        text=True,
    ) as follower:
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout])
        reader.start()
        first = wait_for(lambda: None if lines.empty() else lines.get(), what="a followed line")
        assert f"waiting for {gate.path}" in first
        assert server.job(follow_id)["state"] == "running"  # its gate is closed: by construction
        gate.open()
        assert follower.wait(timeout=180) == 0
        reader.join()
    assert server.job(follow_id)["state"] == "succeeded"

    # cancel: a running job, a queued one, and refused for a finished one
    gate = Gate(tmp_path / "cancel")  # never opened
    running_id = server.submit_gated(gate)
    server.wait_job(running_id, running_on_a_worker, "to start")
    cancelled = server.cli_json("jobs", "cancel", str(running_id))
    assert cancelled["state"] == "cancelled"
    plain = server.cli("jobs", "cancel", str(running_id)).stdout  # cancelling again: a no-op
    assert f"job {running_id}" in plain and "cancelled" in plain
    finished = server.cli("jobs", "cancel", str(ok["id"]), check=False)
    assert finished.returncode == 1 and "succeeded job cannot become cancelled" in finished.stderr
    states = {j["id"]: j["state"] for j in server.cli_json("jobs", "ls", "--kind", GATE)}
    assert states == {follow_id: "succeeded", running_id: "cancelled"}

    # kinds: every kind with its parameters, as JSON and as a table
    kinds = {k["name"]: k for k in server.cli_json("kinds")}
    assert {"sleep", "echo", "burn", "forecast", "cluster", "plan-migration"} <= set(kinds)
    assert set(kinds["sleep"]["params_schema"]["properties"]) == {
        "seconds",
        "fail_times",
        "bad_input",
    }
    table = server.cli("kinds").stdout
    assert "sleep" in table and "seconds, fail_times, bad_input" in table
