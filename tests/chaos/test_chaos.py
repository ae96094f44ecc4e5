"""The chaos run's short form (``make chaos`` runs the long one): a private PostgreSQL, two
scheduler/API processes and an API-only one, four Dask worker processes, a couple of hundred
``chaos-ledger`` jobs, and seeded random faults (SIGKILL, SIGSTOP past the lease, a
PostgreSQL crash-restart). The faults' kinds and order follow the seed; what is asserted is
the end state only (``driver.ChaosRun.check``), never how long anything took."""

from __future__ import annotations

import pytest

from tests.chaos import postgres
from tests.chaos.driver import FAULTS as FAULTS_KINDS
from tests.chaos.driver import ChaosOptions, ChaosRun, planned_faults, print_report
from tests.conftest import skip_or_fail

SEED = 0  # its first 10 faults are of every kind
FAULTS = 10


def test_the_seed_plans_every_kind_of_fault():
    plan = planned_faults(SEED, FAULTS)
    assert set(plan) == set(FAULTS_KINDS), plan
    assert plan == planned_faults(SEED, FAULTS)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_nothing_lost_nothing_done_twice_under_faults(tmp_path):
    if postgres.binaries() is None:
        skip_or_fail(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed",
            required_by="ZHUGE_REQUIRE_POSTGRES",
        )
    options = ChaosOptions(
        jobs=200,
        seed=SEED,
        fault_seconds=90.0,
        max_faults=FAULTS,
        fault_gap=(1.0, 3.0),
        settle_seconds=240.0,
        folder=tmp_path / "chaos",
    )
    report = ChaosRun(options).run()
    print_report(report)
    assert report.problems == []
    assert report.states == {"succeeded": 200}
    assert report.committed == 200  # one committed outcome per job, in the ledger
    # every extra execution was fenced (its attempt lost) or never committed
    assert report.executions == 200 + report.fenced + report.rerun_uncommitted
    assert report.failures == 0  # losses spent no attempts
    # the faults injected are the seed's, in its order (until the jobs ran out)
    injected = [f.split(" ")[0] for f in report.sequence]
    assert injected and injected == planned_faults(SEED, len(injected))
