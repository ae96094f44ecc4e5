"""Every error zhuge raises on purpose.

    ZhugeError
    ├── ConfigError              a setting is missing or malformed
    ├── InvalidRequest           the caller asked for something that cannot be done
    │   ├── UnknownKind          no job kind of that name
    │   ├── InvalidParams        parameters do not fit the kind's model (carries the field errors)
    │   ├── DataError            input data is unusable (no numeric column, unknown column, ...)
    │   ├── InvalidPipeline      a pipeline file that cannot run (a cycle, an unknown step, ...)
    │   └── PayloadTooLarge      a request or upload over its size limit
    ├── AuthError                no token, or an unknown, revoked or expired one
    ├── Forbidden                a valid token whose role may not do this
    ├── NotFound
    │   ├── JobNotFound
    │   ├── ModelNotFound        an artifact or model that does not exist or fails verification
    │   ├── ArtifactNotFound     no file of that name in a job's artifact folder
    │   ├── DatasetNotFound      no dataset of that name (and digest) in the caller's tenant
    │   ├── ConnectionNotFound   no connection of that name that the caller may use
    │   ├── PipelineNotFound     no pipeline of that id in the caller's tenant
    │   ├── TenantNotFound
    │   └── TokenNotFound        no token of that id (tokens are named by id, never by secret)
    ├── Conflict
    │   ├── IdempotencyConflict  same Idempotency-Key, different request
    │   └── InvalidTransition    a state change the job model does not allow
    ├── StoreError               the database failed underneath us
    │   └── SchemaMismatch       the database's schema is older or newer than this zhuge's
    ├── QuotaExceeded            a tenant asked for more than its share
    ├── MissingDependency        an optional extra (torch, cuML, s3fs) is not installed
    ├── WaitTimeout              a job did not finish within the time a caller would wait
    └── ClientError              the HTTP API could not be reached, or answered unexpectedly

HTTP status codes for these are chosen in one place: ``zhuge.api.errors``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactNotFound",
    "AuthError",
    "ClientError",
    "ConfigError",
    "Conflict",
    "ConnectionNotFound",
    "DataError",
    "DatasetNotFound",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidParams",
    "InvalidPipeline",
    "InvalidRequest",
    "InvalidTransition",
    "JobNotFound",
    "MissingDependency",
    "ModelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PipelineNotFound",
    "QuotaExceeded",
    "SchemaMismatch",
    "StoreError",
    "TenantNotFound",
    "TokenNotFound",
    "UnknownKind",
    "WaitTimeout",
    "ZhugeError",
]


class ZhugeError(Exception):
    """Base class of every error zhuge raises on purpose."""

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(ZhugeError):
    pass


class InvalidRequest(ZhugeError):
    pass


class UnknownKind(InvalidRequest):
    pass


class InvalidParams(InvalidRequest):
    """``details`` is a list of ``{"loc": [...], "msg": str, "type": str}`` as pydantic gives."""


class DataError(InvalidRequest):
    pass


class InvalidPipeline(InvalidRequest):
    """``details`` is a list of ``{"loc": [...], "msg": str, "type": str}``: the step and field."""


class PayloadTooLarge(InvalidRequest):
    pass


class AuthError(ZhugeError):
    pass


class Forbidden(ZhugeError):
    """A valid token whose role may not do this (a member asking for an admin's action)."""


class NotFound(ZhugeError):
    pass


class JobNotFound(NotFound):
    pass


class ModelNotFound(NotFound):
    pass


class ArtifactNotFound(NotFound):
    pass


class DatasetNotFound(NotFound):
    pass


class ConnectionNotFound(NotFound):
    pass


class PipelineNotFound(NotFound):
    pass


class TenantNotFound(NotFound):
    pass


class TokenNotFound(NotFound):
    pass


class Conflict(ZhugeError):
    pass


class IdempotencyConflict(Conflict):
    pass


class InvalidTransition(Conflict):
    pass


class StoreError(ZhugeError):
    pass


class SchemaMismatch(StoreError):
    """The database was written by another version of zhuge: upgrade it, or zhuge."""


class QuotaExceeded(ZhugeError):
    pass


class MissingDependency(ZhugeError):
    pass


class WaitTimeout(ZhugeError):
    pass


class ClientError(ZhugeError):
    def __init__(self, message: str, *, status_code: int | None = None, details: Any = None):
        super().__init__(message, details=details)
        self.status_code = status_code
