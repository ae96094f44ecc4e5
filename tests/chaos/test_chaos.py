"""The chaos run's short form (``make chaos`` runs the long one): a private PostgreSQL, two
scheduler/API processes and an API-only one, four Dask worker processes, two hundred
``chaos-ledger`` jobs, and seeded random faults (SIGKILL, SIGSTOP past the lease, a
PostgreSQL crash-restart). Where network namespaces can be made (root and iproute2, as in
CI) the workers run on two other hosts over TLS and the faults include a worker host's link
cut past the lease (``--hosts``); elsewhere they run beside the platform. The faults' kinds
and order follow the seed; what is asserted is the end state only (``driver.ChaosRun.check``),
never how long anything took."""

from __future__ import annotations

import pytest

from tests.chaos import hosts, postgres
from tests.chaos.driver import (
    CUT_HOST,
    ChaosOptions,
    ChaosReport,
    ChaosRun,
    faults_of,
    planned_faults,
    print_report,
)
from tests.conftest import skip_or_fail

HOSTS = hosts.available() is None  # workers on other hosts, and their links cut
SEED = 3 if HOSTS else 0  # either seed's first 10 faults are of every kind its form has
FAULTS = 10
JOBS = 200


def test_the_seed_plans_every_kind_of_fault():
    plan = planned_faults(SEED, FAULTS, hosts=HOSTS)
    assert set(plan) == set(faults_of(HOSTS)), plan
    assert plan == planned_faults(SEED, FAULTS, hosts=HOSTS)
    assert (CUT_HOST in plan) == HOSTS


@pytest.fixture(scope="module")
def chaos(tmp_path_factory) -> ChaosReport:
    if postgres.binaries() is None:
        skip_or_fail(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed",
            required_by="ZHUGE_REQUIRE_POSTGRES",
        )
    options = ChaosOptions(
        jobs=JOBS,
        seed=SEED,
        fault_seconds=90.0,
        max_faults=FAULTS,
        fault_gap=(1.0, 3.0),
        settle_seconds=240.0,
        folder=tmp_path_factory.mktemp("chaos"),
        hosts=HOSTS,
        keep_failed_database=False,  # the report shows each failing job's events
    )
    report = ChaosRun(options).run()
    print_report(report)
    return report


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_nothing_lost_nothing_done_twice_under_faults(chaos):
    assert chaos.problems == []
    assert chaos.states == {"succeeded": JOBS}  # none lost, none stuck
    assert chaos.committed == JOBS  # one committed outcome per job, in the ledger
    assert chaos.executions >= JOBS
    # the faults injected are the seed's, in its order (until the jobs ran out)
    injected = [f.split(" ")[0] for f in chaos.sequence]
    assert injected and injected == planned_faults(SEED, len(injected), hosts=HOSTS)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_every_extra_execution_is_fenced_and_no_attempt_is_spent(chaos):
    assert chaos.attempt_problems == []
    assert chaos.failures == 0
    assert chaos.executions == JOBS + chaos.fenced + chaos.rerun_uncommitted
