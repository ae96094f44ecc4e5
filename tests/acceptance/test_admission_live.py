"""Admission live: two `zhuge up` processes on one PostgreSQL database, so two schedulers
(each with its own two-worker Dask cluster, four CPU slots in all) admit from one queue under
the admission lock.

- Weighted fair share: three tenants of weights 1:1:2 saturate the cluster with short jobs;
  the CPU-seconds each was allocated while all three still had queued work are within 10 %
  relative of 1:1:2.
- Reclaim: tenant ``alpha``, whose nominal quota is the whole cluster, is idle while ``beta``
  (same cohort) borrows all of it; when alpha submits, one of beta's attempts is asked to
  yield, is lost (``preempted``), and alpha's job then runs where it ran. Checked by the
  order of the events in the store, never by timing.

Nothing is raced: the fair-share run starts when the test opens the gate of jobs holding
every slot (all three tenants' jobs queued behind it), and beta's borrowed jobs are deaf to
the request to yield until the test opens their gate (``admission_kinds``), so alpha's job is
still waiting, for the reclaim, when ``zhuge jobs why`` is asked. Waits are for states, with
timeouts that only bound a hang.

Sized for the issue's 90 s of work: five 4 s rounds of fair share and one reclaim; the rest is
two servers starting and their fresh workers importing the kinds. (On the shared 2-core
development machine at load average 10-15 the module took 100-125 s.)
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import pytest
import sqlalchemy as sa

from tests.acceptance import test_up
from tests.acceptance.admission_kinds import HOLD, MODULE, UP_WITH_KINDS
from tests.acceptance.test_up import Server
from tests.conftest import wait_for
from tests.integration.platform.gate import GATE, Gate
from zhuge.client import Client
from zhuge.jobs import schema
from zhuge.jobs.model import Job
from zhuge.jobs.states import JobState
from zhuge.jobs.store import JobStore
from zhuge.platform import ADMIN_TENANT

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

WORKERS_PER_SERVER = 2  # test_up's Server starts `zhuge up --workers 2`: CPU=1 each
SLOTS = 2 * WORKERS_PER_SERVER

# the fair-share run: sleep jobs long against the schedulers' turnaround, few per slot
JOB_SECONDS = 4.0
WEIGHTS = {"ada": 1, "bob": 1, "cyd": 2}
JOBS_PER_WEIGHT = 5  # ada and bob 5 jobs each, cyd 10: five rounds of each tenant's share
FAIR_SHARE_TOLERANCE = 0.10  # relative, as the issue states it

FAIR_QUEUES = """\
resources: [CPU]
tenants:
  ada: {weight: 1}
  bob: {weight: 1}
  cyd: {weight: 2}
fair_share: {half_life: 1h}
"""
RECLAIM_QUEUES = f"""\
resources: [CPU]
cohorts:
  research: {{tenants: [alpha, beta]}}
tenants:
  alpha: {{nominal: {{CPU: {SLOTS}}}}}
  beta: {{}}
preemption: {{reclaim_within_cohort: any, grace: 10m}}
"""
# grace 10m: far longer than this test, so beta's attempt is lost because it stopped when
# asked (at its next heartbeat once its gate is open), not because the scheduler gave up on it


class AdmissionServer(Server):
    """test_up's `zhuge up` subprocess, on a shared PostgreSQL database, 30 s leases, with
    ``admission_kinds`` registered in the server and preloaded in its Dask workers."""

    def __init__(self, home: Path, db_url: str) -> None:
        home.mkdir(parents=True)
        super().__init__(home)
        self.env.update(
            {
                "ZHUGE_DB_URL": db_url,
                "ZHUGE_LEASE_SECONDS": "30",
                "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([MODULE]),
            }
        )

    def admin(self) -> Client:
        return Client(self.url, (self.home / "token").read_text().strip(), timeout=60)


@pytest.fixture(scope="module")
def database(postgres_url):
    """A PostgreSQL database of this module's own, the store created in it. (A database, not
    a schema: the admission lock is an advisory lock, which is per database, and other test
    sessions' servers on the same PostgreSQL need not queue behind these two.)"""
    base = sa.make_url(postgres_url).set(query={})
    name = f"zt_admission_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = base.set(database=name).render_as_string(hide_password=False)
    # Created once before two servers start on it at once: the schema, and the platform's
    # tenant, which each `zhuge up` otherwise creates by looking then inserting (two at once
    # on a fresh database: one exits with UniqueViolation on tenants_pkey, a platform bug)
    store = JobStore.open(url)
    store.tenancy.ensure_tenant(ADMIN_TENANT)
    store.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(scope="module")
def servers(database, tmp_path_factory):
    """Two `zhuge up` on the one database: two schedulers, four worker slots between them."""
    tmp = tmp_path_factory.mktemp("admission")
    pair = [AdmissionServer(tmp / f"home-{i}", database) for i in (1, 2)]
    try:
        # Server.start runs test_up's ZHUGE_UP_WITH_GATES: this module's kinds' command
        # instead, patched once around both starts (a patch per thread would undo the other's)
        with (
            mock.patch.object(test_up, "ZHUGE_UP_WITH_GATES", UP_WITH_KINDS),
            ThreadPoolExecutor(len(pair)) as pool,
        ):
            for started in [pool.submit(s.start) for s in pair]:
                started.result()
        with pair[0].admin() as admin:
            wait_for(
                lambda: admin.status()["workers"],
                until=lambda workers: len(workers) == SLOTS,
                what=f"both servers' {SLOTS} workers to be recorded",
                interval=0.5,
            )
        yield pair
    finally:
        for s in pair:
            if s.proc is not None and s.proc.poll() is None:
                s.kill_all()


@pytest.fixture(scope="module")
def store(database):
    s = JobStore.open(database)
    yield s
    s.dispose()


@pytest.fixture
def tenant_clients():
    """``tenant_clients(server, names)``: a new tenant for each name, and a member's client
    of each; after the test, each cancels what its tenant left queued or running, and is
    closed."""
    opened: list[Client] = []

    def create(server: AdmissionServer, names) -> dict[str, Client]:
        clients = {}
        with server.admin() as admin:
            for name in names:
                admin.create_tenant(name)
                token = admin.create_token(name, name=f"{name}-live-admission")["token"]
                clients[name] = Client(server.url, token, timeout=60)
                opened.append(clients[name])
        return clients

    yield create
    for client in opened:
        with client:
            for state in ("queued", "running"):
                for job in client.list(state=state, limit=1000):
                    client.cancel(job.id)


def apply_queues(server: AdmissionServer, tmp_path: Path, document: str) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(document)
    server.cli("queues", "apply", str(path))  # as the admin, through the CLI


def events_in_order(store: JobStore, job_ids=None) -> list[dict]:
    """The jobs' events (None: every job's) in the order the store wrote them: one sequence
    for every job."""
    E = schema.job_events
    query = sa.select(E).order_by(E.c.id)
    if job_ids is not None:
        query = query.where(E.c.job_id.in_(list(job_ids)))
    with store.engine.connect() as conn:
        return [r._asdict() for r in conn.execute(query)]


def in_its_code(store: JobStore, job_id: int) -> bool:
    """Running, and its attempt's code has begun: the line the test kinds log first is
    stored. (From then on the heartbeat renews the attempt's lease; before it, a fresh worker
    may still be importing every kind's module.)"""
    job = store.get(job_id)
    return job.state is JobState.RUNNING and any(
        line.attempt == job.attempt for line in store.logs(job_id)
    )


def allocated(jobs: list[Job], start: float, end: float) -> float:
    """CPU-seconds these jobs held within [start, end]."""
    total = 0.0
    for j in jobs:
        held = min(j.finished_at, end) - max(j.started_at, start)
        total += j.resources.get("CPU", 0.0) * max(0.0, held)
    return total


# -- weighted fair share -----------------------------------------------------------------------


def test_three_tenants_weighted_1_1_2_share_a_saturated_cluster_by_weight(
    servers, store, tenant_clients, tmp_path
):
    first, second = servers
    apply_queues(first, tmp_path, FAIR_QUEUES)
    clients = tenant_clients(second, WEIGHTS)

    # every slot held (by the admin's tenant) while the three tenants queue all their work
    gate = Gate(tmp_path / "fair-share-start")
    with first.admin() as admin:
        holders = [j.id for j in admin.submit_many([{"kind": GATE, "params": gate.params}] * SLOTS)]
    wait_for(
        lambda: [i for i in holders if in_its_code(store, i)],
        until=lambda holding: len(holding) == SLOTS,
        what=f"{SLOTS} gate jobs to hold every slot",
        interval=0.2,
    )
    ids: dict[str, list[int]] = {}
    for tenant, weight in WEIGHTS.items():
        batch = [{"kind": "sleep", "params": {"seconds": JOB_SECONDS}}] * (weight * JOBS_PER_WEIGHT)
        ids[tenant] = [j.id for j in clients[tenant].submit_many(batch)]
    every = [i for tenant_ids in ids.values() for i in tenant_ids]
    assert all(store.get(i).state is JobState.QUEUED for i in every)  # every slot is held
    gate.open()

    wait_for(
        lambda: [store.get(i).state for i in every],
        until=lambda states: all(s is JobState.SUCCEEDED for s in states),
        what=f"all {len(every)} jobs to succeed",
        timeout=400,
        interval=0.5,
    )
    jobs = {t: [store.get(i) for i in tenant_ids] for t, tenant_ids in ids.items()}
    # saturated from when the last gate job ended until the first tenant's queue ran dry
    start = max(store.get(i).finished_at for i in holders)
    end = min(max(j.started_at for j in tenant_jobs) for tenant_jobs in jobs.values())
    assert end > start
    cpu_seconds = {t: allocated(tenant_jobs, start, end) for t, tenant_jobs in jobs.items()}
    total, weights = sum(cpu_seconds.values()), sum(WEIGHTS.values())
    off = {t: cpu_seconds[t] / total / (WEIGHTS[t] / weights) - 1 for t in WEIGHTS}
    report = (
        f"over {end - start:.1f}s of {SLOTS} slots: "
        + ", ".join(f"{t} {cpu_seconds[t]:.1f} CPU-s ({off[t]:+.1%})" for t in WEIGHTS)
        + f"; {total / (SLOTS * (end - start)):.0%} of the slots allocated"
    )
    print(report)
    assert all(abs(x) <= FAIR_SHARE_TOLERANCE for x in off.values()), report


# -- reclaim preempts borrowed work ------------------------------------------------------------


def test_a_reclaim_preempts_borrowed_work_and_the_owner_runs_in_its_place(
    servers, store, tenant_clients, tmp_path
):
    first, second = servers
    apply_queues(second, tmp_path, RECLAIM_QUEUES)
    clients = tenant_clients(first, ["alpha", "beta"])
    alpha, beta = clients["alpha"], clients["beta"]

    # beta borrows all of alpha's idle nominal: one job per slot, and one more that waits
    gate = Gate(tmp_path / "beta-may-yield")
    borrowed = [beta.submit(HOLD, gate.params).id for _ in range(SLOTS + 1)]
    wait_for(
        lambda: [i for i in borrowed if in_its_code(store, i)],
        until=lambda holding: len(holding) == SLOTS,
        what=f"{SLOTS} of beta's jobs to run on the workers",
        interval=0.2,
    )
    waiting_beta = [i for i in borrowed if store.get(i).state is JobState.QUEUED]
    assert len(waiting_beta) == 1  # four slots, four running: by construction

    # alpha asks for what it is owed: admission asks one borrowed attempt to yield
    owner = alpha.submit("sleep", {"seconds": 0.5}).id
    first_asked = wait_for(
        lambda: [
            e for e in events_in_order(store, borrowed) if e["message"].startswith("asked to yield")
        ],
        what="a borrowed attempt to be asked to yield",
        interval=0.2,
    )
    victim = first_asked[0]["job_id"]
    before = store.get(victim)  # still running: it cannot stop before its gate opens
    # beta cannot yield before its gate opens: alpha's job waits, for the reclaim
    why = wait_for(
        lambda: alpha.why(owner),  # GET /v1/jobs/{id}/why, as alpha's member
        until=lambda w: "preempt" in (w.get("pending_reason") or ""),
        what=f"job {owner}'s reason to name the preemption",
        interval=0.2,
    )
    assert why["state"] == "queued" and why["tenant"] == "alpha", why
    said = second.cli("jobs", "why", str(owner)).stdout
    assert f"job {owner} is 1st in alpha's queue" in said and "preempt" in said, said

    gate.open()
    done = first.wait_job(owner, lambda j: j["state"] == "succeeded", "to run and succeed")

    # one CPU owed, one borrowed attempt asked to yield, and no other
    asked = [e for e in events_in_order(store, borrowed) if e["message"].startswith("asked")]
    assert [e["job_id"] for e in asked] == [victim], asked
    order = events_in_order(store, [victim, owner])
    described = [(e["job_id"], e["attempt"], e["from_state"], e["to_state"]) for e in order]

    def index_of(condition) -> int:
        return next(n for n, e in enumerate(order) if condition(e))

    yield_at = index_of(lambda e: e["message"].startswith("asked to yield"))
    lost_at = index_of(
        lambda e: (e["job_id"], e["attempt"], e["to_state"]) == (victim, before.attempt, "lost")
    )
    runs_at = index_of(lambda e: e["job_id"] == owner and e["to_state"] == "running")
    assert yield_at < lost_at < runs_at, described  # asked, then lost, then alpha's runs
    asked_event, lost_event = order[yield_at], order[lost_at]
    assert asked_event["attempt"] == before.attempt, asked_event
    assert (asked_event["from_state"], asked_event["to_state"]) == ("running", "running")
    assert asked_event["reason"] == "preempted", asked_event
    assert f"job {owner} of alpha" in asked_event["message"], asked_event
    assert lost_event["reason"] == "preempted", lost_event
    assert "asked it to yield" in lost_event["message"], lost_event  # it stopped when asked

    # lost, not failed, and not counted against its max_lost: back in the queue (or running
    # again, once alpha's short job ended)
    after = store.get(victim)
    assert (after.failures, after.lost) == (before.failures, before.lost), after
    assert after.state in (JobState.QUEUED, JobState.RUNNING), after
    # alpha ran on the worker beta's attempt left
    assert store.get(owner).assigned_workers == before.assigned_workers, (before, done)


# -- nothing else was lost ---------------------------------------------------------------------


def test_zz_no_attempt_was_lost_but_the_preempted_one(servers, store):
    """Nothing was killed in this module: the only attempt lost is the one admission asked
    to yield. (Runs after the tests above, on what they left in the database.)"""
    lost = [e for e in events_in_order(store) if e["to_state"] == "lost"]
    assert [e["reason"] for e in lost] in ([], ["preempted"]), lost
