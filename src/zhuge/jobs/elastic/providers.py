"""Providers: what starts and stops a pool's workers, behind one small interface.

    scale_to(n)       ask for n workers in this pool (starting ones count)
    workers()         the addresses of this pool's workers that are up now
    retire(worker)    stop this (idle, drained) worker for good

A provider is configured **only in the server's own file** (``ZHUGE_POOLS_FILE``, its
``providers:`` section), never through the API: an import path or a command is code. A pools
file applied with ``zhuge pools apply`` only *names* one. The types:

- ``local``: worker processes on this machine, in the embedded Dask cluster ``zhuge up``
  starts (the default, and what the tests use). Each is named ``<pool>-<n>`` and advertises
  its pool's ``resources`` (``CPU`` is also its thread count).
- ``dask-cluster``: any Dask cluster manager with ``scale(n)`` (dask-jobqueue's
  ``SLURMCluster``, dask-kubernetes' ``KubeCluster``, dask-cloudprovider), built from
  ``cluster`` (``module:Class``) and ``options`` (keyword arguments). zhuge's executor must
  submit to that cluster's scheduler (``ZHUGE_DASK_ADDRESS``): see docs/elastic.md.
- ``command``: argv lists run without a shell. ``add`` starts one worker that joins
  ``ZHUGE_DASK_ADDRESS`` under the name ``ZHUGE_WORKER_NAME`` advertising
  ``ZHUGE_WORKER_RESOURCES`` (for example ``zhuge worker "$ZHUGE_DASK_ADDRESS" --name
  "$ZHUGE_WORKER_NAME" ...`` on a fresh VM); ``remove`` stops the one at
  ``ZHUGE_WORKER_ADDRESS`` / ``ZHUGE_WORKER_NAME``. Workers are told apart by their Dask
  name, ``<pool>-<n>``.

Workers no provider runs (``zhuge worker`` on a host) form the unmanaged ``static`` pool.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from zhuge.errors import ConfigError

log = logging.getLogger(__name__)

PROVIDER_TYPES = ("local", "dask-cluster", "command")
COMMAND_TIMEOUT_SECONDS = 300.0  # an add or remove command that runs longer is killed


class Provider(Protocol):
    """What the autoscaler asks of a pool's provider."""

    pool: str

    def scale_to(self, n: int) -> None: ...

    def workers(self) -> list[str]: ...

    def retire(self, worker: str) -> None: ...


@dataclass(frozen=True)
class ProviderConfig:
    """One entry of the server file's ``providers:`` section."""

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, entry: Any) -> ProviderConfig:
        where = f"providers.{name}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: a mapping with a type ({', '.join(PROVIDER_TYPES)})")
        entry = dict(entry)
        kind = entry.pop("type", None)
        if kind not in PROVIDER_TYPES:
            raise ConfigError(f"{where}.type: one of {', '.join(PROVIDER_TYPES)}, not {kind!r}")
        allowed = {"local": set(), "dask-cluster": {"cluster", "options"},
                   "command": {"add", "remove", "env"}}[kind]  # fmt: skip
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: not a setting of a {kind} provider")
        if kind == "dask-cluster":
            target = entry.get("cluster")
            if not isinstance(target, str) or ":" not in target:
                raise ConfigError(f"{where}.cluster: an import path, module:Class")
            if not isinstance(entry.get("options", {}), Mapping):
                raise ConfigError(f"{where}.options: keyword arguments, as a mapping")
        if kind == "command":
            for key in ("add", "remove"):
                argv = entry.get(key)
                if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
                    raise ConfigError(f"{where}.{key}: a command as a list of words")
        return cls(name, kind, entry)


def parse_providers(section: Any) -> dict[str, ProviderConfig]:
    """The ``providers:`` section of the server's file; ``local`` is always there."""
    out = {"local": ProviderConfig("local", "local")}
    if section is None:
        return out
    if not isinstance(section, Mapping):
        raise ConfigError("providers: a mapping of provider names to their settings")
    for name, entry in section.items():
        out[str(name)] = ProviderConfig.parse(str(name), entry)
    return out


# -- naming workers -------------------------------------------------------------------------


def worker_name(pool: str, n: int) -> str:
    return f"{pool}-{n}"


def named_workers(scheduler_info: Mapping[str, Any], names: set[str]) -> list[str]:
    """Addresses of the workers whose Dask name is one of ``names``."""
    workers = scheduler_info.get("workers", {}) or {}
    return sorted(a for a, w in workers.items() if str(w.get("name")) in names)


def _next_number(pool: str, taken: set[str]) -> int:
    n = 0
    while worker_name(pool, n) in taken:
        n += 1
    return n


# -- local ----------------------------------------------------------------------------------


class LocalProvider:
    """Worker processes in the embedded ``LocalCluster`` (a Dask ``SpecCluster``): one spec
    entry per worker, named ``<pool>-<n>``. Growing adds entries; ``retire`` removes one and
    the cluster closes its worker. Non-blocking: the cluster starts and stops workers on its
    own event loop, and ``workers()`` lists those that joined.

    ``adopt``: the workers ``zhuge up --workers N`` started itself (named 0..N-1) belong to
    this pool too (the embedded ``local`` pool)."""

    def __init__(
        self,
        cluster: Any,
        pool: str,
        resources: Mapping[str, float] | None,
        *,
        adopt: bool = False,
    ) -> None:
        self.cluster = cluster
        self.pool = pool
        self.resources = dict(resources or {})
        self.adopt = adopt
        self._lock = threading.Lock()

    def _mine(self) -> list[Any]:
        prefix = f"{self.pool}-"
        return [
            name
            for name in list(self.cluster.worker_spec)
            if str(name).startswith(prefix) or (self.adopt and isinstance(name, int))
        ]

    def _spec(self, name: str) -> dict[str, Any]:
        spec = copy.copy(self.cluster.new_spec)
        options = dict(spec.get("options", {}))
        if self.resources:
            options["resources"] = dict(self.resources)
            options["nthreads"] = max(1, int(self.resources.get("CPU", 1)))
        options["name"] = name
        spec["options"] = options
        return spec

    def scale_to(self, n: int) -> None:
        with self._lock:
            mine = self._mine()
            taken = {str(x) for x in self.cluster.worker_spec}
            if len(mine) < n:
                for _ in range(n - len(mine)):
                    name = worker_name(self.pool, _next_number(self.pool, taken))
                    taken.add(name)
                    self.cluster.worker_spec[name] = self._spec(name)
            elif len(mine) > n:
                # workers not started yet go first, then the newest
                joined = {str(w.get("name")) for w in self._info().get("workers", {}).values()}
                order = sorted(mine, key=lambda x: (str(x) in joined, str(x)), reverse=False)
                for name in order[: len(mine) - n]:
                    del self.cluster.worker_spec[name]
            self.cluster.loop.add_callback(self.cluster._correct_state)

    def _info(self) -> Mapping[str, Any]:
        return self.cluster.scheduler_info or {}

    def workers(self) -> list[str]:
        return named_workers(self._info(), {str(x) for x in self._mine()})

    def requested(self) -> int:
        """Workers asked for, started or not (the pool's size as the provider sees it)."""
        return len(self._mine())

    def retire(self, worker: str) -> None:
        info = self._info().get("workers", {}).get(worker)
        if info is None:
            return
        name = info.get("name")
        with self._lock:
            for key in list(self.cluster.worker_spec):
                if str(key) == str(name):
                    del self.cluster.worker_spec[key]
            self.cluster.loop.add_callback(self.cluster._correct_state)


# -- dask-cluster ---------------------------------------------------------------------------


def import_object(path: str) -> Any:
    module, _, name = path.partition(":")
    try:
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {path!r}: {exc}") from exc
    return target


class DaskClusterProvider:
    """A Dask cluster manager with ``scale(n)``, built once from the server's configuration.
    Its workers are every worker of that cluster: give each pool its own manager."""

    def __init__(self, pool: str, cluster: str, options: Mapping[str, Any] | None = None) -> None:
        self.pool = pool
        self.path = cluster
        self.options = dict(options or {})
        self._cluster: Any = None
        self._size = 0

    @property
    def cluster(self) -> Any:
        if self._cluster is None:
            self._cluster = import_object(self.path)(**self.options)
        return self._cluster

    def scale_to(self, n: int) -> None:
        self._size = n
        self.cluster.scale(n)

    def workers(self) -> list[str]:
        info = getattr(self.cluster, "scheduler_info", None) or {}
        return sorted((info.get("workers") or {}).keys())

    def requested(self) -> int:
        return max(self._size, len(self.workers()))

    def retire(self, worker: str) -> None:
        cluster = self.cluster
        info = (getattr(cluster, "scheduler_info", None) or {}).get("workers", {})
        name = (info.get(worker) or {}).get("name", worker)
        if hasattr(cluster, "scale_down"):
            cluster.sync(cluster.scale_down, [name])  # SpecCluster: that worker, not any
        else:
            cluster.scale(max(0, len(self.workers()) - 1))
        self._size = max(0, self._size - 1)


# -- command --------------------------------------------------------------------------------


Runner = Callable[[Sequence[str], Mapping[str, str]], None]


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Run a configured command without a shell; a failure is logged, not raised (the next
    interval decides again)."""
    try:
        done = subprocess.run(
            list(argv),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("provider command %s failed: %s", argv[0], exc)
        return
    if done.returncode != 0:
        log.warning(
            "provider command %s exited %s: %s", argv[0], done.returncode, done.stderr[-500:]
        )


class CommandProvider:
    """Adds and removes workers with configured commands; tells its workers apart by their
    Dask names (``<pool>-<n>``), read from ``scheduler_info`` (the executor's client)."""

    def __init__(
        self,
        pool: str,
        resources: Mapping[str, float],
        *,
        add: Sequence[str],
        remove: Sequence[str],
        scheduler_info: Callable[[], Mapping[str, Any]],
        dask_address: str = "",
        env: Mapping[str, str] | None = None,
        runner: Runner = run_command,
    ) -> None:
        self.pool = pool
        self.resources = dict(resources)
        self.add, self.remove = list(add), list(remove)
        self.scheduler_info = scheduler_info
        self.dask_address = dask_address
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.runner = runner
        self._asked: set[str] = set()  # names started, joined or not yet

    def _joined(self) -> dict[str, str]:
        prefix = f"{self.pool}-"
        workers = (self.scheduler_info() or {}).get("workers", {}) or {}
        return {
            str(w.get("name")): a
            for a, w in workers.items()
            if str(w.get("name")).startswith(prefix)
        }

    def _env(self, name: str, address: str = "") -> dict[str, str]:
        from zhuge.jobs.executor import dask_resources

        return {
            **self.env,
            "ZHUGE_POOL": self.pool,
            "ZHUGE_WORKER_NAME": name,
            "ZHUGE_WORKER_ADDRESS": address,
            "ZHUGE_WORKER_RESOURCES": dask_resources(self.resources),
            "ZHUGE_DASK_ADDRESS": self.dask_address,
        }

    def scale_to(self, n: int) -> None:
        joined = self._joined()
        self._asked |= set(joined)
        missing = n - len(self._asked)
        for _ in range(max(0, missing)):
            name = worker_name(self.pool, _next_number(self.pool, self._asked))
            self._asked.add(name)
            self.runner(self.add, self._env(name))

    def workers(self) -> list[str]:
        return sorted(self._joined().values())

    def requested(self) -> int:
        return len(self._asked | set(self._joined()))

    def retire(self, worker: str) -> None:
        name = next((n for n, a in self._joined().items() if a == worker), None)
        if name is None:
            return
        self.runner(self.remove, self._env(name, worker))
        self._asked.discard(name)


def make_provider(
    config: ProviderConfig,
    pool: str,
    resources: Mapping[str, float],
    *,
    cluster: Any = None,
    scheduler_info: Callable[[], Mapping[str, Any]] | None = None,
    dask_address: str = "",
    adopt: bool = False,
) -> Provider:
    """The provider of one pool, from the server's configuration. ``cluster``: the embedded
    LocalCluster (a ``local`` provider needs one: ``zhuge up`` without ``--no-dask``)."""
    if config.type == "local":
        if cluster is None:
            raise ConfigError(
                f"pool {pool}: the local provider runs workers in the embedded Dask cluster, "
                "and this server has none (ZHUGE_DASK_ADDRESS or --no-dask)"
            )
        return LocalProvider(cluster, pool, resources, adopt=adopt)
    if config.type == "dask-cluster":
        return DaskClusterProvider(
            pool, config.options["cluster"], config.options.get("options") or {}
        )
    return CommandProvider(
        pool,
        resources,
        add=config.options["add"],
        remove=config.options["remove"],
        scheduler_info=scheduler_info or (lambda: {}),
        dask_address=dask_address,
        env=config.options.get("env") or {},
    )
