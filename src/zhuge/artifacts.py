"""Artifacts on fsspec storage (``file://`` by default, ``s3://`` for S3-compatible stores).

A saved object is a folder with its payload files and ``manifest.json``: what it is, the
library versions that wrote it and a SHA-256 of each file, verified before anything is loaded.
This module imports nothing from the platform layers, so algorithms may use it too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import fsspec

from zhuge.errors import MissingDependency, ModelNotFound

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def library_versions(names: Iterable[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise MissingDependency(
            f"storage {url!r} needs an fsspec backend that is not installed "
            "(for s3:// install zhuge[s3])"
        ) from exc
    return fs, path.rstrip("/")


@dataclass(frozen=True)
class ArtifactDir:
    """A folder of artifacts at an fsspec URL."""

    url: str

    @property
    def _fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        return _filesystem(self.url)

    def child(self, name: str) -> ArtifactDir:
        return ArtifactDir(f"{self.url.rstrip('/')}/{name}")

    def path(self, name: str) -> str:
        return f"{self.url.rstrip('/')}/{name}"

    def write_bytes(self, name: str, data: bytes) -> str:
        fs, root = self._fs
        fs.makedirs(root, exist_ok=True)
        target = f"{root}/{name}"
        if "/" in name:
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(target, "wb") as fh:
            fh.write(data)
        return self.path(name)

    def read_bytes(self, name: str) -> bytes:
        fs, root = self._fs
        try:
            with fs.open(f"{root}/{name}", "rb") as fh:
                return fh.read()
        except FileNotFoundError as exc:
            raise ModelNotFound(f"artifact {self.path(name)} does not exist") from exc

    def exists(self, name: str = "") -> bool:
        fs, root = self._fs
        return fs.exists(f"{root}/{name}" if name else root)

    def listdir(self) -> list[str]:
        fs, root = self._fs
        if not fs.exists(root):
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))

    def files(self) -> dict[str, int]:
        """Every file below this folder, by its name relative to it ('model/manifest.json'),
        with its size in bytes; empty when the folder does not exist."""
        fs, root = self._fs
        if not fs.exists(root):
            return {}
        found = fs.find(root, detail=True)
        prefix = f"{root}/"
        return {
            path[len(prefix) :]: int(info.get("size") or 0)
            for path, info in sorted(found.items())
            if path.startswith(prefix) and info.get("type") != "directory"
        }

    def open(self, name: str) -> IO[bytes]:
        """``name`` opened for reading; the caller closes it. Names come from :meth:`files`:
        this joins ``name`` to the folder as it is."""
        fs, root = self._fs
        return fs.open(f"{root}/{name}", "rb")

    def write_json(self, name: str, obj: Any) -> str:
        return self.write_bytes(name, json.dumps(obj, indent=2, sort_keys=True).encode())

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def write_parquet(self, name: str, frame: Any) -> str:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return self.write_bytes(name, buf.getvalue())

    def read_parquet(self, name: str) -> Any:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(name)))

    # -- saved objects: payload files + manifest -----------------------------------------

    def save(
        self,
        files: dict[str, bytes],
        *,
        kind: str,
        libraries: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write ``files`` and a manifest that names their hashes; return the manifest."""
        if MANIFEST in files:
            raise ValueError(f"{MANIFEST} is reserved")
        for name, data in files.items():
            self.write_bytes(name, data)
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "kind": kind,
            "created_at": time.time(),
            "libraries": library_versions(["zhuge", *libraries]),
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
            "metadata": metadata or {},
        }
        self.write_json(MANIFEST, manifest)
        return manifest

    def load(self, *, kind: str | None = None) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Read the manifest and its files, verifying every hash; raise ModelNotFound if not."""
        if not self.exists(MANIFEST):
            raise ModelNotFound(f"no saved artifact at {self.url} (no {MANIFEST})")
        manifest = self.read_json(MANIFEST)
        if kind is not None and manifest.get("kind") != kind:
            raise ModelNotFound(
                f"artifact at {self.url} is a {manifest.get('kind')!r}, not a {kind!r}"
            )
        files = {}
        for name, expected in manifest["files"].items():
            data = self.read_bytes(name)
            if hashlib.sha256(data).hexdigest() != expected:
                raise ModelNotFound(
                    f"artifact file {self.path(name)} does not match its manifest hash; "
                    "refusing to load it"
                )
            files[name] = data
        return manifest, files
