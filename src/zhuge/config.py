"""Settings: the one place that reads ``ZHUGE_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from zhuge.errors import ConfigError

DEFAULT_PORT = 8470
DEFAULT_HOST = "127.0.0.1"
MiB = 1024 * 1024  # bytes
GiB = 1024 * MiB


def _float(env: dict[str, str], name: str, default: float, *, allow_zero: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number") from exc
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def _paths(env: dict[str, str], name: str) -> tuple[Path, ...]:
    """Absolute folders, separated by ``os.pathsep`` (``:`` on POSIX)."""
    paths = []
    for raw in filter(None, (p.strip() for p in (env.get(name) or "").split(os.pathsep))):
        path = Path(raw).expanduser()
        if not path.is_absolute():
            raise ConfigError(f"{name}: {raw!r} is not an absolute path")
        paths.append(path)
    return tuple(paths)


def _pools_file(env: dict[str, str]) -> Path | None:
    raw = env.get("ZHUGE_POOLS_FILE")
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"ZHUGE_POOLS_FILE={raw!r}: no such file")
    return path.resolve()


@dataclass(frozen=True)
class Settings:
    """Everything a zhuge process needs to know, read once at start-up.

    ``home`` holds the SQLite database, the artifacts folder and the admin token unless
    ``db_url`` / ``artifacts_url`` point elsewhere.
    """

    home: Path = field(default_factory=lambda: Path(".zhuge").resolve())
    db_url: str | None = None
    artifacts_url: str | None = None
    dask_address: str | None = None
    # TLS between hosts for Dask traffic (zhuge.jobs.dask_tls): a CA file, and this host's
    # certificate and key signed by it; all three or none
    dask_tls_ca: str | None = None
    dask_tls_cert: str | None = None
    dask_tls_key: str | None = field(default=None, repr=False)
    data_roots: tuple[Path, ...] = ()
    """Server-side folders every tenant's jobs may read directly (each tenant may have more);
    checked after resolving ``..`` and symlinks. Empty: only datasets and connections."""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    lease_seconds: float = 30.0  # a running job's lease; renewed by heartbeats
    heartbeat_seconds: float = 5.0  # how often a running job renews its lease
    retry_base_seconds: float = 2.0  # first retry delay; doubles per failure, with jitter
    retry_max_seconds: float = 600.0
    poll_seconds: float = 0.5  # scheduler's idle poll; submissions in-process wake it at once
    chain_seconds: float = 5.0
    """After its job, a worker task claims and runs the next queued job needing the same
    resources itself, for up to this long, instead of a round trip through the scheduler
    and Dask; admission decides each job it takes, as for any other. This is what lets
    short jobs run at hundreds per second. Each end of a chain costs its worker a round trip
    (a scheduler's turn, a new Dask task): tens of milliseconds on a quiet machine, tenths
    of a second under a burst of submissions. 0 turns it off."""
    gang_ready_seconds: float = 120.0
    """A gang job (``--gang N``) whose attempt has not started this long after admission
    booked its N workers gives them back and is queued again with backoff (lost,
    ``gang_not_ready``): booked capacity never waits for ever on a worker that does not run
    its part."""
    pools_file: Path | None = None
    """The server's pools file (``ZHUGE_POOLS_FILE``): its ``providers:`` (what may start
    and stop workers: code, so configured here only, never through the API) and the pools
    in force until ``zhuge pools apply`` replaces them (``zhuge.jobs.elastic``)."""
    autoscale_seconds: float = 10.0
    """How often the autoscaler decides each pool's size (one scheduler at a time); 0 turns
    it off (no pools are scaled and no up-time is recorded)."""
    metrics_token: str | None = field(default=None, repr=False)
    """When set, /metrics answers only ``Authorization: Bearer <metrics_token>``."""
    max_body_bytes: int = 16 * MiB
    """A request body, uploads aside; a batch of 1,000 ordinary jobs fits with room."""
    max_params_bytes: int = 1 * MiB  # one job's params, as canonical JSON
    max_upload_bytes: int = 10 * GiB  # one upload (under /v1/datasets), counted as it streams
    max_json_depth: int = 64  # containers nested in a JSON body, or in a job's params

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("ZHUGE_HOME") or ".zhuge").expanduser().resolve()
        port_raw = env.get("ZHUGE_PORT")
        try:
            port = int(port_raw) if port_raw else DEFAULT_PORT
        except ValueError as exc:
            raise ConfigError(f"ZHUGE_PORT={port_raw!r} is not a port number") from exc
        settings = cls(
            home=home,
            db_url=env.get("ZHUGE_DB_URL") or None,
            artifacts_url=env.get("ZHUGE_ARTIFACTS_URL") or None,
            dask_address=env.get("ZHUGE_DASK_ADDRESS") or None,
            dask_tls_ca=env.get("ZHUGE_DASK_TLS_CA") or None,
            dask_tls_cert=env.get("ZHUGE_DASK_TLS_CERT") or None,
            dask_tls_key=env.get("ZHUGE_DASK_TLS_KEY") or None,
            data_roots=_paths(env, "ZHUGE_DATA_ROOTS"),
            host=env.get("ZHUGE_HOST") or DEFAULT_HOST,
            port=port,
            lease_seconds=_float(env, "ZHUGE_LEASE_SECONDS", 30.0),
            heartbeat_seconds=_float(env, "ZHUGE_HEARTBEAT_SECONDS", 5.0),
            retry_base_seconds=_float(env, "ZHUGE_RETRY_BASE_SECONDS", 2.0),
            retry_max_seconds=_float(env, "ZHUGE_RETRY_MAX_SECONDS", 600.0),
            poll_seconds=_float(env, "ZHUGE_POLL_SECONDS", 0.5),
            chain_seconds=_float(env, "ZHUGE_CHAIN_SECONDS", 5.0, allow_zero=True),
            gang_ready_seconds=_float(env, "ZHUGE_GANG_READY_SECONDS", 120.0),
            pools_file=_pools_file(env),
            autoscale_seconds=_float(env, "ZHUGE_AUTOSCALE_SECONDS", 10.0, allow_zero=True),
            metrics_token=env.get("ZHUGE_METRICS_TOKEN") or None,
            max_body_bytes=int(_float(env, "ZHUGE_MAX_BODY_BYTES", 16 * MiB)),
            max_params_bytes=int(_float(env, "ZHUGE_MAX_PARAMS_BYTES", 1 * MiB)),
            max_upload_bytes=int(_float(env, "ZHUGE_MAX_UPLOAD_BYTES", 10 * GiB)),
            max_json_depth=int(_float(env, "ZHUGE_MAX_JSON_DEPTH", 64)),
        )
        if overrides:
            settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        if settings.heartbeat_seconds >= settings.lease_seconds:
            raise ConfigError(
                f"heartbeat interval ({settings.heartbeat_seconds}s) must be shorter than the "
                f"lease ({settings.lease_seconds}s), or every running job would lose its lease"
            )
        return settings

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'zhuge.db'}"

    @property
    def artifacts_root(self) -> str:
        return self.artifacts_url or (self.home / "artifacts").as_uri()

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
