"""A job's artifacts as the API serves them: one attempt's folder, listed, and a file of it
opened by a name that must appear in that listing.

Which attempt: a succeeded job's committed attempt, the only one whose outputs count; any
other job's latest attempt, marked not committed (a failed attempt's partial outputs, kept
for debugging). Names are paths relative to that folder (``model/manifest.json``). A name a
caller sends is looked up in the listing, never joined to a path on trust: ``..``, absolute
names and anything not listed are refused. Jobs write nowhere else: this is the only way
their outputs leave the server.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import IO

from zhuge.artifacts import ArtifactDir
from zhuge.errors import ArtifactNotFound, InvalidRequest
from zhuge.jobs.model import Job
from zhuge.jobs.states import JobState

CONTENT_TYPES = {  # types mimetypes does not know
    ".parquet": "application/vnd.apache.parquet",
    ".pq": "application/vnd.apache.parquet",
    ".jsonl": "application/x-ndjson",
}


@dataclass(frozen=True)
class AttemptArtifacts:
    """The files of one attempt's folder: name -> size in bytes."""

    job_id: int
    attempt: int
    committed: bool  # False: the latest attempt of a job that has not succeeded
    folder: ArtifactDir
    files: dict[str, int]


def attempt_artifacts(job: Job, artifacts_root: str) -> AttemptArtifacts:
    """The artifacts of ``job``'s committed attempt, or of its latest one if it has not
    succeeded (none before its first attempt)."""
    folder = ArtifactDir(artifacts_root).child(job.artifact_prefix())
    return AttemptArtifacts(
        job_id=job.id,
        attempt=job.attempt,
        committed=job.state is JobState.SUCCEEDED,
        folder=folder,
        files=folder.files() if job.attempt > 0 else {},
    )


def checked_name(name: str) -> str:
    """``name`` if it is a plain relative path (``a/b.parquet``); ``InvalidRequest`` if it is
    empty, absolute, or has ``..``, ``.``, empty segments, backslashes or NUL."""
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise InvalidRequest(
            f"artifact name {name!r}: give a name from the job's artifact list, a path "
            "relative to its folder without '..'"
        )
    return name


def open_artifact(artifacts: AttemptArtifacts, name: str) -> tuple[IO[bytes], int]:
    """``(file, size)`` of the listed artifact ``name``; the caller closes the file."""
    size = artifacts.files.get(checked_name(name))
    if size is None:
        raise ArtifactNotFound(
            f"job {artifacts.job_id} (attempt {artifacts.attempt}) has no artifact {name!r}",
            details={"artifacts": sorted(artifacts.files)[:50]},
        )
    return artifacts.folder.open(name), size


def content_type(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    guessed = CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0]
    return guessed or "application/octet-stream"
