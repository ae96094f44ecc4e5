"""Replay a job trace on a virtual clock through the real admission policy.

``zhuge simulate`` answers "what would these queues do with this load?" without a cluster.
It owns no policy: at every event time it builds an ``admission.Snapshot`` (the pools'
workers, the attempts running, the queued jobs, the decayed usage) and applies whatever
``admission.decide`` returns. The events are:

- a job is **submitted** at its trace ``submit_time``;
- an attempt **finishes** ``duration_s`` after it started, or is killed at its ``timeout_s``
  (the job then ends ``timed_out``);
- a **preempted** attempt stops ``preemption.grace`` after admission asked it to (unless it
  finishes first): it counts as a preemption, its work is lost, and the job is queued again
  keeping its ``queued_at`` (so it keeps its age and its place);
- a queued job **becomes starving** (``reservation_after`` after it was queued), so a
  reservation does not wait for the next unrelated event.

Between events each tenant's usage decays with ``admission.decay_usage`` exactly as the
store's does, and what each tenant holds is added up in resource-seconds for the report.

Inputs: a trace CSV (``submit_time`` seconds from the trace's start, ``tenant``, ``CPU``,
``GPU`` (fractions allowed), ``memory_gb``, ``duration_s``, ``priority``; optional ``gang``
(default 1) and ``timeout_s`` (default ``TIMEOUT_FACTOR`` × ``duration_s``: a user's limit is
looser than the run it bounds); other columns are ignored), a queues file (``queues.yaml``,
``QueueConfig.parse``) and a pools file (``zhuge.jobs.elastic.pools.PoolsConfig``). Here,
a fixed set of workers (``fixed_workers``)::

    pools:
      - {name: cpu, count: 4, resources: {CPU: 8, memory_gb: 32}}
      - {name: gpu, count: 1, resources: {CPU: 8, GPU: 1, memory_gb: 64}}

Pools that scale (``min``, ``max``, a policy, prices) are simulated by
``zhuge.jobs.elastic.simulation``, on this module's engine (``_Simulation.after_events`` is
its hook). ``trace_from_utilisation`` makes a trace from a utilisation series
(``zhuge simulate make-trace``).

Job N is row N of the trace (1-based, in file order), so "reserved for job 12" names a row.
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zhuge.errors import InvalidRequest
from zhuge.jobs.admission import (
    Amounts,
    Candidate,
    Decision,
    QueueConfig,
    Running,
    Snapshot,
    WorkerSlot,
    decay_usage,
    decide,
    jain_index,
)
from zhuge.jobs.elastic.pools import PoolsConfig

TRACE_COLUMNS = ("submit_time", "tenant", "CPU", "GPU", "memory_gb", "duration_s", "priority")
OPTIONAL_COLUMNS = ("gang", "timeout_s")
RESOURCE_COLUMNS = ("CPU", "GPU", "memory_gb")
TIMEOUT_FACTOR = 2.0  # default timeout_s = this × duration_s
REASONS_KEPT = 20  # distinct pending reasons remembered per job
MAX_DECISIONS_AT_ONE_TIME = 10_000  # a policy that never settles is a bug, not a long trace

# -- inputs ---------------------------------------------------------------------------------


class TraceJob(BaseModel):
    """One row of the trace."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    submit_time: float = Field(ge=0, allow_inf_nan=False)
    tenant: str = Field(min_length=1, max_length=200)
    CPU: float = Field(0.0, ge=0, allow_inf_nan=False)
    GPU: float = Field(0.0, ge=0, allow_inf_nan=False)
    memory_gb: float = Field(0.0, ge=0, allow_inf_nan=False)
    duration_s: float = Field(gt=0, allow_inf_nan=False)
    priority: int = Field(0, ge=-1_000_000, le=1_000_000)
    gang: int = Field(1, ge=1, le=10_000)
    timeout_s: float | None = Field(None, gt=0, allow_inf_nan=False)

    @field_validator("tenant")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a tenant name is required")
        return value

    @property
    def resources(self) -> dict[str, float]:
        return {r: getattr(self, r) for r in RESOURCE_COLUMNS if getattr(self, r) > 0}

    @property
    def limit_s(self) -> float:
        return self.timeout_s if self.timeout_s is not None else TIMEOUT_FACTOR * self.duration_s


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    count: int = Field(ge=1, le=100_000)
    resources: Amounts = Field(min_length=1)


class PoolsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pools: list[Pool] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> PoolsFile:
        names = [p.name for p in self.pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pool names must be unique: {', '.join(dupes)} repeated")
        return self

    def workers(self) -> list[WorkerSlot]:
        return [
            WorkerSlot(f"{p.name}-{i}", dict(p.resources))
            for p in self.pools
            for i in range(p.count)
        ]


def _read(path: str | Path, what: str) -> str:
    path = Path(path)
    if not path.exists():
        raise InvalidRequest(f"{what} file not found: {path}")
    if not path.is_file():
        raise InvalidRequest(f"{what} file is not a file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {what} file {path}: {exc}") from exc


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "file", "message": e["msg"]}
        for e in exc.errors()
    ]


def parse_trace(text: str, name: str = "trace") -> list[TraceJob]:
    """The rows of a trace CSV; ``InvalidRequest`` naming the line and column at fault."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if not columns:
        raise InvalidRequest(f"{name}: empty file (expected a header: {', '.join(TRACE_COLUMNS)})")
    reader.fieldnames = columns
    missing = [c for c in TRACE_COLUMNS if c not in columns]
    if missing:
        raise InvalidRequest(
            f"{name}: missing column(s) {', '.join(missing)} "
            f"(a trace has {', '.join(TRACE_COLUMNS)}, optional {', '.join(OPTIONAL_COLUMNS)})"
        )
    jobs: list[TraceJob] = []
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise InvalidRequest(f"{name} line {line}: more values than columns")
        values = {k: v.strip() for k, v in row.items() if k and v is not None and v.strip()}
        try:
            jobs.append(TraceJob.model_validate(values))
        except ValidationError as exc:
            errors = _field_errors(exc)
            first = errors[0]
            raise InvalidRequest(
                f"{name} line {line}: {first['field']}: {first['message']}",
                details={"line": line, "errors": errors},
            ) from exc
    if not jobs:
        raise InvalidRequest(f"{name}: no jobs (only a header)")
    return jobs


def parse_pools(text: str, name: str = "pools") -> list[WorkerSlot]:
    """The workers a pools file declares; ``InvalidRequest`` naming the field at fault."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"{name}: must be a mapping with a 'pools' list")
    try:
        return PoolsFile.model_validate(data).workers()
    except ValidationError as exc:
        errors = _field_errors(exc)
        raise InvalidRequest(
            f"{name}: {errors[0]['field']}: {errors[0]['message']}", details={"errors": errors}
        ) from exc


def load_pools_config(path: str | Path) -> PoolsConfig:
    """A pools file, old shape (``count``) or elastic (``min``, ``max``, ``policy``…)."""
    text = _read(path, "pools")
    try:
        return PoolsConfig.parse(text)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{path}: {exc.message}", details=exc.details) from exc


def fixed_workers(pools: PoolsConfig) -> list[WorkerSlot] | None:
    """The workers of a pools file in the fixed shape (every pool a ``count``), named as the
    fixed simulator always named them; None when a pool scales."""
    if not all(p.count is not None for p in pools.pools):
        return None
    return [
        WorkerSlot(f"{p.name}-{i}", dict(p.resources)) for p in pools.pools for i in range(p.min)
    ]


def load_trace(path: str | Path) -> list[TraceJob]:
    return parse_trace(_read(path, "trace"), str(path))


def load_pools(path: str | Path) -> list[WorkerSlot]:
    return parse_pools(_read(path, "pools"), str(path))


def load_queues(path: str | Path) -> QueueConfig:
    text = _read(path, "queues")
    try:
        return QueueConfig.parse(text)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{path}: {exc.message}", details=exc.details) from exc


# -- the outcome ----------------------------------------------------------------------------


@dataclass
class JobOutcome:
    """What happened to one job of the trace."""

    job_id: int
    tenant: str
    submit_time: float
    first_start: float | None = None
    starts: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    end: float | None = None
    state: str = "queued"  # queued | running | yielding | succeeded | timed_out
    preemptions: int = 0
    reasons: list[str] = field(default_factory=list)
    """The distinct pending reasons admission gave, in the order first given."""

    @property
    def wait_s(self) -> float | None:
        return None if self.first_start is None else self.first_start - self.submit_time


@dataclass
class TenantReport:
    tenant: str
    weight: float
    jobs: int
    finished: int
    timed_out: int
    never_started: int
    preemptions: int
    wait_p50_s: float | None
    wait_p95_s: float | None
    resource_seconds: dict[str, float]
    share: float
    """This tenant's part of all dominant-resource-normalised resource-seconds."""
    weight_share: float
    """weight / the sum of the weights of the trace's tenants."""
    contended_share: float | None
    """The same share counted only while every tenant of the trace had a job queued."""


@dataclass
class SimulationResult:
    tenants: list[TenantReport]
    jain_index: float
    """Jain's index over share / weight share (contended shares where there were any)."""
    utilisation: dict[str, float]
    makespan_s: float
    jobs: dict[int, JobOutcome]
    timeline: list[tuple[float, str, int, str]]
    """(time, start | finish | timeout | preempt | stop, job id, detail), in order."""
    wall_s: float
    decisions: int

    @property
    def jobs_per_second(self) -> float:
        """Simulated jobs per second of wall time (the only wall-clock number here)."""
        return len(self.jobs) / self.wall_s if self.wall_s > 0 else math.inf

    def tenant(self, name: str) -> TenantReport:
        return next(t for t in self.tenants if t.tenant == name)

    def to_dict(self) -> dict[str, Any]:
        never = {
            j.job_id: (j.reasons[-1] if j.reasons else "never considered")
            for j in self.jobs.values()
            if j.first_start is None
        }
        return {
            "tenants": [
                {
                    "tenant": t.tenant,
                    "weight": t.weight,
                    "jobs": t.jobs,
                    "finished": t.finished,
                    "timed_out": t.timed_out,
                    "never_started": t.never_started,
                    "preemptions": t.preemptions,
                    "wait_p50_s": t.wait_p50_s,
                    "wait_p95_s": t.wait_p95_s,
                    "share": t.share,
                    "weight_share": t.weight_share,
                    "contended_share": t.contended_share,
                    "resource_seconds": t.resource_seconds,
                }
                for t in self.tenants
            ],
            "jain_index": self.jain_index,
            "utilisation": self.utilisation,
            "makespan_s": self.makespan_s,
            "jobs": len(self.jobs),
            "decisions": self.decisions,
            "never_started": {str(k): v for k, v in never.items()},
            "wall_s": self.wall_s,
            "jobs_per_second": self.jobs_per_second,
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- the simulation -------------------------------------------------------------------------

# events at one time apply in this order: what frees capacity, then what asks for it
_FINISH, _STOP, _SUBMIT, _TICK = range(4)


@dataclass
class _Attempt:
    running: Running
    number: int


class _Simulation:
    def __init__(
        self, trace: Sequence[TraceJob], workers: Sequence[WorkerSlot], config: QueueConfig
    ) -> None:
        self.trace = list(trace)
        self.workers = list(workers)
        self.config = config
        self.jobs = {
            i: JobOutcome(i, job.tenant, job.submit_time) for i, job in enumerate(self.trace, 1)
        }
        self.spec = dict(enumerate(self.trace, 1))
        self.queued: dict[int, Candidate] = {}
        self.attempts: dict[int, _Attempt] = {}
        self.attempt_count: dict[int, int] = {}
        self.usage: dict[str, dict[str, float]] = {}
        self.held_seconds: dict[str, dict[str, float]] = {}
        self.contended_seconds: dict[str, dict[str, float]] = {}
        self.timeline: list[tuple[float, str, int, str]] = []
        self.events: list[tuple[float, int, int, int, int]] = []  # time, kind, seq, job, attempt
        self.seq = 0
        self.decisions = 0
        self.last_decision: Decision | None = None
        self.last_decision_at = -math.inf
        self.now = self.start_time = self.end_time = 0.0
        self.tenants = sorted({j.tenant for j in self.trace})
        for job_id, job in self.spec.items():
            self.push(job.submit_time, _SUBMIT, job_id)

    def push(self, at: float, kind: int, job_id: int, attempt: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, kind, self.seq, job_id, attempt))

    def held(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for a in self.attempts.values():
            r = a.running
            mine = out.setdefault(r.tenant, {})
            for k, v in r.resources.items():
                mine[k] = mine.get(k, 0.0) + v * len(r.workers)
        return out

    def account(self, seconds: float) -> None:
        held = self.held()
        self.usage = decay_usage(self.usage, held, seconds, self.config.fair_share.half_life)
        waiting = {c.tenant for c in self.queued.values()}
        contended = all(t in waiting for t in self.tenants)
        for tenant, amounts in held.items():
            books = [self.held_seconds.setdefault(tenant, {})]
            if contended:
                books.append(self.contended_seconds.setdefault(tenant, {}))
            for book in books:
                for k, v in amounts.items():
                    book[k] = book.get(k, 0.0) + v * seconds

    def apply(self, now: float, kind: int, job_id: int, attempt: int) -> None:
        spec, outcome = self.spec[job_id], self.jobs[job_id]
        if kind == _SUBMIT:
            self.enqueue(job_id, queued_at=now)
            return
        if kind == _TICK:
            return
        current = self.attempts.get(job_id)
        if current is None or current.number != attempt:
            return  # an attempt that already ended
        del self.attempts[job_id]
        if kind == _FINISH:
            timed_out = spec.duration_s > spec.limit_s
            outcome.state = "timed_out" if timed_out else "succeeded"
            outcome.end = now
            self.timeline.append((now, "timeout" if timed_out else "finish", job_id, ""))
        else:  # a preempted attempt has stopped: lost, queued again with its age
            outcome.preemptions += 1
            self.timeline.append((now, "stop", job_id, ""))
            self.enqueue(job_id, queued_at=spec.submit_time)

    def enqueue(self, job_id: int, queued_at: float) -> None:
        spec = self.spec[job_id]
        self.jobs[job_id].state = "queued"
        self.queued[job_id] = Candidate(
            job_id=job_id,
            tenant=spec.tenant,
            priority=spec.priority,
            resources=spec.resources,
            queued_at=queued_at,
            gang=spec.gang,
            timeout_s=spec.limit_s,
        )
        # wake up when it starts to count as starving, so a reservation is not late
        starving_at = queued_at + self.config.reservation_after
        if starving_at > self.now:
            self.push(starving_at, _TICK, job_id)

    def admit(self, now: float) -> None:
        snapshot = Snapshot(
            now=now,
            workers=self.workers,
            running=[a.running for a in self.attempts.values()],
            candidates=list(self.queued.values()),
            usage=self.usage,
        )
        decision = decide(snapshot, self.config)
        self.decisions += 1
        self.last_decision, self.last_decision_at = decision, now
        for start in decision.start:
            candidate = self.queued.pop(start.job_id)
            spec, outcome = self.spec[start.job_id], self.jobs[start.job_id]
            number = self.attempt_count.get(start.job_id, 0) + 1
            self.attempt_count[start.job_id] = number
            self.attempts[start.job_id] = _Attempt(
                Running(
                    job_id=start.job_id,
                    tenant=spec.tenant,
                    priority=spec.priority,
                    resources=dict(candidate.resources),
                    workers=start.workers,
                    started_at=now,
                    timeout_s=spec.limit_s,
                ),
                number,
            )
            outcome.state = "running"
            outcome.starts.append((now, start.workers))
            if outcome.first_start is None:
                outcome.first_start = now
            self.timeline.append((now, "start", start.job_id, ",".join(start.workers)))
            self.push(now + min(spec.duration_s, spec.limit_s), _FINISH, start.job_id, number)
        for preempt in decision.preempt:
            attempt = self.attempts[preempt.job_id]
            if attempt.running.preempting:
                continue
            attempt.running = replace(attempt.running, preempting=True)
            self.jobs[preempt.job_id].state = "yielding"
            self.timeline.append((now, "preempt", preempt.job_id, preempt.reason))
            self.push(now + self.config.preemption.grace, _STOP, preempt.job_id, attempt.number)
        for job_id, reason in decision.waiting.items():
            reasons = self.jobs[job_id].reasons
            if reason not in reasons and len(reasons) < REASONS_KEPT:
                reasons.append(reason)

    def after_events(self, at: float) -> None:
        """Called once every event time, after admission (the elastic simulation scales its
        pools here); admission ran at ``at`` if ``self.last_decision_at == at``."""

    def run(self, progress: Callable[[int, int], None] | None = None) -> None:
        self.now = self.events[0][0] if self.events else 0.0
        self.start_time = self.now
        total = len(self.jobs)
        settled = 0
        at_this_time = 0
        while self.events:
            at = self.events[0][0]
            if at > self.now:
                self.account(at - self.now)
                self.now = at
                at_this_time = 0
            while self.events and self.events[0][0] == at:
                _, kind, _, job_id, attempt = heapq.heappop(self.events)
                self.apply(at, kind, job_id, attempt)
                if kind == _FINISH and self.jobs[job_id].end == at:
                    settled += 1
            if self.queued:
                self.admit(at)
                at_this_time += 1
                if at_this_time > MAX_DECISIONS_AT_ONE_TIME:
                    raise RuntimeError(f"admission did not settle at t={at:g}s")
            self.after_events(at)
            if progress is not None:
                progress(settled, total)
        self.end_time = self.now

    def result(self, wall_s: float) -> SimulationResult:
        capacity: dict[str, float] = {}
        for w in self.workers:
            for k, v in w.offers.items():
                capacity[k] = capacity.get(k, 0.0) + v
        counted = [r for r in self.config.resources if capacity.get(r, 0.0) > 0]

        def dominant(seconds: Mapping[str, float]) -> float:
            return max((seconds.get(r, 0.0) / capacity[r] for r in counted), default=0.0)

        def shares(book: Mapping[str, Mapping[str, float]]) -> dict[str, float] | None:
            d = {t: dominant(book.get(t, {})) for t in self.tenants}
            total = sum(d.values())
            return {t: v / total for t, v in d.items()} if total > 0 else None

        weights = {t: self.config.queue(t).weight for t in self.tenants}
        weight_total = sum(weights.values())
        share = shares(self.held_seconds) or dict.fromkeys(self.tenants, 0.0)
        contended = shares(self.contended_seconds)
        reports = []
        for t in self.tenants:
            mine = [j for j in self.jobs.values() if j.tenant == t]
            waits = [j.wait_s for j in mine if j.wait_s is not None]
            reports.append(
                TenantReport(
                    tenant=t,
                    weight=weights[t],
                    jobs=len(mine),
                    finished=sum(j.state == "succeeded" for j in mine),
                    timed_out=sum(j.state == "timed_out" for j in mine),
                    never_started=sum(j.first_start is None for j in mine),
                    preemptions=sum(j.preemptions for j in mine),
                    wait_p50_s=percentile(waits, 50),
                    wait_p95_s=percentile(waits, 95),
                    resource_seconds=dict(sorted(self.held_seconds.get(t, {}).items())),
                    share=share[t],
                    weight_share=weights[t] / weight_total,
                    contended_share=None if contended is None else contended[t],
                )
            )
        basis = contended or share
        fairness = jain_index([basis[t] / (weights[t] / weight_total) for t in self.tenants])
        makespan = self.end_time - self.start_time
        utilisation = {
            r: (
                sum(b.get(r, 0.0) for b in self.held_seconds.values()) / (capacity[r] * makespan)
                if makespan > 0
                else 0.0
            )
            for r in sorted(capacity)
        }
        return SimulationResult(
            tenants=reports,
            jain_index=fairness,
            utilisation=utilisation,
            makespan_s=makespan,
            jobs=self.jobs,
            timeline=self.timeline,
            wall_s=wall_s,
            decisions=self.decisions,
        )


def simulate(
    trace: Iterable[TraceJob],
    workers: Sequence[WorkerSlot],
    config: QueueConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Replay ``trace`` on ``workers`` under ``config``; ``progress(done, total)`` after each
    event time."""
    trace = list(trace)
    if not trace:
        raise InvalidRequest("the trace has no jobs")
    if not workers:
        raise InvalidRequest("the pools declare no workers")
    began = time.perf_counter()
    sim = _Simulation(trace, workers, config)
    sim.run(progress)
    return sim.result(time.perf_counter() - began)


def simulate_files(
    trace: str | Path,
    queues: str | Path,
    pools: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """``simulate`` on the three files ``zhuge simulate`` takes."""
    return simulate(load_trace(trace), load_pools(pools), load_queues(queues), progress=progress)


# -- traces from a utilisation series -------------------------------------------------------

CPU_CHOICES = ((1.0, 0.5), (2.0, 0.3), (4.0, 0.2))  # (CPU asked, probability)
MEMORY_PER_CPU = 2.0  # GB
DURATION_SIGMA = 0.8  # of the log of a job's duration: most jobs short, a few long


def read_utilisation(path: str | Path, column: str) -> list[float]:
    """The finite values of ``column`` in a CSV file, in order; ``InvalidRequest`` naming
    the column (and the columns there are) or the line at fault."""
    reader = csv.DictReader(io.StringIO(_read(path, "utilisation")))
    columns = [c.strip() for c in reader.fieldnames or []]
    if column not in columns:
        raise InvalidRequest(
            f"{path}: no column {column!r} (columns: {', '.join(columns) or 'none'})"
        )
    reader.fieldnames = columns
    values = []
    for line, row in enumerate(reader, start=2):
        text = (row.get(column) or "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError as exc:
            raise InvalidRequest(f"{path} line {line}: {column}: not a number: {text!r}") from exc
        if math.isfinite(value):
            values.append(value)
    if len(values) < 2:
        raise InvalidRequest(f"{path}: column {column!r} has fewer than 2 numbers")
    return values


def trace_from_utilisation(
    values: Sequence[float],
    *,
    seed: int,
    step_s: float = 300.0,
    jobs_per_step: float = 10.0,
    duration_s: float = 600.0,
    tenants: Sequence[str] = ("a", "b", "c"),
) -> list[TraceJob]:
    """A job trace whose arrivals follow a utilisation series: row ``t`` of ``values`` is
    the ``step_s`` seconds from ``t × step_s``, in which a Poisson number of jobs arrive,
    ``jobs_per_step × value / mean(values)`` on average, at uniform times. Each job: a tenant
    (the first twice as likely as the second, three times the third…), ``CPU`` 1, 2 or 4
    (half, 30 %, 20 %), 2 GB of memory per CPU, a log-normal duration of mean
    ``duration_s``, priority 0. The same arguments give the same trace."""
    import numpy as np

    if not values:
        raise InvalidRequest("the utilisation series is empty")
    if step_s <= 0 or jobs_per_step <= 0 or duration_s <= 0:
        raise InvalidRequest("step, jobs per step and duration must be more than 0")
    if not tenants:
        raise InvalidRequest("at least one tenant is needed")
    series = np.clip(np.asarray(values, dtype=float), 0.0, None)
    mean = float(series.mean())
    if mean <= 0:
        raise InvalidRequest("the utilisation series is all zero: no arrivals to make")
    rng = np.random.default_rng(seed)
    weights = np.array([1.0 / (i + 1) for i in range(len(tenants))])
    weights /= weights.sum()
    cpus = np.array([c for c, _ in CPU_CHOICES])
    cpu_p = np.array([p for _, p in CPU_CHOICES])
    mu = math.log(duration_s) - DURATION_SIGMA**2 / 2  # so the mean is duration_s
    counts = rng.poisson(jobs_per_step * series / mean)
    jobs: list[TraceJob] = []
    for t, n in enumerate(counts):
        if n == 0:
            continue
        at = np.sort((t + rng.random(n)) * step_s)
        who = rng.choice(len(tenants), size=n, p=weights)
        cpu = rng.choice(cpus, size=n, p=cpu_p)
        lengths = np.maximum(1.0, np.round(rng.lognormal(mu, DURATION_SIGMA, size=n)))
        for i in range(n):
            jobs.append(
                TraceJob(
                    submit_time=round(float(at[i]), 1),
                    tenant=tenants[int(who[i])],
                    CPU=float(cpu[i]),
                    memory_gb=float(cpu[i]) * MEMORY_PER_CPU,
                    duration_s=float(lengths[i]),
                )
            )
    if not jobs:
        raise InvalidRequest("no job arrived: raise --jobs-per-step or use more rows")
    return jobs


def write_trace(jobs: Iterable[TraceJob]) -> str:
    """The trace CSV ``load_trace`` reads back (``gang``/``timeout_s`` only when set)."""
    jobs = list(jobs)
    extra = [c for c in OPTIONAL_COLUMNS if any(_set(j, c) for j in jobs)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*TRACE_COLUMNS, *extra])
    for j in jobs:
        row = [getattr(j, c) for c in TRACE_COLUMNS] + [getattr(j, c) for c in extra]
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _set(job: TraceJob, column: str) -> bool:
    return (job.gang != 1) if column == "gang" else job.timeout_s is not None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}" if value == int(value) and abs(value) < 1e15 else repr(value)
    return str(value)
