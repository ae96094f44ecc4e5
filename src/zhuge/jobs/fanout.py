"""Spread one job's work over the Dask cluster it runs on (``JobContext.map``).

A job holds one worker slot; a big job (a fleet forecast in chunks of series, a clustering
search over candidates) fans its parts out to the whole cluster from inside that slot:

- On a Dask worker the parts are submitted through ``distributed.worker_client``, which
  *secedes* the job's thread while it waits, so the job's own worker runs parts too and two
  jobs fanning out at once cannot deadlock. Parts run inside what admission booked for the
  job, so they count against its tenant's quota and fair share like the job itself: on the
  workers admission placed the attempt on (``ctx.workers``: one, or a gang's N) and no more
  of them at once than the CPU booked there (``ctx.cpus`` per worker, at least one part
  per worker). A job that wants its parts spread wider asks for it: ``--cpu 4`` on a wide
  worker, or ``--gang N`` for N workers. Parts carry a high Dask priority, so the parts of
  jobs already running go before attempts still waiting for a slot.
- Anywhere else (a test, a notebook, ``local_context``) parts run one after another in
  this process: the same results, no cluster needed.

Parts are whole chunks of work (thousands of series, one candidate fit), never one per VM:
each costs a Dask round trip of a few milliseconds. Each part's CPU time is measured where it
ran and added to the job's ``cpu_seconds``. Cancelling the job cancels the parts not yet run.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

if TYPE_CHECKING:
    from zhuge.jobs.context import JobContext

T = TypeVar("T")
R = TypeVar("R")

PART_PRIORITY = 1_000_000  # above any job priority: parts of running jobs go first
WAIT_SECONDS = 0.25  # how often a waiting job looks at its cancel flag

_calls = itertools.count()


def _process_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _timed_part(fn: Callable[[T], R], item: T) -> tuple[R, float, int]:
    """Run one part; return its result, the CPU seconds it took and the process it ran in."""
    start = _process_cpu()
    result = fn(item)
    return result, _process_cpu() - start, os.getpid()


def on_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return True


def pinned_to(workers: tuple[str, ...] | list[str] | None) -> dict[str, Any]:
    """Dask's placement arguments for work that must run on ``workers`` and nowhere else
    (empty: anywhere): an attempt admission placed, or the parts of its ``map``."""
    if not workers:
        return {}
    return {"workers": list(workers), "allow_other_workers": False}


def parts_at_once(ctx: JobContext) -> int:
    """How many of a job's parts may run at once: the CPU admission booked for it on each
    of its workers (at least one part each); unbounded for a job admission did not place."""
    if not ctx.workers:
        return sys.maxsize
    return max(1, math.floor(ctx.cpus + 1e-9)) * len(ctx.workers)


def fan_out(
    ctx: JobContext, fn: Callable[[T], R], items: Iterable[T], *, message: str = ""
) -> list[R]:
    """``[fn(item) for item in items]``, in order, spread over the cluster when there is one.

    ``fn`` must be picklable (a module-level function, or a ``functools.partial`` of one) and
    its results small enough to send back (write big outputs to ``ctx.artifacts`` instead).
    Progress is reported as parts finish. The first part to fail cancels the rest and its
    exception is raised here, unchanged, so ``InvalidRequest`` still marks bad input.
    """
    parts = list(items)
    total = len(parts)
    if total == 0:
        return []
    label = message or "parts"
    ctx.progress(0, total, f"0/{total} {label}")
    if not on_dask_worker():
        results = []
        for done, item in enumerate(parts, start=1):
            ctx.check_cancelled()
            results.append(fn(item))
            ctx.progress(done, total, f"{done}/{total} {label}")
        return results
    return _fan_out_dask(ctx, fn, parts, label)


def _fan_out_dask(ctx: JobContext, fn: Callable[[T], R], parts: list[T], label: str) -> list[R]:
    from distributed import wait, worker_client

    total = len(parts)
    call = next(_calls)
    keys = [
        f"zhuge-job-{ctx.job_id}-attempt-{ctx.attempt}-map-{os.getpid()}-{call}-part-{i}"
        for i in range(total)
    ]
    me = os.getpid()
    placed = pinned_to(ctx.workers)
    at_once = parts_at_once(ctx)
    with worker_client(separate_thread=True) as client:

        def submit(i: int) -> Any:
            return client.submit(
                _timed_part,
                fn,
                parts[i],
                key=keys[i],
                pure=False,
                priority=PART_PRIORITY,
                retries=1,  # a part lost with its worker runs again; the job keeps its lease
                **placed,
            )

        futures = [submit(i) for i in range(min(at_once, total))]
        pending = set(futures)
        try:
            while pending:
                ctx.check_cancelled()
                try:
                    finished, pending = wait(
                        pending, timeout=WAIT_SECONDS, return_when="FIRST_COMPLETED"
                    )
                except TimeoutError:  # nothing finished yet: look at the cancel flag again
                    continue
                for future in finished:
                    if future.status == "error":
                        future.result()  # raises the part's own exception
                    if len(futures) < total:  # a part's place is free: the next one takes it
                        futures.append(submit(len(futures)))
                        pending.add(futures[-1])
                done = len(futures) - len(pending)
                ctx.progress(done, total, f"{done}/{total} {label}")
            results: list[Any] = client.gather(futures)
        finally:
            # finished parts too: their results would otherwise stay in worker memory
            client.cancel(futures)
            left = total - (len(futures) - len(pending))
            if left and ctx.cancelled.is_set():
                ctx.log(f"cancelled with {left} of {total} parts unfinished: dropped")
    out = []
    for result, cpu, pid in results:
        if pid != me:  # the job's own process is already counted by the runner
            ctx.add_cpu_seconds(cpu)
        out.append(result)
    return out
