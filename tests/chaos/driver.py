"""The chaos run: the production shape under random, seeded faults, counted by a ledger.

It starts a private PostgreSQL (``postgres.py``), a Dask scheduler, ``--schedulers`` processes
of ``zhuge up --no-dask`` (scheduler + API each) and ``--api-only`` API processes on that
database and Dask scheduler, and ``--workers`` processes of ``zhuge worker`` (one Dask worker
each). It submits ``--jobs`` jobs of ``chaos-ledger`` (``ledger_kind.py``: each execution
writes to a ledger outside the store), then injects faults drawn from ``random.Random(seed)``
until ``--fault-seconds`` or ``--max-faults`` run out or every job is done:

- SIGKILL of a scheduler, an API process or a worker (its process group), started again;
- SIGSTOP of one of them for longer than the lease, then SIGCONT;
- a restart of the PostgreSQL instance (``pg_ctl restart -m immediate``: a crash);
- with ``--hosts`` (root, iproute2): the workers run on two other hosts (network namespaces,
  ``hosts.py``), the platform on a hub, Dask over TLS, and a worker host's link is cut for
  longer than the lease, then restored.

Then every process is let go and running, and the run waits (bounded by ``--settle-seconds``)
until no job is queued or running, and checks the end state:

- every job succeeded, with exactly one ``succeeded`` event in the store;
- the ledger holds exactly one committed outcome per job (the ``end`` line whose nonce the
  stored result holds, of the attempt the store committed); every other ``end`` line is an
  execution the store fenced off: an attempt it recorded as lost (its late commit refused),
  or the same attempt re-run by Dask after its worker died, never committed;
- no job is stuck; lost attempts carry a ``LostReason``; no job spent an attempt
  (``failures`` is 0: losses count against ``max_lost`` only).

The faults are random but seeded, and the checks are about the end state only, never timing:
the same seed injects the same kinds of fault in the same order, whatever the machine's speed.

    python -m tests.chaos.driver --jobs 3000 --fault-seconds 600   # make chaos
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from tests.chaos.hosts import HUB_IP, Hosts
from tests.chaos.ledger_kind import LEDGER, LEDGER_ENV, MODULE, UP_WITH_LEDGER, read_ledger
from tests.chaos.postgres import PrivatePostgres
from tests.conftest import free_port
from zhuge.client import Client
from zhuge.jobs import schema
from zhuge.jobs.states import LostReason

REPO = Path(__file__).resolve().parents[2]
FAULTS = (
    "kill-scheduler",
    "kill-api",
    "kill-worker",
    "pause-scheduler",
    "pause-api",
    "pause-worker",
    "restart-postgres",
)
CUT_HOST = "cut-host"  # with --hosts: a worker host's link down for longer than the lease


def faults_of(hosts: bool) -> tuple[str, ...]:
    return (*FAULTS, CUT_HOST) if hosts else FAULTS


@dataclass
class ChaosOptions:
    jobs: int = 3000
    schedulers: int = 2  # zhuge up: scheduler + API
    api_only: int = 1  # zhuge up --api-only
    workers: int = 4
    seed: int = 1
    fault_seconds: float = 600.0  # faults stop after this long...
    max_faults: int = 400  # ...or this many, or when every job is done
    fault_gap: tuple[float, float] = (1.0, 4.0)  # seconds between two faults
    lease_seconds: float = 6.0
    heartbeat_seconds: float = 1.0
    job_seconds: tuple[float, float] = (0.02, 0.5)
    max_lost: int = 100  # losses a job may suffer (not attempts: those stay 3)
    settle_seconds: float = 900.0  # after the faults, the most to wait for the queue to drain
    folder: Path | None = None
    hosts: bool = False  # workers on two other hosts (network namespaces), Dask over TLS
    keep_failed_database: bool = True  # a run with problems keeps its database, stopped


@dataclass
class ChaosReport:
    options: dict[str, Any]
    faults: dict[str, int] = field(default_factory=dict)
    sequence: list[str] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    executions: int = 0  # ledger end lines
    interrupted: int = 0  # started executions that never wrote their end line
    committed: int = 0  # jobs whose one committed outcome the ledger holds
    fenced: int = 0  # extra executions of an attempt the store recorded as lost
    rerun_uncommitted: int = 0  # the committed attempt run again by Dask, never committed
    lost_by_reason: dict[str, int] = field(default_factory=dict)
    max_lost_of_a_job: int = 0
    failures: int = 0  # attempts spent (must be 0)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # nothing lost, nothing done twice
    # every extra execution fenced, no attempt spent by the platform (see docs/operations.md)
    attempt_problems: list[str] = field(default_factory=list)
    kept_database: str | None = None  # a run with problems keeps its database, stopped, here

    @property
    def ok(self) -> bool:
        return not self.problems and not self.attempt_problems


class Proc:
    """One process of the run, in a process group of its own (a worker's nanny and its
    child are killed and paused together)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=REPO,
            )  # fmt: skip

    def signal(self, sig: signal.Signals) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=30)
        self.paused = False

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class ChaosRun:
    def __init__(self, options: ChaosOptions) -> None:
        self.o = options
        # Two generators: the faults' kinds, gaps and pauses come from one, so a seed gives
        # the same sequence whatever the timing; victims and job lengths from the other.
        self.rng = random.Random(options.seed)
        self.fault_rng = random.Random(f"faults-{options.seed}")
        self.folder = options.folder or Path(tempfile.mkdtemp(prefix="zhuge-chaos-"))
        self.ledger = self.folder / "ledger"
        self.ledger.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o755)  # the postgres user makes its folder inside
        self.net: Hosts | None = None
        self.ip = "127.0.0.1"  # where the platform's services listen
        if options.hosts:
            self.net = Hosts()
            self.ip = HUB_IP
        self.pg = PrivatePostgres(
            self.folder / "pg", host=self.ip, netns=self.net.hub_name if self.net else None
        )
        self.cut: set[str] = set()  # worker hosts cut off now
        self.tls: dict[str, str] = {}  # ZHUGE_DASK_TLS_* (with hosts)
        self.procs: dict[str, list[Proc]] = {"scheduler": [], "api": [], "worker": []}
        self.dask: Proc | None = None
        self.urls: list[str] = []
        self.token = ""
        self.faults: Counter[str] = Counter()
        self.sequence: list[str] = []  # the faults injected, in order
        self.job_ids: list[int] = []
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()

    # -- the deployment --------------------------------------------------------------------

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZHUGE_", "DASK_"))}
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            ZHUGE_DB_URL=self.pg.url,
            ZHUGE_LEASE_SECONDS=str(self.o.lease_seconds),
            ZHUGE_HEARTBEAT_SECONDS=str(self.o.heartbeat_seconds),
            ZHUGE_RETRY_BASE_SECONDS="0.2",
            ZHUGE_RETRY_MAX_SECONDS="2",
        )
        env.update(self.tls)
        env.update(extra)
        return env

    def _on(self, netns: str | None) -> list[str]:
        return ["ip", "netns", "exec", netns] if netns else []

    def start(self) -> None:
        hub: str | None = None
        tls_args: list[str] = []
        if self.net is not None:
            self.net.build(2)
            hub = self.net.hub
            certs = self.folder / "certs"
            subprocess.run(
                ["bash", str(REPO / "scripts" / "make-dask-certs.sh"), str(certs)],
                check=True, capture_output=True,
            )  # fmt: skip
            self.tls = {
                "ZHUGE_DASK_TLS_CA": str(certs / "ca.pem"),
                "ZHUGE_DASK_TLS_CERT": str(certs / "node.pem"),
                "ZHUGE_DASK_TLS_KEY": str(certs / "node-key.pem"),
            }
            tls_args = ["--protocol", "tls", "--tls-ca-file", self.tls["ZHUGE_DASK_TLS_CA"],
                        "--tls-cert", self.tls["ZHUGE_DASK_TLS_CERT"],
                        "--tls-key", self.tls["ZHUGE_DASK_TLS_KEY"]]  # fmt: skip
        self.pg.start()
        dask_port = free_port()
        scheme = "tls" if self.tls else "tcp"
        self.dask_address = f"{scheme}://{self.ip}:{dask_port}"
        self.dask = Proc(
            "dask-scheduler",
            [*self._on(hub), sys.executable, "-m", "distributed.cli.dask_scheduler",
             "--host", self.ip, "--port", str(dask_port), "--no-dashboard", *tls_args],
            self._env(),
            self.folder / "dask-scheduler.log",
        )  # fmt: skip
        self.dask.start()
        for i in range(self.o.schedulers + self.o.api_only):
            role = "scheduler" if i < self.o.schedulers else "api"
            port = free_port()
            home = self.folder / f"{role}-{i}"
            argv = [*self._on(hub), *UP_WITH_LEDGER, "--host", self.ip, "--port", str(port),
                    "--no-dask", "--log-level", "warning"]  # fmt: skip
            if role == "api":
                argv.append("--api-only")
            proc = Proc(
                f"{role}-{i}",
                argv,
                self._env(ZHUGE_HOME=str(home), ZHUGE_DASK_ADDRESS=self.dask_address),
                self.folder / f"{role}-{i}.log",
            )
            proc.url = f"http://{self.ip}:{port}"  # type: ignore[attr-defined]
            proc.start()
            self._wait_healthy(proc)  # one at a time: the first creates the schema
            self.procs[role].append(proc)
            self.urls.append(proc.url)  # type: ignore[attr-defined]
        self.token = (self.folder / "scheduler-0" / "token").read_text().strip()
        for i in range(self.o.workers):
            host = self.net.workers[i % len(self.net.workers)] if self.net else None
            proc = Proc(
                f"worker-{i}",
                [*self._on(host), sys.executable, "-m", "zhuge", "worker", self.dask_address,
                 "--nworkers", "1", "--cpus", "1", "--memory", "1", "--gpus", "0"],
                self._env(
                    DASK_DISTRIBUTED__WORKER__PRELOAD=MODULE,
                    DASK_DISTRIBUTED__WORKER__DAEMON="False",
                    **{LEDGER_ENV: str(self.ledger)},
                ),
                self.folder / f"worker-{i}.log",
            )  # fmt: skip
            proc.host = host  # type: ignore[attr-defined]
            proc.start()
            self.procs["worker"].append(proc)

    def _wait_healthy(self, proc: Proc, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited; see {proc.log}")
            try:
                if httpx.get(f"{proc.url}/healthz", timeout=2).status_code == 200:  # type: ignore[attr-defined]
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{proc.name} did not answer /healthz within {timeout:g}s")

    def client(self) -> Client:
        return Client(self.urls[0], self.token)

    def submit(self) -> None:
        jobs = [
            {
                "kind": LEDGER,
                "params": {"seconds": round(self.rng.uniform(*self.o.job_seconds), 3)},
                "max_lost": self.o.max_lost,
                "idempotency_key": f"chaos-{self.o.seed}-{i}",
            }
            for i in range(self.o.jobs)
        ]
        with self.client() as c:
            self.job_ids = [j.id for j in c.submit_many(jobs)]

    # -- faults ------------------------------------------------------------------------------

    def _victim(self, role: str) -> Proc | None:
        candidates = [p for p in self.procs[role] if p.alive() and not p.paused]
        return self.rng.choice(candidates) if candidates else None

    def inject(self) -> str:
        """One fault, drawn from the seeded generator; its name (what was done)."""
        fault = self.fault_rng.choice(faults_of(self.o.hosts))
        action, _, role = fault.partition("-")
        pause_for = self.o.lease_seconds + self.fault_rng.uniform(1.0, 4.0)
        if fault == "restart-postgres":
            self.pg.restart()
        elif fault == CUT_HOST:
            assert self.net is not None
            hosts = [h for h in self.net.workers if h not in self.cut]
            if not hosts:
                self.sequence.append(f"{fault} (skipped: none to hit)")
                return f"{fault}: skipped, none to hit"
            host = self.rng.choice(hosts)
            self.net.cut(host)
            self.cut.add(host)
            timer = threading.Timer(pause_for, self._reconnect, args=(host,))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)
        else:
            victim = self._victim(role)
            if victim is None:  # every one of its kind is paused: skip it, as planned
                self.sequence.append(f"{fault} (skipped: none to hit)")
                return f"{fault}: skipped, none to hit"
            if action == "kill":
                victim.kill()
                victim.start()
            else:
                victim.pause()
                timer = threading.Timer(pause_for, victim.resume)
                timer.daemon = True
                timer.start()
                self._timers.append(timer)
        self.faults[fault] += 1
        self.sequence.append(fault)
        return fault

    def _reconnect(self, host: str) -> None:
        assert self.net is not None
        self.net.restore(host)
        self.cut.discard(host)

    def revive(self) -> None:
        """Start again a process that ended by itself, as its supervisor (systemd, a
        Kubernetes controller) would: a Dask worker cut off from its scheduler for long
        closes down, and a scheduler or API process started while PostgreSQL restarts exits
        at once (it refuses a database it cannot read)."""
        for procs in self.procs.values():
            for p in procs:
                if not p.alive() and not p.paused:
                    p.start()

    def _unfinished(self, engine: sa.Engine) -> int:
        J = schema.jobs
        try:
            with engine.connect() as conn:
                return conn.execute(
                    sa.select(sa.func.count()).where(J.c.state.in_(["queued", "running"]))
                ).scalar_one()
        except sa.exc.DBAPIError:
            return -1  # the database is restarting

    def run_faults(self, engine: sa.Engine) -> None:
        deadline = time.monotonic() + self.o.fault_seconds
        while time.monotonic() < deadline and len(self.sequence) < self.o.max_faults:
            time.sleep(self.fault_rng.uniform(*self.o.fault_gap))
            if self._unfinished(engine) == 0:
                break
            done = self.inject()
            self.revive()
            print(f"  fault: {done}", flush=True)

    def calm(self) -> None:
        """Every paused process let go, every dead one started again."""
        for timer in self._timers:
            timer.cancel()
        for host in list(self.cut):
            self._reconnect(host)
        for procs in self.procs.values():
            for p in procs:
                p.resume()
                if not p.alive():
                    p.start()

    def settle(self, engine: sa.Engine) -> bool:
        deadline = time.monotonic() + self.o.settle_seconds
        while time.monotonic() < deadline:
            if self._unfinished(engine) == 0:
                return True
            time.sleep(1.0)
        return False

    def stop(self, *, keep_database: bool = False) -> None:
        for timer in self._timers:
            timer.cancel()
        for procs in self.procs.values():
            for p in procs:
                p.kill()
        if self.dask is not None:
            self.dask.kill()
        self.pg.stop(keep=keep_database)
        if self.net is not None:
            self.net.destroy()

    # -- the end checks ------------------------------------------------------------------

    def check(self, engine: sa.Engine, settled: bool) -> ChaosReport:
        report = ChaosReport(options={k: str(v) for k, v in asdict(self.o).items()})
        report.faults = dict(self.faults)
        report.sequence = list(self.sequence)
        if not settled:
            report.problems.append(f"jobs still unfinished after {self.o.settle_seconds:g}s")
        J, E = schema.jobs, schema.job_events
        with engine.connect() as conn:
            jobs = {r.id: r for r in conn.execute(sa.select(J).where(J.c.kind == LEDGER))}
            events = conn.execute(
                sa.select(E.c.job_id, E.c.attempt, E.c.to_state, E.c.reason, E.c.message).order_by(
                    E.c.id
                )
            ).all()
        report.states = dict(Counter(j.state for j in jobs.values()))
        if sorted(jobs) != sorted(self.job_ids):
            report.problems.append("the store's jobs are not the ones submitted")
        succeeded_events: Counter[int] = Counter()
        history: dict[int, list[tuple[int, str, str | None, str]]] = {}
        lost_attempts: set[tuple[int, int]] = set()
        for job_id, attempt, to_state, reason, message in events:
            history.setdefault(job_id, []).append((attempt, to_state, reason, message[:200]))
            if to_state == "succeeded":
                succeeded_events[job_id] += 1
            if reason is not None:
                lost_attempts.add((job_id, attempt))
                report.lost_by_reason[reason] = report.lost_by_reason.get(reason, 0) + 1
                if reason not in {r.value for r in LostReason}:
                    report.problems.append(f"job {job_id}: a loss with no known reason {reason!r}")
        lines = read_ledger(self.ledger)
        ends: dict[int, list[dict[str, Any]]] = {}
        started: set[tuple[int, int, str]] = set()
        for line in lines:
            key = (line["job"], line["attempt"], line["nonce"])
            if line["phase"] == "start":
                started.add(key)
            else:
                ends.setdefault(line["job"], []).append(line)
                started.discard(key)
        report.interrupted = len(started)
        report.executions = sum(len(v) for v in ends.values())
        for job_id, job in jobs.items():
            if job.state != "succeeded":
                report.problems.append(f"job {job_id} is {job.state}, not succeeded")
                continue
            if succeeded_events[job_id] != 1:
                report.problems.append(
                    f"job {job_id}: {succeeded_events[job_id]} succeeded events, not 1"
                )
            report.failures += job.failures
            if job.failures:
                report.attempt_problems.append(
                    f"job {job_id}: {job.failures} attempt(s) spent; events "
                    f"{history.get(job_id)}; last error {str(job.error)[:300]!r}"
                )
            report.max_lost_of_a_job = max(report.max_lost_of_a_job, job.lost)
            nonce = (job.result or {}).get("nonce")
            mine = ends.get(job_id, [])
            winners = [e for e in mine if e["nonce"] == nonce and e["attempt"] == job.attempt]
            if len(winners) != 1:
                report.problems.append(
                    f"job {job_id}: {len(winners)} ledger lines of its committed outcome, not 1"
                )
                continue
            report.committed += 1
            for extra in mine:
                if extra is winners[0]:
                    continue
                if (job_id, extra["attempt"]) in lost_attempts:
                    report.fenced += 1
                elif extra["attempt"] == job.attempt:
                    report.rerun_uncommitted += 1
                else:
                    report.attempt_problems.append(
                        f"job {job_id}: attempt {extra['attempt']} ran to its end, was not "
                        f"committed and the store has no loss of it; committed attempt "
                        f"{job.attempt}, events {history.get(job_id)}"
                    )
        return report

    def run(self) -> ChaosReport:
        began = time.monotonic()
        report = None
        try:
            self.start()
            print(f"chaos run in {self.folder}: submitting {self.o.jobs} jobs", flush=True)
            self.submit()
            engine = sa.create_engine(self.pg.url, pool_pre_ping=True)
            try:
                self.run_faults(engine)
                self.calm()
                settled = self.settle(engine)
                report = self.check(engine, settled)
            finally:
                engine.dispose()
        finally:
            # a run with problems keeps its database (stopped) for a look at what happened
            self.stop(
                keep_database=self.o.keep_failed_database and (report is None or not report.ok)
            )
        if not report.ok and self.o.keep_failed_database:
            report.kept_database = str(self.pg.data)
        report.seconds = round(time.monotonic() - began, 1)
        return report


def planned_faults(seed: int, count: int, *, hosts: bool = False) -> list[str]:
    """The kinds of the first ``count`` faults a run with ``seed`` injects, in order."""
    rng = random.Random(f"faults-{seed}")
    plan = []
    for _ in range(count):
        rng.uniform(0, 1)  # the gap before it
        plan.append(rng.choice(faults_of(hosts)))
        rng.uniform(1.0, 4.0)  # its pause
    return plan


def print_report(report: ChaosReport) -> None:
    rows = [
        ("jobs", report.options["jobs"]),
        ("states", json.dumps(report.states)),
        ("faults injected", json.dumps(report.faults)),
        ("executions run to their end (ledger)", report.executions),
        ("committed outcomes (ledger = store)", report.committed),
        ("extra executions, fenced (attempt lost)", report.fenced),
        ("extra executions, same attempt re-run by Dask", report.rerun_uncommitted),
        ("executions interrupted (no end line)", report.interrupted),
        ("lost attempts by reason", json.dumps(report.lost_by_reason)),
        ("most losses of one job", report.max_lost_of_a_job),
        ("attempts spent by losses", report.failures),
        ("wall time, s", report.seconds),
        ("problems: lost or done twice", len(report.problems)),
        ("problems: not fenced, attempts spent", len(report.attempt_problems)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for p in [*report.problems, *report.attempt_problems][:20]:
        print(f"  problem: {p}")
    if report.kept_database:
        print(f"  its database is kept (stopped) in {report.kept_database}")
    print(json.dumps({"chaos": asdict(report)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--api-only", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-seconds", type=float, default=600.0)
    parser.add_argument("--max-faults", type=int, default=400)
    parser.add_argument("--settle-seconds", type=float, default=900.0)
    parser.add_argument("--folder", type=Path)
    parser.add_argument(
        "--hosts",
        action="store_true",
        help="workers on two other hosts (network namespaces; root), Dask over TLS, and "
        "cut-host faults",
    )
    a = parser.parse_args(argv)
    options = ChaosOptions(
        jobs=a.jobs, schedulers=a.schedulers, api_only=a.api_only, workers=a.workers,
        seed=a.seed, fault_seconds=a.fault_seconds, max_faults=a.max_faults,
        settle_seconds=a.settle_seconds, folder=a.folder, hosts=a.hosts,
    )  # fmt: skip
    report = ChaosRun(options).run()
    print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
