"""A search's progress counts every round: "6/6" of round 2 says how many came before it,
so it is not read as the whole search whose table lists all the rounds' candidates (#18)."""

from __future__ import annotations

from zhuge.jobs.cluster.kinds import RungMap


class RecordingContext:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def map(self, fn, items, *, message=""):
        self.messages.append(message)
        return [fn(x) for x in items]


def test_each_round_says_its_number_and_the_candidates_before_it() -> None:
    ctx = RecordingContext()
    rounds = RungMap(ctx)  # type: ignore[arg-type]
    assert rounds(lambda x: x * 2, range(10)) == [2 * x for x in range(10)]
    assert rounds(str, range(6)) == [str(x) for x in range(6)]
    assert ctx.messages == [
        "candidates evaluated in round 1",
        "candidates evaluated in round 2 (10 in the rounds before)",
    ]
