"""The chaos run's short form (``make chaos`` runs the long one): a private PostgreSQL, two
scheduler/API processes and an API-only one, four Dask worker processes, two hundred
``chaos-ledger`` jobs, and seeded random faults (SIGKILL, SIGSTOP past the lease, a
PostgreSQL crash-restart). The faults' kinds and order follow the seed; what is asserted is
the end state only (``driver.ChaosRun.check``), never how long anything took."""

from __future__ import annotations

import pytest

from tests.chaos import postgres
from tests.chaos.driver import FAULTS as FAULT_KINDS
from tests.chaos.driver import ChaosOptions, ChaosReport, ChaosRun, planned_faults, print_report
from tests.conftest import skip_or_fail

SEED = 0  # its first 10 faults are of every kind
FAULTS = 10
JOBS = 200


def test_the_seed_plans_every_kind_of_fault():
    plan = planned_faults(SEED, FAULTS)
    assert set(plan) == set(FAULT_KINDS), plan
    assert plan == planned_faults(SEED, FAULTS)


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
    assert injected and injected == planned_faults(SEED, len(injected))


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_every_extra_execution_is_fenced_and_no_attempt_is_spent(chaos):
    assert chaos.attempt_problems == []
    assert chaos.failures == 0
    assert chaos.executions == JOBS + chaos.fenced + chaos.rerun_uncommitted
