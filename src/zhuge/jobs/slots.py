"""Cron slots in a time zone: which instants a cron expression names, by the documented
daylight-saving rule, and which slot is due after downtime. Pure functions of (cron, time
zone, last slot, now); ``zhuge.jobs.schedules`` fires them.

A **slot** is an instant (epoch seconds) at which the cron expression matches the wall clock
of the time zone. croniter is asked about wall-clock times only, never about instants, so
the daylight-saving rule is ours, not the library's:

- a local time that does not exist (skipped by spring-forward: 02:30 on 2026-03-08 in
  New York) runs **once, at the next valid local time** (03:00 EDT, the moment the clocks
  jump); several skipped times, and a real tick at that moment, are one slot;
- a local time that happens twice (repeated by fall-back: 01:30 on 2026-11-01 in New York)
  runs **once, at its first occurrence** (01:30 EDT).

Instants grow with local times under this rule (never backwards), which is what lets
``latest_slot`` walk back and stop at the first slot it finds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from zhuge.errors import InvalidRequest

ON_TIME_SECONDS = 300.0
"""A slot fired within this long of its instant is on time; older ones are catch-up (a
scheduler's housekeeping runs every second, so only downtime makes a slot this late)."""
DST_MARGIN = timedelta(hours=3)  # more than any offset change (Lord Howe's is 30 min, most 1 h)
MAX_SCAN_TICKS = 100_000  # cron ticks looked at for one question, at most
COUNT_TICKS = 10_000  # ticks counted of a downtime's passed-over slots (then "more than")


def check_cron(expr: str) -> str:
    """A standard five-field cron expression (or @daily, @hourly, ...), or InvalidRequest."""
    text = " ".join(str(expr).split())
    fields = text.split(" ")
    if not text or (not text.startswith("@") and len(fields) != 5) or not croniter.is_valid(text):
        raise InvalidRequest(
            f"cron expression {expr!r} is not valid: five fields, minute hour day month "
            "weekday, e.g. '0 2 * * *' (every day at 02:00) or '*/15 * * * *'",
            details={"params": ["cron"]},
        )
    if not any(True for _ in _ticks(text, datetime(2000, 1, 1), limit=1)):
        raise InvalidRequest(
            f"cron expression {expr!r} never matches a date (30 February?)",
            details={"params": ["cron"]},
        )
    return text


def check_timezone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Asia/Shanghai``, ``UTC``), or InvalidRequest."""
    try:
        if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidRequest(
            f"time zone {name!r} is not an IANA time zone name, e.g. UTC, Asia/Shanghai, "
            "America/New_York",
            details={"params": ["timezone"]},
        ) from exc


def _wall(instant: float, tz: ZoneInfo) -> datetime:
    """The naive local wall-clock time at ``instant``."""
    return datetime.fromtimestamp(instant, tz).replace(tzinfo=None)


def instant_of(local: datetime, tz: ZoneInfo) -> float:
    """The instant a naive local time runs at, by the daylight-saving rule: a repeated time
    at its first occurrence, a skipped time at the first valid instant after it."""
    first = local.replace(tzinfo=tz, fold=0)
    second = local.replace(tzinfo=tz, fold=1)
    if _wall(first.timestamp(), tz) == local:
        return first.timestamp()  # it exists (fold=0 is the first of a repeated time)
    # Skipped: the clocks jump from before it to after it between these two instants
    # (fold=1 reads it with the offset after the jump, fold=0 with the one before).
    lo, hi = sorted((int(second.timestamp()), int(first.timestamp())))
    while lo < hi:  # the first whole second whose wall time is at or past ``local``
        mid = (lo + hi) // 2
        if _wall(mid, tz) >= local:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def _ticks(
    cron: str, start: datetime, *, backwards: bool = False, limit: int = MAX_SCAN_TICKS
) -> Iterator[datetime]:
    """The cron expression's wall-clock times after (or before) ``start``; none past a
    date it can never reach again (``0 0 30 2 *``)."""
    it = croniter(cron, start)
    step = it.get_prev if backwards else it.get_next
    for _ in range(limit):
        try:
            yield step(datetime)
        except CroniterError:
            return


def slots_between(
    cron: str, tz: ZoneInfo, after: float, until: float, *, limit: int = MAX_SCAN_TICKS
) -> list[float]:
    """Every slot in ``(after, until]``, oldest first, each once (within ``limit`` ticks)."""
    out: list[float] = []
    stop = _wall(until, tz) + DST_MARGIN
    for local in _ticks(cron, _wall(after, tz) - DST_MARGIN, limit=limit):
        if local > stop:
            break
        slot = instant_of(local, tz)
        if after < slot <= until and (not out or slot > out[-1]):
            out.append(slot)
    return out


def next_slots(cron: str, tz: ZoneInfo, after: float, count: int = 1) -> list[float]:
    """The first ``count`` slots strictly after ``after``."""
    out: list[float] = []
    for local in _ticks(cron, _wall(after, tz) - DST_MARGIN):
        slot = instant_of(local, tz)
        if slot > after and (not out or slot > out[-1]):
            out.append(slot)
            if len(out) == count:
                break
    return out


def latest_slot(cron: str, tz: ZoneInfo, at: float) -> float | None:
    """The latest slot at or before ``at`` (instants grow with local times, so the first
    one found walking back is it)."""
    for local in _ticks(cron, _wall(at, tz) + DST_MARGIN, backwards=True):
        slot = instant_of(local, tz)
        if slot <= at:
            return slot
    return None


@dataclass(frozen=True)
class Due:
    """What firing does now: ``slot`` to run (``fire``) or to record as missed, and how
    many earlier due slots it stands for (passed over by the catch-up policy)."""

    slot: float
    fire: bool
    passed_over: int = 0
    first_passed_over: float | None = None
    more_passed_over: bool = False  # more than ``passed_over``: the count stopped there

    def note(self, catch_up: str) -> str:
        """The run row's reason: what the catch-up policy passed over, in words."""
        parts = [] if self.fire else ["missed while no scheduler ran (catch-up none)"]
        if self.passed_over:
            since = datetime.fromtimestamp(self.first_passed_over or self.slot, UTC)
            count = f"more than {self.passed_over}" if self.more_passed_over else self.passed_over
            parts.append(
                f"{count} earlier slot(s) since {since:%Y-%m-%d %H:%M} UTC not run "
                f"(catch-up {catch_up})"
            )
        return "; ".join(parts)


def due_slot(cron: str, tz: ZoneInfo, *, since: float, now: float, catch_up: str) -> Due | None:
    """What is due at ``now`` for a schedule whose last slot (or creation) was ``since``:
    None, or one slot, whatever the downtime (never one run per missed tick).

    On time (within ON_TIME_SECONDS) the latest slot fires under either policy; late, it
    fires under ``latest`` and is recorded as missed under ``none``."""
    latest = latest_slot(cron, tz, now)
    if latest is None or latest <= since:
        return None
    on_time = now - latest <= ON_TIME_SECONDS
    # How many more slots the downtime passed over (counted only when it is likely).
    between: list[float] = []
    if not on_time or next_slots(cron, tz, since, 1)[0] < latest:
        between = slots_between(cron, tz, since, latest, limit=COUNT_TICKS)
    counted_all = not between or between[-1] == latest
    earlier = between[:-1] if counted_all else between
    return Due(
        slot=latest,
        fire=on_time or catch_up == "latest",
        passed_over=len(earlier),
        first_passed_over=earlier[0] if earlier else None,
        more_passed_over=not counted_all,
    )
