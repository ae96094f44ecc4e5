"""The autoscaler against a real store (SQLite and PostgreSQL) with a fake provider and a
clock the test moves: one lease holder acts, every decision is recorded, scale-down drains
idle workers and retires them, a drained worker takes nothing new while its running job
finishes, and ``zhuge pools apply`` refuses what the server does not configure. No Dask:
the census rows stand in for workers that joined."""

from __future__ import annotations

import pytest

from zhuge.errors import ConfigError, InvalidRequest
from zhuge.jobs.elastic import autoscaler, costs, pool_config
from zhuge.jobs.elastic.autoscaler import Autoscaler
from zhuge.jobs.elastic.providers import CommandProvider, ProviderConfig, parse_providers
from zhuge.jobs.model import Worker
from zhuge.jobs.states import JobState
from zhuge.jobs.store import WORKER_LIVE_SECONDS

BURST = {"CPU": 1.0, "burst": 1.0}
POOLS = """
pools:
  - name: burst
    resources: {CPU: 1, burst: 1}
    min: 0
    max: 2
    idle_timeout: 10s
    startup_s: 0
    cooldown: {up: 0s, down: 0s}
    stabilisation: {up: 0s, down: 0s}
    policy: demand
    provider: local
"""


class FakeProvider:
    """Workers that exist once asked for; the test reports them to the census itself."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.up: list[str] = []
        self.retired: list[str] = []
        self.made = 0

    def scale_to(self, n: int) -> None:
        while len(self.up) < n:
            self.up.append(f"tcp://{self.pool}-{self.made}")
            self.made += 1

    def workers(self) -> list[str]:
        return list(self.up)

    def retire(self, worker: str) -> None:
        self.up.remove(worker)
        self.retired.append(worker)


def scaler_with_fake(store, settings, name="sched-a") -> tuple[Autoscaler, FakeProvider]:
    scaler = Autoscaler(store, settings, name=name)
    fake = FakeProvider("burst")
    scaler.providers["burst"] = fake
    scaler.provider_of["burst"] = ("local", "local")
    return scaler, fake


def census(store, fake: FakeProvider) -> list[Worker]:
    workers = [Worker(a, dict(BURST), 0.0) for a in fake.up]
    store.record_workers("sched-a", workers)
    return workers


def run_all(store, workers) -> list:
    admitted = store.admit(owner="sched-a", workers=workers, lease_seconds=3600).started
    for job in admitted:
        store.start_attempt(job.id, job.attempt, worker=job.assigned_workers[0], lease_seconds=3600)
    return admitted


def test_a_pool_grows_from_zero_for_demand_and_drains_back_to_zero(store, clock, settings):
    pool_config.apply_pools(store, settings, POOLS, applied_by=None)
    scaler, fake = scaler_with_fake(store, settings)
    jobs = [store.submit(tenant="t", kind="sleep", params={}, resources=BURST)[0] for _ in range(3)]
    assert scaler.tick()
    assert len(fake.up) == 2  # three jobs of one worker each: the pool's max
    workers = census(store, fake)
    started = run_all(store, workers)
    assert len(started) == 2
    for job in started:
        store.complete(job.id, job.attempt, result={})
    started = run_all(store, workers)
    assert [j.id for j in started] == [jobs[2].id]
    store.complete(started[0].id, started[0].attempt, result={})
    # idle now: not retired before the idle timeout
    for _ in range(3):
        clock.advance(4)
        census(store, fake)
        scaler.tick()
    assert autoscaler.drained(store) == {}
    clock.advance(8)
    census(store, fake)
    scaler.tick()  # both idle for more than 10 s: drained
    assert set(autoscaler.drained(store)) == {"tcp://burst-0", "tcp://burst-1"}
    scaler.tick()  # idle and drained: retired
    assert fake.up == [] and sorted(fake.retired) == ["tcp://burst-0", "tcp://burst-1"]
    store.record_workers("sched-a", [])
    clock.advance(1)
    scaler.tick()  # gone from the census: the drains are over, the up-time closed
    assert autoscaler.drained(store) == {}
    assert all(u.ended_at is not None for u in costs.uptimes(store) if u.pool == "burst")
    log = autoscaler.decisions(store, pool="burst", changes=True)
    assert [(d["from_size"], d["to_size"]) for d in reversed(log)] == [(0, 2), (2, 0)]
    assert all(d["policy"] == "demand" and d["reason"] for d in log)
    # holds are recorded too, one per interval
    assert len(autoscaler.decisions(store, pool="burst", limit=100)) > len(log)


def test_one_scheduler_holds_the_lease_and_another_takes_over_when_it_stops_renewing(
    store, clock, settings
):
    pool_config.apply_pools(store, settings, POOLS, applied_by=None)
    first, _ = scaler_with_fake(store, settings, "sched-a")
    second, fake2 = scaler_with_fake(store, settings, "sched-b")
    store.submit(tenant="t", kind="sleep", params={}, resources=BURST)
    assert first.tick() and not second.tick()
    assert fake2.up == []  # the second decided nothing
    assert autoscaler.lease_holder(store) == "sched-a"
    clock.advance(autoscaler.LEASE_SECONDS + 1)  # the first stopped renewing
    assert second.tick() and not first.tick()
    assert autoscaler.lease_holder(store) == "sched-b"
    second.stop()
    assert autoscaler.lease_holder(store) is None


def test_a_draining_worker_takes_nothing_new_and_its_running_job_finishes(store, clock):
    w = [Worker("tcp://w", {"CPU": 2.0}, 0.0)]
    store.record_workers("sched", w)
    running, _ = store.submit(tenant="t", kind="sleep", params={}, resources={"CPU": 1.0})
    (job,) = store.admit(owner="sched", workers=w, lease_seconds=3600).started
    store.start_attempt(job.id, job.attempt, worker="tcp://w", lease_seconds=3600)
    queued = [store.submit(tenant="t", kind="sleep", params={}, resources={"CPU": 1.0})[0]
              for _ in range(2)]  # fmt: skip
    autoscaler.drain(store, "tcp://w", "local", "test")
    # a scheduler's turn places nothing there, nor does the worker's own chain
    assert store.admit(owner="sched", workers=w, lease_seconds=3600).started == []
    assert store.claim_next(owner="sched", worker="tcp://w", lease_seconds=3600,
                            resources={"CPU": 1.0}) is None  # fmt: skip
    # the running job is not touched: its heartbeat holds, and its result commits
    assert store.heartbeat(job.id, job.attempt, lease_seconds=3600)
    committed, nxt = store.complete_and_claim_next(
        job.id, job.attempt, result={}, owner="sched", worker="tcp://w", lease_seconds=3600,
        resources={"CPU": 1.0},
    )  # fmt: skip
    assert committed and nxt is None
    done = store.get(running.id)
    assert (done.state, done.attempt, done.lost, done.failures) == (JobState.SUCCEEDED, 1, 0, 0)
    assert [store.get(j.id).state for j in queued] == [JobState.QUEUED] * 2
    # and the queued jobs wait for capacity somewhere else: demand, not a claim
    assert sum(d.count for d in store.demand()) == 2
    autoscaler.forget_drain(store, ["tcp://w"])
    clock.advance(1)
    assert len(store.admit(owner="sched", workers=w, lease_seconds=3600).started) == 2


def test_demand_with_no_worker_up_asks_for_every_admissible_shape(store):
    store.submit(tenant="t", kind="sleep", params={}, resources=BURST)
    store.submit(tenant="t", kind="sleep", params={}, resources={"CPU": 1.0}, gang=2)
    shapes = {(tuple(sorted(d.resources.items())), d.gang): d.count for d in store.demand()}
    assert shapes == {((("CPU", 1.0), ("burst", 1.0)), 1): 1, ((("CPU", 1.0),), 2): 1}
    assert store.clock() - WORKER_LIVE_SECONDS < store.clock()  # nothing was recorded


def test_demand_with_no_worker_up_keeps_quotas(store):
    """An empty pool grows only for jobs that could run on it: a tenant at its borrowing
    limit asks for nothing more (else the pool would grow, idle and shrink for ever)."""
    store.queues.apply("tenants: {t: {nominal: {CPU: 0}, borrowing_limit: {CPU: 2}}, u: {}}")
    for _ in range(4):
        store.submit(tenant="t", kind="sleep", params={}, resources={"CPU": 1.0})
    store.submit(tenant="u", kind="sleep", params={}, resources={"CPU": 1.0})
    counts = {(tuple(sorted(d.resources.items())), d.gang): d.count for d in store.demand()}
    assert counts == {((("CPU", 1.0),), 1): 3}  # t's two within its limit, and u's one


def test_pools_apply_refuses_what_the_server_does_not_configure(api, tmp_path):
    store = api.store
    unknown = POOLS.replace("provider: local", "provider: k8s")
    r = api.call("PUT", "/v1/pools", content=unknown, headers={"content-type": "text/yaml"})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "pools.0.provider: 'k8s' is not a provider configured on this server" in message
    with_providers = "providers: {x: {type: command, add: [sh], remove: [sh]}}\n" + POOLS
    r = api.call("PUT", "/v1/pools", content=with_providers)
    assert r.status_code == 422 and "server's own pools file only" in r.json()["error"]["message"]
    typo = POOLS.replace("idle_timeout", "idle_timout")
    r = api.call("PUT", "/v1/pools", content=typo)
    assert r.status_code == 422 and "pools.0.idle_timout" in r.json()["error"]["message"]
    assert pool_config.applied_pools(store) is None  # nothing changed, each time
    applied = api.sdk().apply_pools(POOLS)
    assert [p["spec"]["name"] for p in applied["pools"]] == ["burst"]
    assert applied["source"] == "applied" and applied["providers"] == {"local": "local"}
    again = api.call("PUT", "/v1/pools", content=unknown)
    assert again.status_code == 422
    assert pool_config.applied_pools(store).config.pools[0].provider == "local"  # kept


def test_a_job_for_a_pool_at_zero_is_accepted_at_submit(api, settings):
    api.store.record_workers("s", [Worker("tcp://w", {"CPU": 1.0}, 0.0)])
    r = api.call("POST", "/v1/jobs", json={"kind": "sleep", "resources": {"burst": 1}})
    assert r.status_code == 422  # no worker and no pool offers it
    assert "no worker offers burst" in r.json()["error"]["message"]
    api.sdk().apply_pools(POOLS)
    r = api.call("POST", "/v1/jobs", json={"kind": "sleep", "resources": {"CPU": 1, "burst": 1}})
    assert r.status_code == 201, r.text


def test_the_server_file_configures_providers(tmp_path, settings):
    import dataclasses

    path = tmp_path / "pools.yaml"
    path.write_text(
        "providers:\n"
        "  vms: {type: command, add: [add-vm], remove: [rm-vm], env: {ZONE: a}}\n"
        "  k8s: {type: dask-cluster, cluster: 'dask_kubernetes.operator:KubeCluster'}\n"
        + POOLS.replace("provider: local", "provider: vms")
    )
    server = pool_config.server_pools(dataclasses.replace(settings, pools_file=path))
    assert {n: p.type for n, p in server.providers.items()} == {
        "local": "local", "vms": "command", "k8s": "dask-cluster",
    }  # fmt: skip
    assert server.pools.pools[0].provider == "vms"
    path.write_text("providers: {x: {type: ssh}}\n")
    with pytest.raises(ConfigError, match=r"providers\.x\.type: one of local"):
        pool_config.server_pools(dataclasses.replace(settings, pools_file=path))
    path.write_text(POOLS.replace("provider: local", "provider: nowhere"))
    with pytest.raises(ConfigError, match="'nowhere' is not a provider configured"):
        pool_config.server_pools(dataclasses.replace(settings, pools_file=path))
    with pytest.raises(ConfigError, match=r"providers\.c\.add: a command as a list"):
        parse_providers({"c": {"type": "command", "add": "rm -rf /", "remove": ["x"]}})
    assert ProviderConfig.parse("l", {"type": "local"}).type == "local"


def test_the_command_provider_runs_its_commands_with_the_worker_named(tmp_path):
    ran: list[tuple[list[str], dict[str, str]]] = []
    joined: dict[str, dict] = {}
    provider = CommandProvider(
        "vm",
        {"CPU": 4.0, "memory_gb": 16.0},
        add=["add-vm", "--size", "large"],
        remove=["rm-vm"],
        scheduler_info=lambda: {"workers": joined},
        dask_address="tls://sched:8786",
        runner=lambda argv, env: ran.append((list(argv), dict(env))),
    )
    provider.scale_to(2)
    assert [env["ZHUGE_WORKER_NAME"] for _, env in ran] == ["vm-0", "vm-1"]
    assert ran[0][0] == ["add-vm", "--size", "large"]
    assert ran[0][1]["ZHUGE_WORKER_RESOURCES"] == "CPU=4 memory_gb=16"
    assert ran[0][1]["ZHUGE_DASK_ADDRESS"] == "tls://sched:8786"
    provider.scale_to(2)  # asked for already, not joined yet: nothing more is started
    assert len(ran) == 2 and provider.requested() == 2
    joined.update({"tls://a:1": {"name": "vm-0"}, "tls://b:1": {"name": "vm-1"},
                   "tls://c:1": {"name": "static-host"}})  # fmt: skip
    assert provider.workers() == ["tls://a:1", "tls://b:1"]
    provider.retire("tls://b:1")
    assert ran[-1][0] == ["rm-vm"]
    assert (ran[-1][1]["ZHUGE_WORKER_NAME"], ran[-1][1]["ZHUGE_WORKER_ADDRESS"]) == (
        "vm-1", "tls://b:1",
    )  # fmt: skip


def test_a_pools_document_must_parse(store, settings):
    with pytest.raises(InvalidRequest, match="not valid YAML"):
        pool_config.apply_pools(store, settings, "pools: [", applied_by=None)
    with pytest.raises(InvalidRequest, match="min"):
        pool_config.apply_pools(store, settings, POOLS.replace("min: 0", "min: 5"), applied_by=None)
    assert pool_config.applied_pools(store) is None


def test_the_predictive_policy_is_fed_the_work_that_arrived_per_interval(store, clock, settings):
    from zhuge.jobs.elastic.pools import PoolsConfig

    config = PoolsConfig.parse(
        POOLS.replace("policy: demand", "policy: {name: predictive, interval: 60, max_history: 5}")
        + "  - {name: big, resources: {CPU: 4}, max: 1, provider: local}\n"
    )
    burst, big = config.pool("burst"), config.pool("big")
    base = clock.now = 600.0 * 10_000  # a whole number of intervals
    finished, _ = store.submit(tenant="t", kind="sleep", params={}, resources=BURST)
    (a,) = store.claim(limit=1, owner="s", lease_seconds=3600)
    store.start_attempt(finished.id, a.attempt, worker="tcp://w", lease_seconds=3600)
    clock.advance(30)
    store.complete(finished.id, a.attempt, result={})  # ran 30 s
    clock.advance(40)  # the next interval: one queued job (counted at the mean, 30 s) and
    store.submit(tenant="t", kind="sleep", params={}, resources=BURST)  # one for pool big
    store.submit(tenant="t", kind="sleep", params={}, resources={"CPU": 4.0})
    clock.advance(60)  # now base+130: two whole intervals have ended
    samples = autoscaler.arrival_samples(store, config, burst, burst.policy, clock.now)
    assert [(s.at - base, s.jobs, s.work_s) for s in samples] == [(60, 1, 30.0), (120, 1, 30.0)]
    big_samples = autoscaler.arrival_samples(store, config, big, burst.policy, clock.now)
    assert [(s.at - base, s.jobs) for s in big_samples] == [(120, 1)]


def test_a_broken_server_file_is_not_shown_to_token_holders(store, settings, tmp_path):
    import dataclasses

    from fastapi.testclient import TestClient

    from zhuge.api.app import create_app

    path = tmp_path / "secret-pools.yaml"
    path.write_text("providers: {x: {type: ssh}}\n")
    admin = store.issue_token("default", "admin", role="admin")
    app = create_app(dataclasses.replace(settings, pools_file=path), store=store)
    with TestClient(app, raise_server_exceptions=False) as http:
        for method, url in (("GET", "/v1/pools"), ("PUT", "/v1/pools"), ("GET", "/v1/costs")):
            r = http.request(method, url, headers={"Authorization": f"Bearer {admin}"},
                             content=POOLS)  # fmt: skip
            assert r.status_code == 500, (url, r.text)
            assert "secret-pools" not in r.text and "ssh" not in r.text
            assert "pools configuration is not valid" in r.json()["error"]["message"]


def test_jobs_queued_for_a_pool_at_zero_leave_the_deployment_ready(store, clock, settings):
    from zhuge.jobs import liveness

    liveness.beat(store, "sched-a", started_at=clock())
    store.submit(tenant="t", kind="sleep", params={}, resources=BURST)
    assert liveness.readiness(store).reasons == [
        "1 job(s) queued and no worker is known (none seen in the last 10 s)"
    ]
    pool_config.apply_pools(store, settings, POOLS, applied_by=None)
    assert not liveness.readiness(store).ready  # no autoscaler holds its lease: none grows it
    scaler, _ = scaler_with_fake(store, settings)
    scaler.tick()
    assert liveness.readiness(store).ready  # the pool grows for it
    scaler.stop()
    assert not liveness.readiness(store).ready
