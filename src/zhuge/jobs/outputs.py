"""What the job kinds share about their inputs and outputs: locations checked before any work,
files written whole (a temporary name, then moved into place), results made plain JSON, and
the artifact folder a finished job saved.

Used by the ``forecast``, ``cluster`` and ``migration`` job packages; the CLI runs the same
checks (:func:`check_out`) before it submits a job.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError

__all__ = [
    "check_out",
    "copy_out",
    "existing_location",
    "json_safe",
    "latest_saved",
    "write_out",
]

COPY_BLOCK = 16 * 2**20  # bytes read at a time when copying an artifact


def existing_location(url: str, what: str, *, missing: str | None = None) -> tuple[Any, str]:
    """``(filesystem, path)`` of ``url``, which must exist; a ``DataError`` naming ``what``
    otherwise. ``missing``: the message when it does not exist (default: '<what> file <url>
    does not exist')."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise DataError(f"{what} {url!r}: cannot open that location ({exc})") from exc
    if not fs.exists(path):
        raise DataError(missing or f"{what} file {url} does not exist")
    return fs, path


def check_out(url: str) -> None:
    """The folder an output goes to must exist (checked before any work, so nothing is
    half-done)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent and not fs.exists(parent):
        raise DataError(f"cannot write {url}: folder {parent} does not exist")
    if fs.isdir(path):
        raise DataError(f"cannot write {url}: it is a folder")


def _write_whole(url: str, write: Callable[[IO[bytes]], None]) -> str:
    """Check ``url``, let ``write`` fill a temporary file beside it, then move it into place,
    so a reader never sees half a file."""
    import fsspec

    check_out(url)
    fs, path = fsspec.core.url_to_fs(url)
    tmp = f"{path}.tmp-{time.time_ns()}"
    with fs.open(tmp, "wb") as fh:
        write(fh)
    fs.mv(tmp, path)
    return url


def write_out(url: str, data: bytes) -> str:
    """Write ``data`` to ``url`` whole; return ``url``."""
    return _write_whole(url, lambda fh: fh.write(data))


def copy_out(source: str, url: str) -> str:
    """Copy the artifact at ``source`` (any fsspec URL) to ``url`` whole, streaming; return
    ``url``."""
    import fsspec

    with fsspec.open(source, "rb") as src:
        return _write_whole(url, lambda fh: shutil.copyfileobj(src, fh, length=COPY_BLOCK))


def json_safe(obj: Any) -> Any:
    """Plain JSON: numpy scalars and arrays to Python, NaN/inf to null, keys to text, and
    anything else that JSON has no type for (timestamps, durations) to its text."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj if isinstance(obj, str | int | float | bool | type(None)) else str(obj)


def latest_saved(artifacts_root: ArtifactDir, job_id: int | str, name: str) -> ArtifactDir | None:
    """Folder ``name`` of the latest attempt of job ``job_id`` that saved a complete
    (manifest-verified) copy of it, the one that committed; None when no attempt did."""
    job_dir = artifacts_root.child(f"jobs/{job_id}")
    attempts = sorted(
        (n for n in job_dir.listdir() if re.fullmatch(r"attempt-\d+", n)),
        key=lambda n: int(n.split("-")[1]),
        reverse=True,
    )
    for attempt in attempts:
        folder = job_dir.child(f"{attempt}/{name}")
        if folder.exists("manifest.json"):
            return folder
    return None
