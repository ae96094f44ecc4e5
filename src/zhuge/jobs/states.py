"""Job states, the transitions between them, and retry backoff: pure data and functions.

    blocked ──▶ queued ──▶ running ──▶ succeeded
     ▲  │         ▲  │        │  └───▶ cancelled
     │  │         │  │        ├──────▶ failed ──▶ queued   (retries left, after a backoff)
     │  │         │  │        │            └────▶ dead     (retries exhausted; kept with its error)
     │  │         │  │        ├──────▶ lost ────▶ queued   (the infrastructure lost the attempt)
     │  │         │  │        │            └────▶ dead     (lost max_lost times)
     │  │         │  └──▶ cancelled
     │  │         └──────── running (interrupted: preempted, drained) / dead (re-queued by hand)
     │  └──▶ cancelled      (an upstream job ended dead or cancelled, or cancelled by hand)
     └─────── cancelled     (the upstream job that cancelled it was retried by hand)

``blocked`` is where a job submitted ``after`` other jobs waits until every one of them has
succeeded (``zhuge.jobs.dependencies``); it is not queued: no claim, queue depth, fair share or
demand counts it. The last upstream's success queues it in the same transaction.

``failed`` and ``lost`` are states of an attempt, recorded in the event history; the job row
passes through them inside one transaction and comes to rest in ``queued`` or ``dead``.

**One rule for lost attempts.** An attempt *fails* when its code raised: that spends one of
the job's ``max_attempts`` (bad input spends them all at once: retrying cannot help). An
attempt is *lost* when the infrastructure lost it (``LostReason``): its worker died or went
silent, its host became unreachable, or the platform took it back (preemption, draining).
A lost attempt never spends ``max_attempts``. Involuntary losses (the worker's, the host's,
the lease's) are counted in ``lost`` and end the job as ``dead`` at ``max_lost``: a job that
keeps killing its worker (running it out of memory, say) must stop somewhere. Interruptions
the platform chose (``preempted``, ``drained``) are recorded with their reason and counted
against nothing: the job did nothing wrong.
"""

from __future__ import annotations

import random
from enum import StrEnum


class JobState(StrEnum):
    BLOCKED = "blocked"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    CANCELLED = "cancelled"
    DEAD = "dead"


class LostReason(StrEnum):
    """Why the infrastructure lost an attempt (recorded on its events)."""

    LEASE_LOST = "lease_lost"  # no heartbeat within the lease: worker killed, paused, cut off
    WORKER_DIED = "worker_died"  # Dask saw the worker process die
    HOST_UNREACHABLE = "host_unreachable"  # the worker's host dropped off the network
    PREEMPTED = "preempted"  # admission took the resources back for other work
    DRAINED = "drained"  # the worker or its scheduler was shut down cleanly
    GANG_NOT_READY = "gang_not_ready"  # a gang's booked workers did not start it in time

    @property
    def involuntary(self) -> bool:
        """Counted against ``max_lost``: the platform did not choose this loss."""
        return self not in (LostReason.PREEMPTED, LostReason.DRAINED)


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.BLOCKED: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.LOST,
            JobState.CANCELLED,
            JobState.QUEUED,  # interrupted: preempted, or released at shutdown
        }
    ),
    JobState.FAILED: frozenset({JobState.QUEUED, JobState.DEAD}),
    JobState.LOST: frozenset({JobState.QUEUED, JobState.DEAD}),
    JobState.DEAD: frozenset({JobState.QUEUED}),  # re-queued by hand
    JobState.SUCCEEDED: frozenset(),
    # back to waiting when the upstream job whose end cancelled it is retried by hand
    JobState.CANCELLED: frozenset({JobState.BLOCKED}),
}

TERMINAL: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.CANCELLED, JobState.DEAD})
"""States a job does not leave by itself (``dead`` only by hand, ``cancelled`` only when the
upstream job that cancelled it is retried)."""


ATTEMPT_STATES: frozenset[JobState] = frozenset({JobState.FAILED, JobState.LOST})
"""States of an attempt's end: a job passes through them but never rests in them."""


def can_transition(source: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[source]


def check_transition(source: JobState, target: JobState) -> None:
    from zhuge.errors import InvalidTransition

    if not can_transition(source, target):
        raise InvalidTransition(f"a {source.value} job cannot become {target.value}")


def sources_of(target: JobState) -> frozenset[JobState]:
    """The states from which ``target`` may be reached (for guarded SQL updates)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def after_failure(failures: int, max_attempts: int) -> JobState:
    """Where a job goes after its ``failures``-th failed attempt."""
    return JobState.DEAD if failures >= max_attempts else JobState.QUEUED


def after_loss(lost: int, max_lost: int) -> JobState:
    """Where a job goes after its ``lost``-th involuntarily lost attempt."""
    return JobState.DEAD if lost >= max_lost else JobState.QUEUED


def backoff_seconds(
    failures: int,
    *,
    base: float = 2.0,
    cap: float = 600.0,
    rng: random.Random | None = None,
) -> float:
    """Delay before the next attempt: exponential in ``failures`` with "equal jitter".

    Half of the exponential step is kept, the other half drawn uniformly, so retries of
    jobs that failed together spread out but never come back sooner than half the step.
    """
    if failures < 1:
        return 0.0
    step = min(cap, base * 2.0 ** (failures - 1))
    draw = (rng or random).random()
    return step / 2.0 + draw * step / 2.0
