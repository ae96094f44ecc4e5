"""/readyz and ``zhuge status``: not ready, with the reason, while the database is unreachable
or refuses writes, no scheduler loop is alive, or jobs are queued and no worker is known;
``/healthz`` stays liveness. In process, on SQLite and PostgreSQL, time on a fake clock."""

from __future__ import annotations

import json
import threading

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import free_port
from tests.integration.platform.conftest import FakeClock
from zhuge.api.app import create_app
from zhuge.cli import app as cli_app
from zhuge.cli import jobs as cli_jobs
from zhuge.client import Client
from zhuge.config import Settings
from zhuge.jobs import liveness
from zhuge.jobs.model import Worker
from zhuge.jobs.store import JobStore, create_engine


def _api(store: JobStore, tmp_path, db_url: str) -> TestClient:
    return TestClient(create_app(Settings(home=tmp_path, db_url=db_url), store=store))


def _worker(address: str = "tcp://10.0.0.1:4000") -> Worker:
    return Worker(address=address, resources={"CPU": 1.0}, last_seen=0.0)


def _queue_one(store: JobStore) -> None:
    store.submit(tenant="default", kind="sleep", params={"seconds": 0})


def test_ready_only_with_a_live_scheduler_and_a_worker_for_queued_jobs(
    store, clock, db_url, tmp_path
):
    with _api(store, tmp_path, db_url) as http:
        # nothing beats yet: not ready, though the process is alive
        assert http.get("/healthz").status_code == 200
        r = http.get("/readyz")
        assert r.status_code == 503
        assert r.json()["ready"] is False
        assert any("no scheduler loop is alive" in s for s in r.json()["reasons"])

        liveness.beat(store, "sched-a", started_at=clock())
        r = http.get("/readyz")
        assert r.status_code == 200, r.json()
        assert [s["name"] for s in r.json()["schedulers"]] == ["sched-a"]
        assert r.json()["reasons"] == []

        # a queued job and no worker: it would wait for ever
        _queue_one(store)
        r = http.get("/readyz")
        assert r.status_code == 503
        assert r.json()["reasons"] == [
            "1 job(s) queued and no worker is known (none seen in the last 10 s)"
        ]
        store.record_workers("sched-a", [_worker()])
        r = http.get("/readyz")
        assert r.status_code == 200 and r.json()["workers"] == 1 and r.json()["queued"] == 1

        # the scheduler stops beating (killed): once its beats are stale, not ready
        clock.advance(liveness.SCHEDULER_LIVE_SECONDS + 1)
        store.record_workers("sched-a", [_worker()])  # workers still reported (by another)
        r = http.get("/readyz")
        assert r.status_code == 503
        assert any("no scheduler loop is alive" in s for s in r.json()["reasons"])
        # a second scheduler beats: ready again
        liveness.beat(store, "sched-b", started_at=clock())
        assert http.get("/readyz").status_code == 200
        # a clean stop removes its row at once
        liveness.forget(store, "sched-b")
        assert http.get("/readyz").status_code == 503


def test_the_readiness_probe_leaves_nothing_behind(store, clock, db_url, tmp_path):
    liveness.beat(store, "sched-a", started_at=clock())
    with _api(store, tmp_path, db_url) as http:
        for _ in range(3):
            assert http.get("/readyz").status_code == 200
    assert [s["name"] for s in liveness.live_schedulers(store)] == ["sched-a"]


def _unreachable_url(db_url: str, tmp_path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'zhuge.db'}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"


def test_an_unreachable_database_is_not_ready_and_healthz_fails(store, db_url, tmp_path):
    away = JobStore(create_engine(_unreachable_url(db_url, tmp_path)))
    try:
        with TestClient(
            create_app(Settings(home=tmp_path, db_url=db_url), store=away),
            raise_server_exceptions=False,
        ) as http:
            r = http.get("/readyz")
            assert r.status_code == 503
            (reason,) = r.json()["reasons"]
            assert reason.startswith("the database cannot be reached (")
            assert "no-such-folder" not in reason and "127.0.0.1" not in reason
            assert http.get("/healthz").status_code == 503
    finally:
        away.dispose()


def _read_only_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        return f"sqlite:///file:{path}?mode=ro&uri=true"
    # the session's URL ends with its search_path option: add a read-only session to it
    return db_url + "%20-cdefault_transaction_read_only%3Don"


def test_a_database_refusing_writes_is_not_ready_but_alive(store, clock, db_url, tmp_path):
    liveness.beat(store, "sched-a", started_at=clock())
    read_only = JobStore(create_engine(_read_only_url(db_url)), clock=clock)
    try:
        with _api(read_only, tmp_path, db_url) as http:
            assert http.get("/healthz").status_code == 200  # it reads: alive
            r = http.get("/readyz")
            assert r.status_code == 503
            (reason,) = r.json()["reasons"]
            assert reason.startswith("the database refuses writes (")
    finally:
        read_only.dispose()


class _Loop:
    """What SchedulerBeat reads of a Scheduler: its loop thread, stop flag and housekeeping."""

    def __init__(self, clock: FakeClock) -> None:
        self.name = "sched-loop"
        self.clock = clock
        self.stopping = threading.Event()
        self._last_housekeeping = clock()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._release.wait, daemon=True)
        self._thread.start()

    def die(self) -> None:
        self._release.set()
        self._thread.join()


def test_a_beat_is_written_only_while_the_loop_turns(store, clock):
    loop = _Loop(clock)
    beat = liveness.SchedulerBeat(store, loop)  # type: ignore[arg-type]
    try:
        assert beat.beat_once() is True
        assert [s["name"] for s in liveness.live_schedulers(store)] == ["sched-loop"]
        # housekeeping stuck past LOOP_STUCK_SECONDS: no beat, and the old one goes stale
        clock.advance(liveness.LOOP_STUCK_SECONDS + 1)
        assert beat.beat_once() is False
        assert liveness.live_schedulers(store) == []
        loop._last_housekeeping = clock()
        assert beat.beat_once() is True
        loop.die()
        clock.advance(liveness.SCHEDULER_LIVE_SECONDS + 1)
        assert beat.beat_once() is False
        assert liveness.live_schedulers(store) == []
    finally:
        loop.die()
        beat.stop()


def test_zhuge_status_shows_readiness(store, clock, db_url, tmp_path, monkeypatch):
    admin = store.issue_token("default", "admin", role="admin")
    with _api(store, tmp_path, db_url) as http:

        def connect(url=None, token=None):
            return Client("http://testserver", token or admin, transport=http._transport)

        monkeypatch.setattr(cli_jobs, "client", connect)
        runner = CliRunner()
        r = runner.invoke(cli_app, ["status"])
        assert r.exit_code == 0, r.output
        assert "not ready" in r.output and "no scheduler loop is alive" in r.output
        liveness.beat(store, "sched-a", started_at=clock())
        r = runner.invoke(cli_app, ["status", "--json"])
        assert r.exit_code == 0, r.output
        readiness = json.loads(r.output)["readiness"]
        assert readiness["ready"] is True and readiness["schedulers"][0]["name"] == "sched-a"
        r = runner.invoke(cli_app, ["status"])
        assert "ready" in r.output and "not ready" not in r.output and "sched-a" in r.output
