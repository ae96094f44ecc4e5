"""The embedded platform: store + scheduler + Dask, wired from Settings.

``zhuge up`` runs one of these behind the HTTP API; tests and the convenience commands
(``zhuge forecast`` with no server running) start one in-process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI

from zhuge.config import Settings
from zhuge.jobs import dask_tls
from zhuge.jobs.executor import DaskExecutor
from zhuge.jobs.liveness import SchedulerBeat
from zhuge.jobs.scheduler import Scheduler
from zhuge.jobs.store import JobStore

log = logging.getLogger(__name__)

ADMIN_TENANT = "default"


def write_secret(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    os.chmod(path, 0o600)


def ensure_admin_token(store: JobStore, settings: Settings) -> str:
    """Reuse ``ZHUGE_HOME/token`` if the store knows it, else issue one and write it."""
    path = settings.token_path
    if path.exists():
        token = path.read_text().strip()
        if token and store.tenant_for_token(token):
            return token
    token = store.issue_token(
        ADMIN_TENANT, description="admin token written by zhuge up", role="admin"
    )
    write_secret(path, token)
    return token


class Platform:
    def __init__(
        self,
        settings: Settings,
        *,
        run_scheduler: bool = True,
        start_dask: bool = True,
    ) -> None:
        self.settings = settings
        self.run_scheduler = run_scheduler
        self.start_dask = start_dask
        self.store: JobStore | None = None
        self.executor: DaskExecutor | None = None
        self.scheduler: Scheduler | None = None
        self.beat: SchedulerBeat | None = None  # /readyz: this process's loop is alive
        self.token: str | None = None

    def start(self) -> Platform:
        if not self.settings.data_roots:
            # the platform of one user (zhuge up, or a command's embedded one) reads where it
            # was started; a shared server names its roots in ZHUGE_DATA_ROOTS
            self.settings = replace(self.settings, data_roots=(Path.cwd().resolve(),))
        log.info("data roots: %s", ", ".join(map(str, self.settings.data_roots)))
        # The home holds the database, the admin token and artifacts: its owner's only.
        self.settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.settings.home, 0o700)
        self.store = JobStore.open(
            self.settings.database_url,
            retry_base_seconds=self.settings.retry_base_seconds,
            retry_max_seconds=self.settings.retry_max_seconds,
        )
        self.token = ensure_admin_token(self.store, self.settings)
        if self.run_scheduler:
            address = self.settings.dask_address
            if address is None and not self.start_dask:
                from zhuge.errors import ConfigError

                raise ConfigError(
                    "--no-dask needs an existing Dask scheduler: set ZHUGE_DASK_ADDRESS "
                    "(e.g. tcp://host:8786) or pass --dask-address"
                )
            tls = None
            if address is not None:
                dask_tls.check_address(address, self.settings)
                tls = dask_tls.security(self.settings)
            self.executor = DaskExecutor(
                address=address,
                n_workers=self.settings.workers,
                security=tls,
                schema_url=self.settings.database_url,
            ).start()
            self.scheduler = Scheduler(self.store, self.executor, self.settings)
            self.scheduler.start()
            self.beat = SchedulerBeat(self.store, self.scheduler).start()
        return self

    def app(self) -> FastAPI:
        from zhuge.api.app import create_app

        assert self.store is not None, "start() the platform first"
        return create_app(
            self.settings,
            store=self.store,
            notify=self.scheduler.notify if self.scheduler else None,
        )

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop()
            self.beat = None
        if self.scheduler is not None:
            self.scheduler.stop(release=True)
            self.scheduler = None
        if self.executor is not None:
            self.executor.close()
            self.executor = None
        if self.store is not None:
            self.store.dispose()
            self.store = None

    def __enter__(self) -> Platform:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
