"""The API served to this process alone: uvicorn in a thread, on a Unix socket in a folder
only this user can enter (a loopback port where there are no Unix sockets).

The embedded platform of the convenience commands (``zhuge forecast`` with no server running)
talks to it through the same ``Client`` as to a remote server, so uploads, downloads and
tenant checks take one path whether the platform is remote or in-process, and downloads
stream instead of passing through memory.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from zhuge.errors import ZhugeError

START_SECONDS = 30.0  # the server must be accepting by then
STOP_SECONDS = 10.0


@dataclass(frozen=True)
class PrivateAPI:
    """Where the private server answers: ``Client(api.url, token, transport=api.transport)``."""

    url: str
    transport: httpx.HTTPTransport
    socket_path: str | None  # None: a loopback port (no Unix sockets here)


@contextmanager
def serve_privately(app: FastAPI) -> Iterator[PrivateAPI]:
    """Serve ``app`` while the block runs."""
    import uvicorn

    folder = Path(tempfile.mkdtemp(prefix="zhuge-api-"))  # mode 0700: this user only
    if hasattr(socket, "AF_UNIX"):
        path = str(folder / "api.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        api = PrivateAPI("http://zhuge.embedded", httpx.HTTPTransport(uds=path), path)
    else:  # pragma: no cover - Windows
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        api = PrivateAPI(url, httpx.HTTPTransport(), None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="zhuge-private-api", daemon=True
    )
    try:
        thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ZhugeError("the embedded platform's API did not start")
            time.sleep(0.01)
        yield api
    finally:
        server.should_exit = True
        thread.join(STOP_SECONDS)
        api.transport.close()
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
