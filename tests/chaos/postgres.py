"""A private PostgreSQL instance (``initdb`` / ``pg_ctl``) that a chaos run may restart without
disturbing anyone else's database. Run as the ``postgres`` user when started as root (initdb
refuses root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port


def binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None when PostgreSQL's server is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PrivatePostgres:
    """``folder`` holds its data and log; as root, a folder of its own under the system's
    temporary folder instead (the postgres user cannot reach into root's private ones)."""

    def __init__(self, folder: Path, *, host: str = "127.0.0.1", netns: str | None = None) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL's server (initdb, pg_ctl) is not installed")
        self.bin = bin_dir
        self.own_folder = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="zhuge-pg-")) if self.own_folder else folder
        self.data = self.folder / "pgdata"
        self.log = self.folder / "postgres.log"
        self.host = host
        self.netns = netns  # a network namespace to run it in (a "host" of its own)
        self.port = free_port()
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> PrivatePostgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
            if not self.host.startswith("127."):  # other test hosts connect from 10.200.x.x
                with open(self.data / "pg_hba.conf", "a") as hba:
                    hba.write(f"host all all {self.host.rsplit('.', 3)[0]}.0.0.0/8 trust\n")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -k {self.data} "
            "-c max_connections=300 -c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *extra, action
        )

    def restart(self) -> None:
        """A crash and a start: ``-m immediate`` drops every connection without a goodbye."""
        self._pg_ctl("restart", "-m", "immediate")
        self.restarts += 1

    def stop(self, *, keep: bool = False) -> None:
        """Stop it; its folder is removed unless ``keep``."""
        with contextlib.suppress(RuntimeError):  # not running
            self._pg_ctl("stop", "-m", "immediate")
        if self.own_folder and not keep:
            shutil.rmtree(self.folder, ignore_errors=True)
