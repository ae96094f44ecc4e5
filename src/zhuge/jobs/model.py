"""The job record as the rest of the code sees it: a frozen dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from zhuge.jobs.states import TERMINAL, JobState


@dataclass(frozen=True)
class Job:
    id: int
    tenant: str
    kind: str
    params: dict[str, Any]
    state: JobState
    priority: int = 0
    resources: dict[str, float] = field(default_factory=dict)
    attempt: int = 0  # number of the latest attempt started; the fencing token of its writes
    failures: int = 0  # attempts whose code raised, counted against max_attempts
    max_attempts: int = 3
    lost: int = 0  # attempts the infrastructure lost involuntarily, counted against max_lost
    max_lost: int = 10
    idempotency_key: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    not_before: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    worker: str | None = None
    progress: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    pending_reason: str | None = None  # why a queued job does not start now
    gang: int = 1  # copies admitted together on distinct workers, or none
    timeout_s: float | None = None  # every attempt is stopped after this long
    placement: str | None = None  # binpack | spread; None: the queue configuration's
    assigned_workers: list[str] | None = None  # where admission placed the running attempt
    preempt_requested_at: float | None = None  # asked to yield its place (a reclaim)
    pipeline_id: int | None = None  # the pipeline it is a step of (zhuge.jobs.pipelines)
    step: str | None = None  # its step's name in that pipeline
    cancelled_by: int | None = None  # the upstream job whose dead or cancelled end cancelled it
    model_ref: str | None = None  # the registry reference given (model_from NAME@ALIAS)
    model_version: str | None = None  # the version it resolved to as the job started

    def evolve(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def artifact_prefix(self, attempt: int | None = None) -> str:
        """Where an attempt writes its outputs, relative to the artifacts root."""
        return f"jobs/{self.id}/attempt-{attempt if attempt is not None else self.attempt}"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's id, tenant and role.

    ``admin`` is platform-wide (tenants, tokens, connections, every tenant's jobs);
    ``member`` acts on its own tenant only."""

    token_id: str
    tenant: str
    role: str = "member"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def scope(self) -> str | None:
        """The tenant its reads are limited to; None (every tenant) for an admin."""
        return None if self.is_admin else self.tenant


@dataclass(frozen=True)
class JobEvent:
    job_id: int
    at: float
    attempt: int
    from_state: JobState | None
    to_state: JobState
    message: str = ""
    reason: str | None = None  # a lost attempt's states.LostReason


@dataclass(frozen=True)
class LogLine:
    seq: int
    job_id: int
    attempt: int
    at: float
    line: str


@dataclass(frozen=True)
class Worker:
    address: str
    resources: dict[str, float]
    last_seen: float
    scheduler: str = ""
    running: int = 0
