"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from zhuge.api.limits import scrub
from zhuge.jobs.model import Job, JobEvent, LogLine, Worker
from zhuge.jobs.queues import MAX_GANG, Why

ResourceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]

MAX_TIMEOUT_S = 30 * 86400.0  # seconds: an attempt's time limit of a month at most


def iso(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


class FromStore(BaseModel):
    """A response body of text from the database. Lone surrogates, which a job's code can
    produce and rows from before the request limits can hold, become U+FFFD: no UTF-8 can
    encode them, and one such row would otherwise fail every listing that includes it."""

    @model_validator(mode="before")
    @classmethod
    def _encodable(cls, data: Any) -> Any:
        return scrub(data)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=64, description="A registered job kind.")
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first.")
    resources: dict[ResourceName, Annotated[float, Field(gt=0, le=1024)]] | None = Field(
        None, description="Dask worker resources, e.g. {'GPU': 1}; default: the kind's."
    )
    max_attempts: int = Field(3, ge=1, le=100, description="Attempts whose code may fail.")
    max_lost: int = Field(
        10,
        ge=1,
        le=1000,
        description="Attempts the infrastructure may lose (worker died, lease lost) before "
        "the job is dead; they spend no max_attempts.",
    )
    gang: int = Field(
        1,
        ge=1,
        le=MAX_GANG,
        description="Copies of the job's resources admitted together on this many distinct "
        "workers, or none.",
    )
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="Seconds after which an attempt is stopped; default: the kind's.",
    )
    placement: Literal["binpack", "spread"] | None = Field(
        None,
        description="binpack: the fullest worker that fits; spread: the emptiest; default: "
        "the queue configuration's.",
    )
    after: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list,
        max_length=100,
        description="Jobs of your tenant that must succeed first: the job waits, blocked, "
        "until they have; a dead or cancelled one cancels it.",
    )


MAX_BATCH = 1000


class JobBatchItem(JobCreate):
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200, description="As the Idempotency-Key header."
    )


class JobBatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobBatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class JobOut(FromStore):
    id: int
    tenant: str
    kind: str
    params: dict[str, Any]
    state: str
    priority: int
    resources: dict[str, float]
    attempt: int
    failures: int
    max_attempts: int
    lost: int
    max_lost: int
    idempotency_key: str | None
    created_at: datetime | None
    updated_at: datetime | None
    not_before: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_expires_at: datetime | None
    worker: str | None
    progress: dict[str, Any] | None
    result: Any
    error: str | None
    traceback: str | None
    cpu_seconds: float
    gpu_seconds: float
    pending_reason: str | None = Field(
        None, description="Why a queued job does not start now, in words."
    )
    gang: int = 1
    timeout_s: float | None = None
    placement: str | None = None
    assigned_workers: list[str] | None = Field(
        None, description="Where admission placed the running attempt (one per gang copy)."
    )
    model_ref: str | None = Field(
        None, description="The registered model reference the job was given (NAME@ALIAS)."
    )
    model_version: str | None = Field(
        None,
        description="The version that reference resolved to as the job started (NAME@VERSION); "
        "later promotions do not change it.",
    )
    duration_seconds: float | None
    artifacts: str | None = Field(
        description="Folder of the committed attempt's outputs (succeeded jobs only)."
    )
    pipeline_id: int | None = Field(None, description="The pipeline it is a step of.")
    step: str | None = Field(None, description="Its step's name in that pipeline.")
    cancelled_by: int | None = Field(
        None, description="The upstream job whose dead or cancelled end cancelled it."
    )
    after: list[int] | None = Field(
        None, description="The jobs it waits (or waited) for; shown by GET /v1/jobs/{id}."
    )

    @classmethod
    def of(cls, job: Job, artifacts_root: str, *, after: list[int] | None = None) -> JobOut:
        return cls(
            pipeline_id=job.pipeline_id,
            step=job.step,
            cancelled_by=job.cancelled_by,
            after=after,
            id=job.id,
            tenant=job.tenant,
            kind=job.kind,
            params=job.params,
            state=job.state.value,
            priority=job.priority,
            resources=job.resources,
            attempt=job.attempt,
            failures=job.failures,
            max_attempts=job.max_attempts,
            lost=job.lost,
            max_lost=job.max_lost,
            idempotency_key=job.idempotency_key,
            created_at=iso(job.created_at),
            updated_at=iso(job.updated_at),
            not_before=iso(job.not_before),
            started_at=iso(job.started_at),
            finished_at=iso(job.finished_at),
            lease_expires_at=iso(job.lease_expires_at),
            worker=job.worker,
            progress=job.progress,
            result=job.result,
            error=job.error,
            traceback=job.traceback,
            cpu_seconds=job.cpu_seconds,
            gpu_seconds=job.gpu_seconds,
            pending_reason=job.pending_reason,
            gang=job.gang,
            timeout_s=job.timeout_s,
            placement=job.placement,
            assigned_workers=job.assigned_workers,
            model_ref=job.model_ref,
            model_version=job.model_version,
            duration_seconds=job.duration_seconds,
            artifacts=(
                f"{artifacts_root.rstrip('/')}/{job.artifact_prefix()}"
                if job.state.value == "succeeded"
                else None
            ),
        )


class JobList(BaseModel):
    jobs: list[JobOut]
    next_before_id: int | None


class JobBatchOut(BaseModel):
    jobs: list[JobOut]
    created: list[bool] = Field(description="Per job: False where an idempotency key replayed.")


class WhyOut(FromStore):
    """Where a job stands: a queued job's place in the queues and why it waits, a running
    job's workers, a finished job's end; ``summary`` says it in words."""

    job_id: int
    tenant: str
    state: str
    summary: str
    priority: int
    effective_priority: float | None = Field(description="With aging (queued jobs).")
    resources: dict[str, float]
    gang: int
    timeout_s: float | None
    placement: str | None
    pending_reason: str | None
    position_in_tenant: int | None = Field(description="1: next in its tenant's queue.")
    tenant_queued: int | None
    position_in_cluster: int | None = Field(description="1: first of all queued jobs.")
    cluster_queued: int | None
    workers: list[str]
    started_at: datetime | None
    finished_at: datetime | None
    preempt_requested_at: datetime | None
    error: str | None

    @classmethod
    def of(cls, why: Why) -> WhyOut:
        data = dataclasses.asdict(why)
        for name in ("started_at", "finished_at", "preempt_requested_at"):
            data[name] = iso(data[name])
        return cls.model_validate(data)


class EventOut(FromStore):
    at: datetime | None
    attempt: int
    from_state: str | None
    to_state: str
    message: str
    reason: str | None = Field(
        None,
        description="Why the attempt was lost: lease_lost, worker_died, host_unreachable, "
        "gang_not_ready, preempted or drained.",
    )

    @classmethod
    def of(cls, e: JobEvent) -> EventOut:
        return cls(
            at=iso(e.at),
            attempt=e.attempt,
            from_state=e.from_state.value if e.from_state else None,
            to_state=e.to_state.value,
            message=e.message,
            reason=e.reason,
        )


class LogOut(FromStore):
    seq: int
    attempt: int
    at: datetime | None
    line: str

    @classmethod
    def of(cls, line: LogLine) -> LogOut:
        return cls(seq=line.seq, attempt=line.attempt, at=iso(line.at), line=line.line)


class LogsOut(BaseModel):
    job_id: int
    state: str
    lines: list[LogOut]
    next_after: int


class WorkerOut(BaseModel):
    address: str
    resources: dict[str, float]
    running: int
    last_seen: datetime | None

    @classmethod
    def of(cls, w: Worker) -> WorkerOut:
        return cls(
            address=w.address, resources=w.resources, running=w.running, last_seen=iso(w.last_seen)
        )


class StatusOut(BaseModel):
    states: dict[str, int]
    queue_depth: int
    by_kind: dict[str, dict[str, int]]
    workers: list[WorkerOut]


class KindOut(BaseModel):
    name: str
    description: str
    resources: dict[str, float]
    params_schema: dict[str, Any]


class ErrorDetail(BaseModel):
    type: str = Field(description="The error's class in zhuge.errors, e.g. InvalidParams.")
    message: str
    details: Any = Field(None, description="For 413 and 422: a list of {loc, msg, type}.")


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorDetail
