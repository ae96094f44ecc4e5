"""``JobContext.map`` outside a Dask worker: in order, in process, with progress and cancel."""

from __future__ import annotations

import pytest

from zhuge.jobs.context import JobCancelled, local_context


def _square(x: int) -> int:
    return x * x


def test_map_runs_in_order_and_reports_progress(tmp_path):
    ctx = local_context(artifacts_url=str(tmp_path))
    assert ctx.map(_square, [3, 1, 2], message="squares") == [9, 1, 4]
    assert ctx.latest_progress == {"done": 3, "total": 3, "message": "3/3 squares"}
    assert ctx.extra_cpu_seconds == 0.0  # nothing ran in another process


def test_map_of_nothing_is_empty_and_reports_nothing(tmp_path):
    ctx = local_context(artifacts_url=str(tmp_path))
    assert ctx.map(_square, []) == []
    assert ctx.latest_progress == {}


def test_map_stops_at_the_next_part_once_cancelled(tmp_path):
    ctx = local_context(artifacts_url=str(tmp_path))
    seen = []

    def part(x: int) -> int:
        seen.append(x)
        if x == 1:
            ctx.cancelled.set()
        return x

    with pytest.raises(JobCancelled):
        ctx.map(part, [0, 1, 2, 3])
    assert seen == [0, 1]


def test_a_failing_part_raises_its_own_exception(tmp_path):
    ctx = local_context(artifacts_url=str(tmp_path))

    def part(x: int) -> int:
        raise KeyError(x)

    with pytest.raises(KeyError):
        ctx.map(part, [5])
