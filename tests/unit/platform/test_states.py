import random

import pytest

from zhuge.errors import InvalidTransition
from zhuge.jobs.states import (
    TERMINAL,
    TRANSITIONS,
    JobState,
    LostReason,
    after_failure,
    after_loss,
    backoff_seconds,
    can_transition,
    check_transition,
    sources_of,
)


def test_terminal_states_have_no_way_out_except_by_hand():
    assert TRANSITIONS[JobState.SUCCEEDED] == frozenset()
    # a dependent an upstream job's end cancelled waits again when that job is retried
    assert TRANSITIONS[JobState.CANCELLED] == frozenset({JobState.BLOCKED})
    assert TRANSITIONS[JobState.DEAD] == frozenset({JobState.QUEUED})
    assert TERMINAL == {JobState.SUCCEEDED, JobState.CANCELLED, JobState.DEAD}


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (JobState.QUEUED, JobState.SUCCEEDED),
        (JobState.QUEUED, JobState.DEAD),
        (JobState.SUCCEEDED, JobState.QUEUED),
        (JobState.CANCELLED, JobState.RUNNING),
        (JobState.DEAD, JobState.RUNNING),
    ],
)
def test_forbidden_transitions_raise(source, target):
    assert not can_transition(source, target)
    with pytest.raises(InvalidTransition, match=f"{source.value} job cannot become {target.value}"):
        check_transition(source, target)


def test_every_state_is_reachable_from_queued():
    seen, frontier = {JobState.QUEUED}, [JobState.QUEUED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(JobState)


def test_sources_of_running_is_only_queued():
    assert sources_of(JobState.RUNNING) == {JobState.QUEUED}
    assert sources_of(JobState.CANCELLED) == {JobState.BLOCKED, JobState.QUEUED, JobState.RUNNING}


def test_a_blocked_job_is_only_queued_or_cancelled():
    assert TRANSITIONS[JobState.BLOCKED] == {JobState.QUEUED, JobState.CANCELLED}
    assert sources_of(JobState.BLOCKED) == {JobState.CANCELLED}


def test_after_failure_goes_dead_exactly_when_attempts_are_used_up():
    assert after_failure(1, 3) is JobState.QUEUED
    assert after_failure(2, 3) is JobState.QUEUED
    assert after_failure(3, 3) is JobState.DEAD
    assert after_failure(1, 1) is JobState.DEAD


def test_after_loss_goes_dead_exactly_at_max_lost_and_only_involuntary_losses_count():
    assert after_loss(9, 10) is JobState.QUEUED
    assert after_loss(10, 10) is JobState.DEAD
    counted = {r for r in LostReason if r.involuntary}
    assert counted == {
        LostReason.LEASE_LOST,
        LostReason.WORKER_DIED,
        LostReason.HOST_UNREACHABLE,
        LostReason.GANG_NOT_READY,
    }


def test_backoff_grows_exponentially_with_jitter_inside_half_to_full_step():
    rng = random.Random(7)
    for failures in range(1, 8):
        step = 2.0 * 2 ** (failures - 1)
        draws = [backoff_seconds(failures, base=2.0, cap=1e9, rng=rng) for _ in range(200)]
        assert min(draws) >= step / 2
        assert max(draws) <= step
        assert max(draws) - min(draws) > step * 0.3  # jitter actually spreads retries


def test_backoff_is_capped_and_zero_before_any_failure():
    assert backoff_seconds(0) == 0.0
    assert backoff_seconds(50, base=1.0, cap=10.0, rng=random.Random(1)) <= 10.0
