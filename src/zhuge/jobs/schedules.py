"""Schedules: a pipeline document run on a cron expression, exactly once per slot.

A **slot** is an instant at which a schedule's cron expression matches the wall clock of
its time zone; ``zhuge.jobs.slots`` computes them (and states the daylight-saving rule) as
pure functions, on the store's clock, the only clock.

**Exactly once per slot.** ``schedule_runs`` has a unique key on ``(schedule_id, slot)``.
A slot fires in one transaction: the run row, then the pipeline (``insert_pipeline``, on
the same connection), then the schedule's ``last_slot``. A second scheduler firing the same
slot meets the key (on PostgreSQL it waits for the first one's commit or rollback): it
skips. A scheduler that dies before its commit leaves nothing: the slot is still due and
the next scheduler fires it. Nothing is fired twice and nothing is lost.

**Catch-up** after downtime (more than one slot due at once): ``latest`` fires the latest
due slot only, ``none`` fires nothing and records the latest as ``missed``; either way the
run row says how many slots were passed over, so no skip is silent. A slot counts as on
time within ``slots.ON_TIME_SECONDS`` of its instant.

**Overlap**: ``skip`` records a slot whose previous run's pipeline is still active as
``skipped`` with the reason; ``queue`` fires it anyway (the pipelines wait in the queue).

**Whose permissions**: a schedule runs as its tenant with the token that created (or last
resumed) it. A revoked or expired token pauses the schedule with the reason when a slot
comes, and that slot is recorded as ``skipped``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from zhuge.errors import Conflict, InvalidRequest, NotFound, ZhugeError
from zhuge.jobs import schema
from zhuge.jobs.model import Principal
from zhuge.jobs.slots import (
    check_cron,
    check_timezone,
    due_slot,
    latest_slot,
    next_slots,
)

if TYPE_CHECKING:
    from zhuge.config import Settings
    from zhuge.jobs.pipelines import PipelineSpec
    from zhuge.jobs.store import JobStore

log = logging.getLogger(__name__)

OVERLAPS: tuple[str, ...] = ("skip", "queue")
CATCH_UPS: tuple[str, ...] = ("latest", "none")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
REFUSALS = (InvalidRequest, NotFound)
"""What a slot's pipeline may be refused with (a dataset removed, a root withdrawn): the slot
is recorded as failed. Anything else (the database down) is retried at the next look."""
MAX_DOCUMENT_BYTES = 256 * 1024


# -- the records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    id: int
    tenant: str
    name: str
    cron: str
    timezone: str
    document: str  # the pipeline document, rendered for each slot
    params: dict[str, Any]
    template: str | None  # the template the document came from, if any
    overlap: str
    catch_up: str
    paused: bool
    paused_reason: str | None
    token_id: str | None  # whose permissions its runs have
    created_at: float
    last_slot: float | None  # the latest slot fired, skipped or missed

    @property
    def zone(self) -> ZoneInfo:
        return check_timezone(self.timezone)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _SCHEDULE_FIELDS}


@dataclass(frozen=True)
class ScheduleRun:
    id: int
    schedule_id: int
    slot: float
    trigger: str  # cron | manual
    outcome: str  # fired | skipped | missed | failed
    reason: str
    pipeline_id: int | None
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _RUN_FIELDS}


_SCHEDULE_FIELDS = tuple(Schedule.__dataclass_fields__)
_RUN_FIELDS = tuple(ScheduleRun.__dataclass_fields__)
S = schema.schedules
R = schema.schedule_runs


def _schedule(row: sa.Row[Any]) -> Schedule:
    m = row._mapping
    return Schedule(**{k: m[k] for k in _SCHEDULE_FIELDS})


def _run(row: sa.Row[Any]) -> ScheduleRun:
    m = row._mapping
    return ScheduleRun(**{k: m[k] for k in _RUN_FIELDS})


# -- what a slot runs: the pipelines module, behind two calls ----------------------------------


class Pipelines(Protocol):
    """What firing needs of ``zhuge.jobs.pipelines`` (a fake one in unit tests)."""

    def check(self, schedule: Schedule, principal: Principal, slot: float) -> None:
        """Refuse (InvalidRequest) a document that does not render and parse for ``slot``."""

    def insert(
        self, conn: sa.Connection, schedule: Schedule, principal: Principal, slot: float
    ) -> int:
        """Insert the pipeline of ``slot`` in the caller's transaction; its id."""

    def active(self, conn: sa.Connection, pipeline_id: int) -> bool:
        """Whether the pipeline still has a job that has not finished."""

    def states(self, pipeline_ids: list[int]) -> dict[int, str]:
        """Each pipeline's state in words."""


@dataclass
class Schedules:
    """Schedules and their runs, on the store's engine, clock and transactions."""

    store: JobStore
    settings: Settings | None = None  # None: data references are not checked (tests)
    pipelines: Pipelines = field(default=None)  # type: ignore[assignment]
    _next: dict[tuple[Any, ...], float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.pipelines is None:
            self.pipelines = StorePipelines(self.store, self.settings)

    # -- CRUD -----------------------------------------------------------------------------

    def add(
        self,
        principal: Principal,
        *,
        name: str,
        cron: str,
        document: str,
        timezone: str = "UTC",
        params: dict[str, Any] | None = None,
        template: str | None = None,
        overlap: str = "skip",
        catch_up: str = "latest",
    ) -> Schedule:
        """Create a schedule in ``principal``'s tenant, running with its token. The
        document must render and parse for the next slot, or nothing is stored."""
        if not NAME.match(name or ""):
            raise InvalidRequest(
                f"schedule name {name!r}: letters, digits, '.', '_' and '-', at most 100, "
                "starting with a letter or digit",
                details={"params": ["name"]},
            )
        cron = check_cron(cron)
        tz = check_timezone(timezone)
        if overlap not in OVERLAPS:
            raise InvalidRequest(f"overlap must be skip or queue, not {overlap!r}")
        if catch_up not in CATCH_UPS:
            raise InvalidRequest(f"catch-up must be latest or none, not {catch_up!r}")
        if len(document.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
            raise InvalidRequest(f"the pipeline document is over {MAX_DOCUMENT_BYTES} bytes")
        params = {str(k): v for k, v in (params or {}).items()}
        now = self.store.clock()
        nxt = next_slots(cron, tz, now, 1)
        if not nxt:
            raise InvalidRequest(f"cron expression {cron!r} never matches")
        draft = Schedule(
            id=0, tenant=principal.tenant, name=name, cron=cron, timezone=timezone,
            document=document, params=params, template=template, overlap=overlap,
            catch_up=catch_up, paused=False, paused_reason=None, token_id=principal.token_id,
            created_at=now, last_slot=None,
        )  # fmt: skip
        self.pipelines.check(draft, principal, nxt[0])
        values = {k: v for k, v in draft.as_dict().items() if k != "id"}
        try:
            with self.store._tx() as conn:
                new_id = conn.execute(S.insert().values(**values).returning(S.c.id)).scalar_one()
        except IntegrityError as exc:
            raise Conflict(
                f"a schedule named {name!r} exists: pick another name, or "
                f"zhuge schedules rm {name} first"
            ) from exc
        return dataclasses.replace(draft, id=new_id)

    def list(self, tenant: str) -> list[Schedule]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(S).where(S.c.tenant == tenant).order_by(S.c.name))
            return [_schedule(r) for r in rows]

    def summaries(self, tenant: str) -> list[dict[str, Any]]:
        """Each schedule (without its document), its next slot and its latest run."""
        now = self.store.clock()
        out = []
        for schedule in self.list(tenant):
            tz = schedule.zone
            nxt = next_slots(schedule.cron, tz, max(now, schedule.last_slot or 0.0), 1)
            last = self.runs(schedule.id, limit=1)
            summary = {k: v for k, v in schedule.as_dict().items() if k != "document"}
            out.append(
                {
                    **summary,
                    "next_slot": {"utc": _iso(nxt[0], UTC), "local": _iso(nxt[0], tz)}
                    if nxt and not schedule.paused
                    else None,
                    "last_run": last[0].as_dict() if last else None,
                }
            )
        return out

    def get(self, tenant: str, name: str) -> Schedule:
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(S).where(S.c.tenant == tenant, S.c.name == name)).first()
        if row is None:
            raise NotFound(f"schedule {name!r} does not exist (zhuge schedules ls)")
        return _schedule(row)

    def runs(self, schedule_id: int, *, limit: int = 20) -> list[ScheduleRun]:
        """The latest runs, newest slot first."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(R).where(R.c.schedule_id == schedule_id).order_by(R.c.slot.desc())
                .limit(limit)
            )  # fmt: skip
            return [_run(r) for r in rows]

    def show(self, tenant: str, name: str, *, upcoming: int = 5) -> dict[str, Any]:
        """The schedule, its next slots (UTC and local), and its latest runs with their
        pipelines' states."""
        schedule = self.get(tenant, name)
        tz = schedule.zone
        after = max(self.store.clock(), schedule.last_slot or 0.0)
        runs = self.runs(schedule.id)
        states = self.pipelines.states([r.pipeline_id for r in runs if r.pipeline_id])
        return {
            **schedule.as_dict(),
            "next_slots": [
                {"utc": _iso(s, UTC), "local": _iso(s, tz)}
                for s in next_slots(schedule.cron, tz, after, upcoming)
            ],
            "runs": [
                {
                    **r.as_dict(),
                    "slot_local": _iso(r.slot, tz),
                    "pipeline_state": states.get(r.pipeline_id) if r.pipeline_id else None,
                }
                for r in runs
            ],
        }

    def pause(self, tenant: str, name: str, reason: str = "") -> Schedule:
        schedule = self.get(tenant, name)
        with self.store._tx() as conn:
            conn.execute(
                S.update().where(S.c.id == schedule.id)
                .values(paused=True, paused_reason=reason[:500] or "paused by hand")
            )  # fmt: skip
        return self.get(tenant, name)

    def resume(self, principal: Principal, name: str) -> Schedule:
        """Run again from the next slot (the slots that passed while paused are not run),
        with ``principal``'s token from now on."""
        schedule = self.get(principal.tenant, name)
        latest = latest_slot(schedule.cron, schedule.zone, self.store.clock())
        last = max(x for x in (schedule.last_slot, latest, schedule.created_at) if x is not None)
        with self.store._tx() as conn:
            conn.execute(
                S.update().where(S.c.id == schedule.id)
                .values(paused=False, paused_reason=None, token_id=principal.token_id,
                        last_slot=last)
            )  # fmt: skip
        return self.get(principal.tenant, name)

    def remove(self, tenant: str, name: str) -> Schedule:
        """Remove the schedule and its run records; the pipelines it ran stay."""
        schedule = self.get(tenant, name)
        with self.store._tx() as conn:
            conn.execute(R.delete().where(R.c.schedule_id == schedule.id))
            conn.execute(S.delete().where(S.c.id == schedule.id))
        return schedule

    def run_now(self, principal: Principal, name: str) -> ScheduleRun:
        """Run the schedule's pipeline now, for the slot ``now`` (paused or not), as
        ``principal``; a manual run changes nothing of the cron slots to come."""
        schedule = self.get(principal.tenant, name)
        slot = float(int(self.store.clock()))
        self.pipelines.check(schedule, principal, slot)
        try:
            with self.store._tx() as conn:
                run_id = self._insert_run(conn, schedule, slot, "manual", "fired", "run-now")
                pipeline_id = self.pipelines.insert(conn, schedule, principal, slot)
                conn.execute(R.update().where(R.c.id == run_id).values(pipeline_id=pipeline_id))
        except IntegrityError as exc:
            raise Conflict(f"schedule {name!r} already has a run for this second") from exc
        return self._get_run(run_id)

    # -- firing ---------------------------------------------------------------------------

    def fire_due(self, *, now: float | None = None) -> list[ScheduleRun]:
        """Fire every schedule's due slot (the scheduler's housekeeping calls this each
        second, on every scheduler). Returns the runs this call recorded."""
        now = self.store.clock() if now is None else now
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(S).where(S.c.paused.is_(False)).order_by(S.c.id))
            schedules = [_schedule(r) for r in rows]
        done: list[ScheduleRun] = []
        for schedule in schedules:
            try:
                run = self.fire(schedule, now=now)
            except ZhugeError:
                log.exception("schedule %s/%s could not fire", schedule.tenant, schedule.name)
                continue
            if run is not None:
                done.append(run)
        return done

    def fire(self, schedule: Schedule, *, now: float) -> ScheduleRun | None:
        """Fire ``schedule``'s due slot, if any, exactly once across schedulers."""
        key = (schedule.id, schedule.cron, schedule.timezone, schedule.last_slot)
        if self._next.get(key, -1.0) > now:
            return None  # its next slot is still to come: nothing to compute
        tz = schedule.zone
        since = schedule.last_slot if schedule.last_slot is not None else schedule.created_at
        due = due_slot(schedule.cron, tz, since=since, now=now, catch_up=schedule.catch_up)
        if due is None:
            if len(self._next) > 10_000:  # keys of old last slots: forget them all at once
                self._next.clear()
            nxt = next_slots(schedule.cron, tz, since, 1)
            self._next[key] = nxt[0] if nxt else float("inf")
            return None
        note = due.note(schedule.catch_up)
        if not due.fire:
            return self._record(schedule, due.slot, "missed", note)
        principal, why_not = self._principal(schedule)
        if principal is None:
            return self._pause_for_token(schedule, due.slot, why_not)
        if schedule.overlap == "skip":
            busy = self._active_run(schedule)
            if busy is not None:
                return self._record(
                    schedule, due.slot, "skipped",
                    f"overlap skip: the run of {_iso(busy.slot, tz)} (pipeline "
                    f"{busy.pipeline_id}) is still active",
                )  # fmt: skip
        try:
            self.pipelines.check(schedule, principal, due.slot)
        except REFUSALS as exc:  # what the file asks is refused now: recorded, not retried
            return self._record(schedule, due.slot, "failed", exc.message)
        try:
            with self.store._tx() as conn:
                run_id = self._insert_run(conn, schedule, due.slot, "cron", "fired", note)
                pipeline_id = self.pipelines.insert(conn, schedule, principal, due.slot)
                conn.execute(R.update().where(R.c.id == run_id).values(pipeline_id=pipeline_id))
                self._advance(conn, schedule, due.slot)
        except IntegrityError:
            return self._taken(schedule, due.slot)
        except REFUSALS as exc:
            return self._record(schedule, due.slot, "failed", exc.message)
        return self._get_run(run_id)

    def _taken(self, schedule: Schedule, slot: float) -> None:
        """The slot has its run already (another scheduler's, or a run-now in that very
        second): that run stands; the schedule moves past the slot."""
        with self.store._tx() as conn:
            self._advance(conn, schedule, slot)

    def _record(
        self, schedule: Schedule, slot: float, outcome: str, reason: str
    ) -> ScheduleRun | None:
        """A slot that does not run, recorded with the reason (once, like a fired one)."""
        try:
            with self.store._tx() as conn:
                run_id = self._insert_run(conn, schedule, slot, "cron", outcome, reason)
                self._advance(conn, schedule, slot)
        except IntegrityError:
            return self._taken(schedule, slot)
        return self._get_run(run_id)

    def _pause_for_token(self, schedule: Schedule, slot: float, why: str) -> ScheduleRun | None:
        reason = f"paused: {why}; resume it with a valid token (zhuge schedules resume " \
            f"{schedule.name})"  # fmt: skip
        try:
            with self.store._tx() as conn:
                run_id = self._insert_run(conn, schedule, slot, "cron", "skipped", reason)
                self._advance(conn, schedule, slot)
                conn.execute(
                    S.update().where(S.c.id == schedule.id).values(paused=True, paused_reason=why)
                )
        except IntegrityError:
            return self._taken(schedule, slot)
        log.warning("schedule %s/%s %s", schedule.tenant, schedule.name, reason)
        return self._get_run(run_id)

    def _principal(self, schedule: Schedule) -> tuple[Principal | None, str]:
        """Who the schedule runs as: its token, unless revoked or expired (then why not)."""
        T = schema.tokens
        with self.store.engine.connect() as conn:
            token = conn.execute(
                sa.select(T.c.id, T.c.tenant, T.c.role, T.c.revoked_at, T.c.expires_at).where(
                    T.c.id == schedule.token_id
                )
            ).first()
        if token is None or token.tenant != schedule.tenant:
            return None, f"the token {schedule.token_id} that created it no longer exists"
        if token.revoked_at is not None:
            return None, f"the token {token.id} that created it was revoked"
        if token.expires_at is not None and token.expires_at <= self.store.clock():
            return None, f"the token {token.id} that created it expired"
        return Principal(token_id=token.id, tenant=token.tenant, role=token.role), ""

    def _active_run(self, schedule: Schedule) -> ScheduleRun | None:
        """The latest fired run whose pipeline is still active, if any."""
        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(R).where(
                    R.c.schedule_id == schedule.id, R.c.outcome == "fired",
                    R.c.pipeline_id.is_not(None),
                ).order_by(R.c.slot.desc()).limit(1)
            ).first()  # fmt: skip
            if row is None:
                return None
            run = _run(row)
            return run if self.pipelines.active(conn, run.pipeline_id or 0) else None

    def _insert_run(
        self,
        conn: sa.Connection,
        schedule: Schedule,
        slot: float,
        trigger: str,
        outcome: str,
        reason: str,
    ) -> int:
        return conn.execute(
            R.insert()
            .values(
                schedule_id=schedule.id, slot=slot, trigger=trigger, outcome=outcome,
                reason=reason[:2000], pipeline_id=None, created_at=self.store.clock(),
            )
            .returning(R.c.id)
        ).scalar_one()  # fmt: skip

    def _advance(self, conn: sa.Connection, schedule: Schedule, slot: float) -> None:
        conn.execute(
            S.update()
            .where(S.c.id == schedule.id, sa.or_(S.c.last_slot.is_(None), S.c.last_slot < slot))
            .values(last_slot=slot)
        )

    def _get_run(self, run_id: int) -> ScheduleRun:
        with self.store.engine.connect() as conn:
            return _run(conn.execute(sa.select(R).where(R.c.id == run_id)).one())


def _iso(instant: float, tz: ZoneInfo | Any) -> str:
    return datetime.fromtimestamp(instant, tz).isoformat()


# -- the pipelines a schedule inserts -----------------------------------------------------------


def load_document(text: str) -> dict[str, Any]:
    """A pipeline file's text as the mapping ``PipelineSpec.parse`` takes."""
    import yaml

    if _flow_depth(text) > MAX_FLOW_DEPTH:
        raise InvalidRequest("the pipeline file nests too deeply")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: fast, depth-limited
    try:
        # no anchors and aliases: one that refers to itself, or many that nest, would make
        # a document that never ends once expanded
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=loader)):
            raise InvalidRequest("the pipeline file uses YAML aliases (*name): write it out")
        document = yaml.load(text, Loader=loader)  # a safe loader: plain data only
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise InvalidRequest(f"the pipeline file is not valid YAML{at}") from exc
    except RecursionError as exc:
        raise InvalidRequest("the pipeline file nests too deeply") from exc
    if not isinstance(document, dict):
        raise InvalidRequest("a pipeline file is a mapping with name, params and steps")
    return document


MAX_FLOW_DEPTH = 100  # nested [ and { in a pipeline file (the pure-Python parser is slow on more)


def _flow_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` (quotes not parsed: an over-estimate)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


class StorePipelines:
    """Firing's view of ``zhuge.jobs.pipelines``: the document parsed and rendered for a
    slot (``slot``: the slot's time in the schedule's time zone; the schedule's parameters),
    checked against what the schedule's token may read, inserted in the caller's
    transaction; a pipeline is active while one of its jobs has not finished."""

    def __init__(self, store: JobStore, settings: Settings | None) -> None:
        self.store = store
        self.settings = settings

    def _spec(self, schedule: Schedule, slot: float) -> PipelineSpec:
        from zhuge.jobs.pipelines import PipelineSpec

        return PipelineSpec.parse(
            load_document(schedule.document),
            params=schedule.params,
            slot=datetime.fromtimestamp(slot, schedule.zone),
        )

    def check(self, schedule: Schedule, principal: Principal, slot: float) -> None:
        from zhuge.jobs.pipelines import check_pipeline

        spec = self._spec(schedule, slot)
        if self.settings is not None:
            check_pipeline(spec, principal=principal, settings=self.settings, store=self.store)

    def insert(
        self, conn: sa.Connection, schedule: Schedule, principal: Principal, slot: float
    ) -> int:
        from zhuge.jobs.pipelines import insert_pipeline

        return insert_pipeline(
            conn,
            self.store,
            tenant=principal.tenant,
            spec=self._spec(schedule, slot),
            origin=f"schedule:{schedule.name}",
        )

    def active(self, conn: sa.Connection, pipeline_id: int) -> bool:
        from zhuge.jobs.pipelines import ACTIVE

        J = schema.jobs
        query = sa.select(J.c.id).where(
            J.c.pipeline_id == pipeline_id, J.c.state.in_([s.value for s in ACTIVE])
        )
        return conn.execute(query.limit(1)).first() is not None

    def states(self, pipeline_ids: list[int]) -> dict[int, str]:
        from zhuge.jobs.pipelines import PipelineNotFound, get_pipeline

        out: dict[int, str] = {}
        for pipeline_id in pipeline_ids:
            try:
                out[pipeline_id] = get_pipeline(self.store, pipeline_id).state
            except PipelineNotFound:
                out[pipeline_id] = "gone"
        return out
