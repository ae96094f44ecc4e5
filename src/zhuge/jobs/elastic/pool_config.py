"""The pools in force and the providers a server configures: its own file
(``ZHUGE_POOLS_FILE``: providers, and pools until an admin applies others), the pools applied
with ``zhuge pools apply`` (``pool_config`` row 1: sizes, policies and prices naming
configured providers only), and the pools the autoscaler last used, ``zhuge up``'s ``local``
pool included (row 0, what ``zhuge pools ls`` and the check at submit read).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
import yaml

from zhuge.errors import ConfigError, InvalidRequest, ZhugeError
from zhuge.jobs import schema
from zhuge.jobs.elastic.pools import PoolsConfig, PoolSpec
from zhuge.jobs.elastic.providers import ProviderConfig, parse_providers

if TYPE_CHECKING:
    from zhuge.config import Settings
    from zhuge.jobs.model import Worker
    from zhuge.jobs.store import JobStore

log = logging.getLogger(__name__)

LOCAL_POOL = "local"
P = schema.pool_config


# -- the server's file and the pools in force -----------------------------------------------


@dataclass(frozen=True)
class ServerPools:
    """What the server's own file (``ZHUGE_POOLS_FILE``) configures."""

    providers: dict[str, ProviderConfig]
    pools: PoolsConfig | None
    path: Path | None = None


_server_cache: dict[tuple[str, float], ServerPools] = {}


def server_pools(settings: Settings) -> ServerPools:
    """The server file's providers (``local`` always) and pools; ``ConfigError`` saying what
    is wrong with it. Read again when the file changes."""
    path = settings.pools_file
    if path is None:
        return ServerPools(parse_providers(None), None)
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError as exc:
        raise ConfigError(f"ZHUGE_POOLS_FILE {path}: {exc.strerror}") from exc
    cached = _server_cache.get(key)
    if cached is not None:
        return cached
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"ZHUGE_POOLS_FILE {path}: not a readable YAML file: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"ZHUGE_POOLS_FILE {path}: a mapping with providers: and pools:")
    data = dict(data)
    try:
        providers = parse_providers(data.pop("providers", None))
    except ConfigError as exc:
        raise ConfigError(f"ZHUGE_POOLS_FILE {path}: {exc.message}") from exc
    pools = None
    if data:
        try:
            pools = PoolsConfig.parse(data)
        except InvalidRequest as exc:
            raise ConfigError(f"ZHUGE_POOLS_FILE {path}: {exc.message}") from exc
        _check_providers(pools, providers, where=f"ZHUGE_POOLS_FILE {path}: ", error=ConfigError)
    out = ServerPools(providers, pools, path)
    _server_cache.clear()
    _server_cache[key] = out
    return out


def _check_providers(
    pools: PoolsConfig,
    providers: Mapping[str, ProviderConfig],
    *,
    where: str = "",
    error: type[Exception] = InvalidRequest,
) -> None:
    for i, pool in enumerate(pools.pools):
        if pool.provider not in providers:
            raise error(
                f"{where}pools.{i}.provider: {pool.provider!r} is not a provider configured "
                f"on this server (configured: {', '.join(sorted(providers))}); providers are "
                "set in the server's pools file (ZHUGE_POOLS_FILE) only"
            )


@contextmanager
def server_file_hidden() -> Iterator[None]:
    """For the API: a broken server file is the operator's to read about in the server's
    log, not a token holder's (its path and contents stay on the server)."""
    try:
        yield
    except ConfigError as exc:
        log.error("%s", exc.message)
        raise ZhugeError(
            "the server's pools configuration is not valid; its operator finds why in the "
            "log of this API process"
        ) from None


@dataclass(frozen=True)
class AppliedPools:
    document: str
    config: PoolsConfig
    applied_at: float
    applied_by: str | None


def apply_pools(
    store: JobStore, settings: Settings, document: str, *, applied_by: str | None
) -> PoolsConfig:
    """Make a pools file the pools in force (``zhuge pools apply``): sizes and policies of
    pools whose providers the server configures. Refused, and nothing changed, when it
    does not parse, names a field wrongly, carries a ``providers:`` section, or names a
    provider the server does not configure."""
    from zhuge.jobs.store import transaction

    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"pools file is not valid YAML: {exc}") from exc
    if isinstance(data, Mapping) and "providers" in data:
        raise InvalidRequest(
            "providers: providers are configured in the server's own pools file only, never "
            "through the API (an import path or a command is code); remove the section and "
            "name a configured provider in each pool"
        )
    config = PoolsConfig.parse(data if isinstance(data, Mapping) else document)
    _check_providers(config, server_pools(settings).providers)
    now = store.clock()
    with transaction(store.engine) as conn:
        conn.execute(P.delete().where(P.c.id == APPLIED))
        conn.execute(
            P.insert().values(
                id=APPLIED,
                document=document,
                config=config.model_dump(mode="json"),
                applied_at=now,
                applied_by=applied_by,
            )
        )
    store.forget_offer()
    return config


APPLIED, IN_FORCE = 1, 0  # pool_config rows: as applied; as the autoscaler uses them


def applied_pools(store: JobStore, *, row_id: int = APPLIED) -> AppliedPools | None:
    """The pools applied with ``zhuge pools apply`` (``row_id=IN_FORCE``: the pools the
    autoscaler last used, the embedded ``local`` pool included; its ``document`` says
    where they came from)."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(P).where(P.c.id == row_id)).first()
    if row is None:
        return None
    return AppliedPools(
        row.document, PoolsConfig.model_validate(row.config), row.applied_at, row.applied_by
    )


def pools_in_force(
    store: JobStore, settings: Settings, local: PoolSpec | None = None
) -> tuple[PoolsConfig | None, str]:
    """The pools in force and where they come from (``applied``, ``server file``,
    ``zhuge up``, or ``none``); ``local`` is the embedded pool, added unless one is named so."""
    applied = applied_pools(store)
    if applied is not None:
        config, source = applied.config, "applied"
    else:
        config, source = server_pools(settings).pools, "server file"
    if local is not None and (config is None or all(p.name != LOCAL_POOL for p in config.pools)):
        pools = [*(config.pools if config else []), local]
        return PoolsConfig(pools=pools), source if config else "zhuge up"
    return config, source if config else "none"


def publish_in_force(store: JobStore, config: PoolsConfig, source: str, holder: str) -> None:
    """Record the pools the autoscaler uses (``pools ls`` shows them; a job asking for what
    only a pool at zero offers is accepted at submit)."""
    from zhuge.jobs.store import transaction

    with transaction(store.engine) as conn:
        conn.execute(P.delete().where(P.c.id == IN_FORCE))
        conn.execute(
            P.insert().values(
                id=IN_FORCE,
                document=source,
                config=config.model_dump(mode="json"),
                applied_at=store.clock(),
                applied_by=holder[:32],
            )
        )
    store.forget_offer()


def pool_workers(store: JobStore) -> list[Worker]:
    """One empty worker of each pool in force: what the pools can offer a job even while
    they are at zero (``JobStore.recorded_workers``)."""
    from zhuge.jobs.model import Worker

    in_force = applied_pools(store, row_id=IN_FORCE) or applied_pools(store)
    if in_force is None:
        return []
    return [
        Worker(f"~pool:{p.name}", dict(p.resources), 0.0)
        for p in in_force.config.pools
        if p.max > 0
    ]


def local_pool(workers: int, resources: Mapping[str, float]) -> PoolSpec:
    """``zhuge up --workers N`` as a pool: ``local``, ``min = max = N``."""
    return PoolSpec.model_validate(
        {
            "name": LOCAL_POOL,
            "resources": dict(resources),
            "min": workers,
            "max": workers,
            "startup_s": 0,
            "provider": "local",
            "policy": {"name": "fixed-peak", "workers": workers},
        }
    )
