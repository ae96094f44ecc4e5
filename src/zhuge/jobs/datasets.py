"""Datasets: files uploaded into the artifact store, named, versioned and content-addressed.

A dataset version is a row (tenant, name, SHA-256 of the content, size, format, who, when)
pointing at one object, ``datasets/<tenant>/sha256/<hex>`` under the artifacts root. Jobs
read data the server names, never a path a caller guessed: ``dataset://NAME@sha256:HEX`` is
one exact version, ``dataset://NAME`` the newest one (the highest id; putting content that
the name already had again does not make it newest, it answers the version already there).

Invariants kept here:

- an upload streams to a temporary object while it is hashed and counted; over ``max_bytes``,
  or not CSV/Parquet, it is refused and nothing is left behind, neither object nor row;
- an object is shared by every row with the same content in a tenant (put twice: one object),
  and deleted only when no row still points to it; the row's write and the object's move (or
  the rows' delete and the object's removal) happen under one lock per object (SQLite's
  writer lock, a PostgreSQL advisory lock), so a put and a remove of the same content cannot
  interleave into a row without its object;
- every read is by tenant: another tenant's dataset is answered exactly like a missing one.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zhuge import errors
from zhuge.artifacts import _filesystem
from zhuge.jobs import schema
from zhuge.jobs.store import reading, transaction

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a folder name under datasets/
_DIGEST_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
_REF_PATTERN = re.compile(r"^dataset://(?P<name>[^@]+)(?:@sha256:(?P<sha256>[^@]*))?$")
SCHEME = "dataset://"
FORMATS = ("csv", "parquet")
PARQUET_MAGIC = b"PAR1"  # a Parquet file starts and ends with it
SNIFF_BYTES = 8192  # how much of the head decides the format
READ_CHUNK = 1 << 20  # bytes per read when streaming content back

D = schema.datasets


@dataclass(frozen=True)
class Dataset:
    """One version of a dataset: its lineage and where its content lies."""

    id: int
    tenant: str
    name: str
    sha256: str
    size_bytes: int
    format: str
    path: str  # key under the artifacts root
    created_at: float
    created_by: str | None  # token id

    @property
    def ref(self) -> str:
        return f"{SCHEME}{self.name}@sha256:{self.sha256}"

    def url(self, artifacts_root: str) -> str:
        """The fsspec URL of its content."""
        return f"{artifacts_root.rstrip('/')}/{self.path}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise errors.InvalidRequest(
            f"dataset name {name!r} is not allowed: 1 to 200 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            details=[{"loc": ["name"], "msg": "invalid dataset name", "type": "value_error"}],
        )
    return name


def check_digest(sha256: str) -> str:
    if not isinstance(sha256, str) or not _DIGEST_PATTERN.fullmatch(sha256):
        raise errors.InvalidRequest(
            f"{sha256!r} is not a SHA-256 digest (64 hex digits)",
            details=[{"loc": ["sha256"], "msg": "invalid digest", "type": "value_error"}],
        )
    return sha256.lower()


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``dataset://NAME[@sha256:HEX]`` → (name, digest or None)."""
    match = _REF_PATTERN.fullmatch(ref) if isinstance(ref, str) else None
    if match is None:
        raise errors.InvalidRequest(
            f"{ref!r} is not a dataset reference: dataset://NAME or dataset://NAME@sha256:HEX"
        )
    digest = match["sha256"]
    return check_name(match["name"]), None if digest is None else check_digest(digest)


def content_key(tenant: str, sha256: str) -> str:
    """Where content lives under the artifacts root: its address."""
    return f"datasets/{tenant}/sha256/{sha256}"


def _check_tenant(tenant: str) -> str:
    # The tenant names a folder; refuse anything that could climb out of it.
    if not _TENANT_PATTERN.fullmatch(tenant):
        raise errors.InvalidRequest(f"tenant {tenant!r} cannot hold datasets (unsafe name)")
    return tenant


def _sniff(head: bytes, declared: str | None) -> str:
    """The format the head of the content shows; refuse what is neither CSV nor Parquet, or
    is not what the caller declared."""
    found = "parquet" if head.startswith(PARQUET_MAGIC) else "csv"
    if found == "csv" and b"\x00" in head:
        raise errors.DataError(
            "this file is neither Parquet (no PAR1 magic) nor CSV text (it has NUL bytes)"
        )
    if declared is not None and declared != found:
        raise errors.DataError(
            f"declared format {declared!r}, but the content is {found}"
            + (" (it starts with the Parquet magic PAR1)" if found == "parquet" else "")
        )
    return found


def _stage(
    fs: Any, temporary: str, chunks: Iterable[bytes], max_bytes: int, declared: str | None
) -> tuple[str, int, str]:
    """Write ``chunks`` to ``temporary`` while hashing, counting and sniffing them; the
    content's (SHA-256, size, format). Refuses over ``max_bytes`` as soon as it is passed."""
    fs.makedirs(temporary.rsplit("/", 1)[0], exist_ok=True)
    digest, size, head, tail, found = hashlib.sha256(), 0, b"", b"", None
    with fs.open(temporary, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise errors.PayloadTooLarge(
                    f"upload exceeds the limit of {max_bytes:,} bytes (ZHUGE_MAX_UPLOAD_BYTES)",
                    details={"max_bytes": max_bytes},
                )
            if found is None:
                head += chunk[: SNIFF_BYTES - len(head)]
                if len(head) >= SNIFF_BYTES:
                    found = _sniff(head, declared)  # refuse early, not after 10 GiB
            tail = (tail + chunk[-len(PARQUET_MAGIC) :])[-len(PARQUET_MAGIC) :]
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise errors.DataError("the file is empty")
    found = found or _sniff(head, declared)
    if found == "parquet" and (size < 2 * len(PARQUET_MAGIC) or tail != PARQUET_MAGIC):
        raise errors.DataError("this Parquet file is truncated (no PAR1 at its end)")
    return digest.hexdigest(), size, found


def _row_to_dataset(row: sa.Row[Any]) -> Dataset:
    return Dataset(**{k: row._mapping[k] for k in Dataset.__dataclass_fields__})


class Datasets:
    """Put, resolve, list and remove datasets: rows in the store, content in the artifacts."""

    def __init__(
        self, engine: Engine, artifacts_root: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.artifacts_root = artifacts_root.rstrip("/")
        self.clock = clock

    def _tx(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return reading(self.engine)

    def _lock_content(self, conn: Connection, key: str) -> None:
        """Serialise writers of one content object until the transaction ends. SQLite's
        transactions (BEGIN IMMEDIATE) already hold the one writer lock."""
        if conn.dialect.name == "postgresql":
            lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})

    # -- writes ---------------------------------------------------------------------------

    def put(
        self,
        tenant: str,
        name: str,
        chunks: Iterable[bytes],
        *,
        created_by: str | None,
        max_bytes: int,
        format: str | None = None,
    ) -> tuple[Dataset, bool]:
        """Stream ``chunks`` into the store as a version of ``name``; True if it is new.

        The same content under the same name answers the version already there (False)."""
        _check_tenant(tenant)
        check_name(name)
        if format is not None and format not in FORMATS:
            raise errors.InvalidRequest(
                f"format {format!r} is not one of {', '.join(FORMATS)}",
                details=[{"loc": ["format"], "msg": "unknown format", "type": "value_error"}],
            )
        fs, root = _filesystem(self.artifacts_root)
        temporary = f"{root}/datasets/{tenant}/tmp/{uuid.uuid4().hex}"
        try:
            sha256, size, found = _stage(fs, temporary, chunks, max_bytes, format)
            key = content_key(tenant, sha256)
            with self._tx() as conn:
                self._lock_content(conn, key)
                row, created = self._version(conn, tenant, name, sha256), False
                if row is None:
                    conn.execute(
                        D.insert().values(
                            tenant=tenant,
                            name=name,
                            sha256=sha256,
                            size_bytes=size,
                            format=found,
                            path=key,
                            created_at=self.clock(),
                            created_by=created_by,
                        )
                    )
                    row, created = self._version(conn, tenant, name, sha256), True
                if not fs.exists(f"{root}/{key}"):  # else the content is there already
                    fs.makedirs(f"{root}/{key}".rsplit("/", 1)[0], exist_ok=True)
                    fs.mv(temporary, f"{root}/{key}")
            assert row is not None
            return _row_to_dataset(row), created
        finally:
            if fs.exists(temporary):
                fs.rm(temporary)

    @staticmethod
    def _version(conn: Connection, tenant: str, name: str, sha256: str) -> sa.Row[Any] | None:
        return conn.execute(
            sa.select(D).where(D.c.tenant == tenant, D.c.name == name, D.c.sha256 == sha256)
        ).first()

    def remove(self, tenant: str, name: str, sha256: str | None = None) -> int:
        """Delete the versions of ``name`` (or the one with ``sha256``); the number removed.
        Content goes when no row, of any tenant, still points to it."""
        check_name(name)
        where = [D.c.tenant == tenant, D.c.name == name]
        if sha256 is not None:
            where.append(D.c.sha256 == check_digest(sha256))
        fs, root = _filesystem(self.artifacts_root)
        with self._tx() as conn:
            keys = sorted(set(conn.execute(sa.select(D.c.path).where(*where)).scalars()))
            for key in keys:  # in one order, so two removes cannot deadlock
                self._lock_content(conn, key)
            removed = conn.execute(D.delete().where(*where)).rowcount
            for key in keys:
                still_used = conn.execute(
                    sa.select(sa.func.count()).select_from(D).where(D.c.path == key)
                ).scalar_one()
                if not still_used and fs.exists(f"{root}/{key}"):
                    fs.rm(f"{root}/{key}")
        return removed

    # -- reads ----------------------------------------------------------------------------

    def resolve(self, tenant: str, name: str, sha256: str | None = None) -> Dataset:
        """The version of ``name`` with ``sha256``, or its newest; DatasetNotFound if none."""
        ref = f"{SCHEME}{name}" + (f"@sha256:{sha256}" if sha256 else "")
        check_name(name)
        where = [D.c.tenant == tenant, D.c.name == name]
        if sha256 is not None:
            where.append(D.c.sha256 == check_digest(sha256))
        with self._read() as conn:
            row = conn.execute(sa.select(D).where(*where).order_by(D.c.id.desc()).limit(1)).first()
        if row is None:
            raise errors.DatasetNotFound(f"no dataset {ref} in this tenant", details={"ref": ref})
        return _row_to_dataset(row)

    def get(self, tenant: str, ref: str) -> Dataset:
        """Resolve ``dataset://NAME`` (newest) or ``dataset://NAME@sha256:HEX``."""
        name, sha256 = parse_ref(ref)
        return self.resolve(tenant, name, sha256)

    def by_digest(self, tenant: str, sha256: str, name: str | None = None) -> Dataset | None:
        """The tenant's newest version with this content (under ``name``, if given)."""
        where = [D.c.tenant == tenant, D.c.sha256 == check_digest(sha256)]
        if name is not None:
            where.append(D.c.name == check_name(name))
        with self._read() as conn:
            row = conn.execute(sa.select(D).where(*where).order_by(D.c.id.desc()).limit(1)).first()
        return None if row is None else _row_to_dataset(row)

    def list(self, tenant: str | None, name: str | None = None) -> builtins.list[Dataset]:
        """Every version, by tenant and name, newest first; ``tenant=None``: every tenant's."""
        where = []
        if tenant is not None:
            where.append(D.c.tenant == tenant)
        if name is not None:
            where.append(D.c.name == check_name(name))
        query = sa.select(D).where(*where).order_by(D.c.tenant, D.c.name, D.c.id.desc())
        with self._read() as conn:
            return [_row_to_dataset(r) for r in conn.execute(query)]

    def open(self, dataset: Dataset) -> Iterator[bytes]:
        """Its content, in chunks of ``READ_CHUNK`` bytes."""
        fs, root = _filesystem(self.artifacts_root)
        try:
            fh = fs.open(f"{root}/{dataset.path}", "rb")
        except FileNotFoundError as exc:
            raise errors.DatasetNotFound(
                f"the content of {dataset.ref} is missing from the artifact store"
            ) from exc
        return _chunks(fh)


def _chunks(fh: Any) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(READ_CHUNK):
            yield chunk
