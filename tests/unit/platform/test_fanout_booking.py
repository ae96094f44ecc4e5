"""How many of a job's ``ctx.map`` parts run at once: what admission booked for it."""

from __future__ import annotations

import sys
import threading

from zhuge.artifacts import ArtifactDir
from zhuge.jobs.context import JobContext
from zhuge.jobs.fanout import parts_at_once


def _ctx(tmp_path, workers: tuple[str, ...], cpus: float) -> JobContext:
    root = ArtifactDir(tmp_path.as_uri())
    return JobContext(
        job_id=1,
        attempt=1,
        tenant="t",
        artifacts=root.child("jobs/1/attempt-1"),
        artifacts_root=root,
        cancelled=threading.Event(),
        workers=workers,
        cpus=cpus,
    )


def test_parts_at_once_is_the_cpu_booked_on_each_worker(tmp_path) -> None:
    assert parts_at_once(_ctx(tmp_path, ("w0",), 1.0)) == 1
    assert parts_at_once(_ctx(tmp_path, ("w0",), 4.0)) == 4
    assert parts_at_once(_ctx(tmp_path, ("w0",), 2.5)) == 2  # whole CPUs only
    assert parts_at_once(_ctx(tmp_path, ("w0", "w1", "w2"), 2.0)) == 6  # a gang of three


def test_a_fraction_of_a_cpu_still_runs_one_part_per_worker(tmp_path) -> None:
    assert parts_at_once(_ctx(tmp_path, ("w0",), 0.25)) == 1
    assert parts_at_once(_ctx(tmp_path, ("w0", "w1"), 0.0)) == 2


def test_a_job_admission_did_not_place_is_not_bounded(tmp_path) -> None:
    assert parts_at_once(_ctx(tmp_path, (), 1.0)) == sys.maxsize
