"""What the job kinds share about their inputs and outputs: locations checked before any work,
results made plain JSON, and the artifact folder a finished job saved.

Jobs write only into their own attempt's artifact folder; callers fetch outputs through the
API (``GET /v1/jobs/{id}/artifacts``, :mod:`zhuge.jobs.job_artifacts`). Used by the
``forecast``, ``cluster`` and ``migration`` job packages.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError

__all__ = [
    "existing_location",
    "json_safe",
    "latest_saved",
]


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
