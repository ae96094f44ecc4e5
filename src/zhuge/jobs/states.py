"""Job states, the transitions between them, and retry backoff: pure data and functions.

    queued ──▶ running ──▶ succeeded
      ▲  │        │  └───▶ cancelled
      │  │        ├──────▶ failed ──▶ queued   (retries left, after a backoff)
      │  │        │            └────▶ dead     (retries exhausted; kept with its error)
      │  └──▶ cancelled
      └──────── running (lease lost or released) / dead (re-queued by hand)

``failed`` is the state of an attempt, recorded in the event history; the job row passes
through it inside one transaction and comes to rest in ``queued`` or ``dead``.
"""

from __future__ import annotations

import random
from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.QUEUED,  # lease expired, or released at shutdown
        }
    ),
    JobState.FAILED: frozenset({JobState.QUEUED, JobState.DEAD}),
    JobState.DEAD: frozenset({JobState.QUEUED}),  # re-queued by hand
    JobState.SUCCEEDED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

TERMINAL: frozenset[JobState] = frozenset({JobState.SUCCEEDED, JobState.CANCELLED, JobState.DEAD})
"""States a job does not leave by itself (``dead`` only by hand)."""


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
