"""zhuge up / zhuge worker: run the platform."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from zhuge.cli.common import console, user_errors

log = logging.getLogger("zhuge")


def up(
    home: Annotated[
        Path | None,
        typer.Option(envvar="ZHUGE_HOME", help="Where the database, artifacts and token live."),
    ] = None,
    host: Annotated[
        str, typer.Option(envvar="ZHUGE_HOST", help="Interface to bind.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="ZHUGE_PORT", help="HTTP port.")] = 8470,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Local Dask worker processes, sharing the cores between them (default: one "
            "per core). Fewer, wider workers hold jobs asking for several CPUs: with "
            "--workers 1 one worker offers every core, so a job submitted with --cpu 4 fits "
            "on a 4-core machine."
        ),
    ] = None,
    no_dask: Annotated[
        bool,
        typer.Option(
            "--no-dask",
            help="Start no local Dask cluster; run jobs on the one at ZHUGE_DASK_ADDRESS.",
        ),
    ] = False,
    dask_address: Annotated[
        str | None,
        typer.Option(
            envvar="ZHUGE_DASK_ADDRESS", help="An existing Dask scheduler, tcp://host:8786."
        ),
    ] = None,
    api_only: Annotated[
        bool, typer.Option("--api-only", help="Serve the API only; another process schedules.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning.")] = "info",
) -> None:
    """Start zhuge in the foreground: HTTP API, scheduler and a local Dask cluster.

    Everything is stored under ZHUGE_HOME (default ./.zhuge): SQLite database, artifacts and
    an admin token (ZHUGE_HOME/token, mode 0600). Set ZHUGE_DB_URL=postgresql+psycopg://...
    for PostgreSQL. Ctrl-C or SIGTERM stops cleanly: running jobs go back to the queue.
    """
    import uvicorn

    from zhuge.client import default_url
    from zhuge.config import Settings
    from zhuge.hardware import cpu_count
    from zhuge.jobs.store import redacted
    from zhuge.platform import Platform

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with user_errors():
        env = dict(os.environ)
        if home is not None:
            env["ZHUGE_HOME"] = str(home)
        settings = Settings.from_env(
            env,
            host=host,
            port=port,
            workers=workers or cpu_count(),
            dask_address=dask_address,
        )
        check_port_free(settings.host, settings.port)  # before Dask or the database
        platform = Platform(settings, run_scheduler=not api_only, start_dask=not no_dask)
        platform.start()
    try:
        where = settings.dask_address or f"local cluster, {settings.workers} worker(s)"
        console.print(f"[bold green]zhuge up[/] at [bold]{settings.url}[/]")
        console.print(f"  home      {settings.home}")
        console.print(f"  database  {redacted(settings.database_url)}")
        console.print(f"  artifacts {settings.artifacts_root}")
        console.print(f"  dask      {'none (API only)' if api_only else where}")
        if settings.pools_file is not None:  # providers and pools (zhuge pools ls)
            console.print(f"  pools     {settings.pools_file}")
        console.print(f"  token     {settings.token_path}")
        roots = ", ".join(map(str, platform.settings.data_roots))  # the default filled in
        console.print(f"  data roots {roots} (jobs read paths only under these)")
        if settings.url != default_url():
            # the CLI and SDK of other shells look at ZHUGE_URL (default 127.0.0.1:8470)
            console.print(f"  in other shells: [bold]export ZHUGE_URL={settings.url}[/]")
        config = uvicorn.Config(
            platform.app(),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
        )
        server = uvicorn.Server(config)
        # uvicorn re-raises the signal that stopped it once it has shut down, which would
        # kill us before the platform releases its running jobs. Handlers of our own, in
        # place when uvicorn restores the originals, turn that re-raise into a no-op.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        server.run()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C forces
        console.print("stopping: releasing running jobs back to the queue")
        platform.stop()


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on, in words, before anything starts (uvicorn
    would say ``[Errno 98]`` only after the Dask cluster and the scheduler were up)."""
    import errno
    import socket

    from zhuge.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"--port {port}: {host}:{port} is already in use (another zhuge up?); "
                    f"stop it, or choose another port: zhuge up --port {port + 1}"
                ) from None
            raise ConfigError(f"--host {host} --port {port}: cannot listen there: {exc}") from None


def worker(
    scheduler: Annotated[
        str | None,
        typer.Argument(
            envvar="ZHUGE_DASK_ADDRESS", help="Dask scheduler address, tcp://host:8786."
        ),
    ] = None,
    nworkers: Annotated[
        int, typer.Option(help="Worker processes to start; each advertises the amounts below.")
    ] = 1,
    cpus: Annotated[
        float | None,
        typer.Option(
            help="CPUs each worker offers, and its threads (default: the machine's cores "
            "divided among the workers)."
        ),
    ] = None,
    memory: Annotated[
        float | None,
        typer.Option(
            help="Memory each worker offers, in GB (default: the machine's divided among "
            "the workers)."
        ),
    ] = None,
    gpus: Annotated[
        float | None, typer.Option(help="GPUs to advertise (default: what nvidia-smi sees).")
    ] = None,
    resource: Annotated[
        list[str] | None,
        typer.Option(
            "--resource",
            help="A custom resource each worker offers, NAME=AMOUNT (repeat the option).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="The worker's Dask name. A pool's command provider starts workers named "
            "POOL-N (it passes ZHUGE_WORKER_NAME); workers named otherwise form the "
            "unmanaged static pool (docs/elastic.md).",
        ),
    ] = None,
) -> None:
    """Start Dask workers for an existing scheduler, advertising what they have:
    CPU (= threads), memory_gb, GPU, and any custom resource, for example
    ``zhuge worker tcp://host:8786 --cpus 4 --memory 16 --gpus 1 --resource ssd=1``."""
    from zhuge.errors import ConfigError
    from zhuge.jobs.executor import dask_resources, parse_resource, worker_resources

    with user_errors():
        if not scheduler:
            raise ConfigError("give the Dask scheduler address, or set ZHUGE_DASK_ADDRESS")
        if nworkers < 1:
            raise ConfigError(f"--nworkers must be at least 1, not {nworkers}")
        if cpus is not None and cpus != int(cpus):
            raise ConfigError(f"--cpus must be a whole number (it is the threads), not {cpus:g}")
        custom = dict(parse_resource(r) for r in resource or [])
        offered = worker_resources(
            cpus=cpus, memory=memory, gpus=gpus, custom=custom, share=nworkers
        )
        # Take no work under a schema this zhuge was not written for (a rolling upgrade).
        db_url = os.environ.get("ZHUGE_DB_URL")
        if db_url:
            from zhuge.jobs.worker_check import check_worker_schema

            check_worker_schema(db_url)
        from zhuge.config import Settings
        from zhuge.jobs import dask_tls

        settings = Settings.from_env()
        dask_tls.check_address(scheduler, settings)
        tls_arguments = dask_tls.worker_arguments(settings)
    resources = dask_resources(offered)
    argv = [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        scheduler,
        "--nworkers",
        str(nworkers),
        "--nthreads",
        str(int(offered["CPU"])),
        "--resources",
        resources,
        "--no-dashboard",
        *(["--name", name] if name else []),
        *tls_arguments,
    ]
    console.print(f"starting {nworkers} worker(s) for {scheduler}, each with {resources}")
    # An isolated attempt (a GPU fraction, a memory cap) runs in a child of its worker
    # process, which Dask's nanny starts daemonic unless told otherwise.
    os.environ["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    os.execv(sys.executable, argv)
