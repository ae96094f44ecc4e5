"""Slot arithmetic: which instants a cron expression names in a time zone, by the documented
daylight-saving rule, and what is due after downtime. Expected instants are written out by
hand from the zone's published offsets, not computed by the code under test."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from zhuge.errors import InvalidRequest
from zhuge.jobs.schedules import load_document
from zhuge.jobs.slots import (
    check_cron,
    check_timezone,
    due_slot,
    instant_of,
    latest_slot,
    next_slots,
    slots_between,
)

NY = ZoneInfo("America/New_York")


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_a_daily_slot_in_shanghai_is_at_local_time():
    tz = ZoneInfo("Asia/Shanghai")  # UTC+8, no daylight saving
    after = utc(2026, 5, 1, 0, 0)
    assert next_slots("0 2 * * *", tz, after, 3) == [
        utc(2026, 5, 1, 18, 0),
        utc(2026, 5, 2, 18, 0),
        utc(2026, 5, 3, 18, 0),
    ]


def test_spring_forward_a_skipped_time_runs_once_at_the_next_valid_time():
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 never happens.
    slots = slots_between("30 2 * * *", NY, utc(2026, 3, 7, 0, 0), utc(2026, 3, 10, 0, 0))
    assert slots == [
        utc(2026, 3, 7, 7, 30),  # 02:30 EST
        utc(2026, 3, 8, 7, 0),  # the skipped 02:30: at 03:00 EDT, the next valid time
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
    ]
    assert instant_of(datetime(2026, 3, 8, 2, 30), NY) == utc(2026, 3, 8, 7, 0)


def test_spring_forward_several_skipped_times_and_the_real_one_are_one_slot():
    slots = slots_between("*/30 * * * *", NY, utc(2026, 3, 8, 6, 0), utc(2026, 3, 8, 7, 45))
    # (after 01:00 EST) 01:30 EST, [02:00, 02:30 skipped] -> 03:00 EDT once, 03:30 EDT
    assert slots == [utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 30)]


def test_fall_back_a_repeated_time_runs_once_at_its_first_occurrence():
    # 2026-11-01 in New York: 02:00 EDT falls back to 01:00 EST (06:00 UTC); 01:30 happens
    # at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    slots = slots_between("30 1 * * *", NY, utc(2026, 10, 31, 0, 0), utc(2026, 11, 3, 0, 0))
    assert slots == [
        utc(2026, 10, 31, 5, 30),  # 01:30 EDT
        utc(2026, 11, 1, 5, 30),  # the first 01:30 (EDT) only
        utc(2026, 11, 2, 6, 30),  # 01:30 EST
    ]


def test_fall_back_a_half_hourly_cron_does_not_repeat_the_hour():
    slots = slots_between("*/30 * * * *", NY, utc(2026, 11, 1, 4, 45), utc(2026, 11, 1, 7, 15))
    assert slots == [
        utc(2026, 11, 1, 5, 0),  # 01:00 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT
        # 01:00 EST and 01:30 EST (06:00, 06:30 UTC) are repeated local times: not again
        utc(2026, 11, 1, 7, 0),  # 02:00 EST
    ]


def test_latest_slot_walks_back_across_a_transition():
    assert latest_slot("30 2 * * *", NY, utc(2026, 3, 8, 12, 0)) == utc(2026, 3, 8, 7, 0)
    assert latest_slot("30 1 * * *", NY, utc(2026, 11, 1, 6, 45)) == utc(2026, 11, 1, 5, 30)
    assert latest_slot("0 2 * * *", ZoneInfo("UTC"), utc(2026, 1, 1, 2, 0)) == utc(2026, 1, 1, 2)


def test_an_on_time_slot_fires_under_either_policy():
    since = utc(2026, 1, 1, 2, 0)
    for policy in ("latest", "none"):
        due = due_slot("0 2 * * *", ZoneInfo("UTC"), since=since, now=utc(2026, 1, 2, 2, 0, 1),
                       catch_up=policy)  # fmt: skip
        assert due is not None and due.fire and due.slot == utc(2026, 1, 2, 2)
        assert due.passed_over == 0


def test_nothing_is_due_before_the_next_slot():
    since = utc(2026, 1, 1, 2, 0)
    assert due_slot("0 2 * * *", ZoneInfo("UTC"), since=since, now=utc(2026, 1, 2, 1, 59),
                    catch_up="latest") is None  # fmt: skip


def test_after_three_days_down_latest_fires_one_slot_and_none_fires_none():
    since = utc(2026, 1, 1, 2, 0)
    now = utc(2026, 1, 4, 9, 0)  # down from before Jan 2 02:00 to after Jan 4 02:00
    latest = due_slot("0 2 * * *", ZoneInfo("UTC"), since=since, now=now, catch_up="latest")
    none = due_slot("0 2 * * *", ZoneInfo("UTC"), since=since, now=now, catch_up="none")
    assert latest is not None and latest.fire and latest.slot == utc(2026, 1, 4, 2)
    assert latest.passed_over == 2 and latest.first_passed_over == utc(2026, 1, 2, 2)
    assert "2 earlier slot(s) since 2026-01-02 02:00 UTC not run" in latest.note("latest")
    assert none is not None and not none.fire and none.slot == utc(2026, 1, 4, 2)
    assert none.note("none").startswith("missed while no scheduler ran")


@pytest.mark.parametrize("expr", ["", "0 2 * *", "0 2 * * * *", "61 * * * *", "every day"])
def test_a_bad_cron_expression_is_refused_with_an_example(expr):
    with pytest.raises(InvalidRequest, match="five fields"):
        check_cron(expr)


def test_cron_expressions_are_normalised():
    assert check_cron("  0   2 * * * ") == "0 2 * * *"
    assert check_cron("@daily") == "@daily"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime"])
def test_an_unknown_time_zone_is_refused(name):
    with pytest.raises(InvalidRequest, match="IANA"):
        check_timezone(name)


def test_a_cron_expression_that_never_matches_is_refused():
    with pytest.raises(InvalidRequest, match="never matches"):
        check_cron("0 0 30 2 *")
    assert check_cron("0 0 29 2 *") == "0 0 29 2 *"  # a leap day does come


def test_a_long_downtime_of_a_minutely_schedule_is_counted_up_to_a_bound():
    since, now = utc(2026, 1, 1), utc(2026, 4, 1)  # three months of minutes passed over
    due = due_slot("* * * * *", ZoneInfo("UTC"), since=since, now=now, catch_up="latest")
    assert due is not None and due.fire and due.slot == now
    assert due.more_passed_over and 0 < due.passed_over < 130_000
    assert due.note("latest").startswith(f"more than {due.passed_over} earlier slot(s)")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("steps: [unclosed", "not valid YAML"),
        ("[" * 5000 + "]" * 5000, "nests too deeply"),
        ("a: &a [*a]", "aliases"),
        ("just text", "a mapping"),
    ],
)
def test_a_pipeline_file_that_cannot_be_read_is_refused_in_words(text, words):
    with pytest.raises(InvalidRequest, match=words):
        load_document(text)
