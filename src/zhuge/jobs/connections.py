"""Connections: SQL databases and object-store prefixes an admin registers for jobs to read.

A connection is a row (name, kind ``sql`` or ``objects``, URL, tenant or none). Jobs name it,
never its URL: ``connection`` + ``sql`` for a query, ``connection://NAME/KEY`` for an object
under its prefix. The URL, with whatever credentials it holds, stays in the store: nothing
here returns it to a caller (:attr:`Connection.location` is what may be shown).

Invariants kept here:

- the platform's own database is never a connection (compared normalised: a SQLite file after
  resolving symlinks; a PostgreSQL host, port and database, and the live server's identity),
  nor is an object prefix that holds or lies inside the platform's token, artifacts or
  database file;
- a PostgreSQL role that can read files or run programs on its server is refused when the
  connection is added, and again each time a query runs (:mod:`zhuge.data.sql`);
- a connection without a tenant is for admins only; a member sees and uses its tenant's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from zhuge import errors
from zhuge.jobs import schema
from zhuge.jobs.model import Principal

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
KINDS = ("sql", "objects")
OBJECT_SCHEMES = ("s3", "gs", "gcs", "file")

C = schema.connections


@dataclass(frozen=True)
class Connection:
    name: str
    kind: str  # sql | objects
    url: str  # with credentials: never shown back
    tenant: str | None  # None: admins only
    created_at: float
    created_by: str | None

    @property
    def location(self) -> str:
        """Where it points, fit to show: engine, host and database, or the object prefix;
        never a user name, password or query option."""
        if self.kind == "sql":
            url = sa.make_url(self.url)
            if url.get_backend_name() == "sqlite":
                return f"sqlite {os.path.basename(url.database or '')}"
            port = f":{url.port}" if url.port else ""
            return f"{url.get_backend_name()} {url.host or 'localhost'}{port}/{url.database or ''}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"

    def usable_by(self, principal: Principal) -> bool:
        return principal.is_admin or (self.tenant is not None and self.tenant == principal.tenant)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise errors.InvalidRequest(
            f"connection name {name!r} is not allowed: 1 to 64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _check_objects_url(url: str, private: Iterable[str]) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in OBJECT_SCHEMES:
        raise errors.InvalidRequest(
            f"URL scheme {parts.scheme!r} is neither a database (postgresql, sqlite) nor an "
            f"object store ({', '.join(OBJECT_SCHEMES)})"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise errors.InvalidRequest(
            "an object-store URL is a prefix and nothing else (credentials come from the "
            "server's environment, as for ZHUGE_ARTIFACTS_URL): e.g. s3://bucket/prefix"
        )
    if any(c in url for c in "*?[\\\x00") or "::" in url:
        raise errors.InvalidRequest("an object-store prefix may not hold wildcards or '::'")
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not os.path.isabs(parts.path):
            raise errors.InvalidRequest("a file prefix is file:///ABSOLUTE/FOLDER")
        folder = os.path.realpath(parts.path)
        for own in private:
            if _inside(folder, own) or _inside(own, folder):
                raise errors.InvalidRequest(
                    "this folder holds or lies in the platform's own files (token, artifacts or "
                    "database); it cannot be a connection"
                )
        return f"file://{folder}"
    if not parts.netloc:
        raise errors.InvalidRequest(f"{scheme}:// needs a bucket: {scheme}://bucket/prefix")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def check_url(url: str, *, platform_db_url: str, private: Iterable[str]) -> tuple[str, str]:
    """(kind, URL as stored) for a connection to ``url``; ``InvalidRequest`` naming the rule
    it breaks (the module docstring's invariants)."""
    from zhuge.data.sql import check_postgres_role, database_family, parse_database_url

    if not isinstance(url, str) or not url.strip() or "\x00" in url:
        raise errors.InvalidRequest("a connection needs a URL")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower()
    if scheme in OBJECT_SCHEMES:
        return "objects", _check_objects_url(url, private)
    parsed = parse_database_url(url)
    if _is_platform_database(parsed, platform_db_url):
        raise errors.InvalidRequest("the platform's own database can never be a connection")
    if database_family(parsed) == "postgresql":
        try:
            check_postgres_role(parsed)
        except errors.DataError as exc:
            raise errors.InvalidRequest(exc.message) from exc
    return "sql", parsed.render_as_string(hide_password=False)


def _is_platform_database(url: sa.URL, platform_db_url: str) -> bool:
    from zhuge.data.sql import same_database

    return same_database(url, platform_db_url)


def check_not_platform_database(connection: Connection, platform_db_url: str | None) -> None:
    """Refuse, at use, a connection that has come to name the platform's database."""
    if platform_db_url and _is_platform_database(sa.make_url(connection.url), platform_db_url):
        raise errors.DataError(
            f"connection {connection.name!r} names the platform's own database; refusing it"
        )


def _row(row: Any) -> Connection:
    return Connection(**{k: row._mapping[k] for k in Connection.__dataclass_fields__})


class Connections:
    """Add, find, list and remove connections, on the store's engine."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def add(
        self,
        name: str,
        url: str,
        *,
        tenant: str | None,
        created_by: str | None,
        platform_db_url: str,
        private: Iterable[str] = (),
    ) -> Connection:
        check_name(name)
        kind, stored = check_url(url, platform_db_url=platform_db_url, private=private)
        connection = Connection(name, kind, stored, tenant, self.clock(), created_by)
        try:
            with self.engine.begin() as conn:
                if tenant is not None:
                    T = schema.tenants
                    if not conn.execute(sa.select(T.c.name).where(T.c.name == tenant)).first():
                        raise errors.TenantNotFound(f"tenant {tenant!r} does not exist")
                conn.execute(C.insert().values(**connection.__dict__))
        except IntegrityError as exc:
            raise errors.Conflict(f"connection {name!r} already exists") from exc
        except OperationalError as exc:
            raise errors.StoreError(f"job store unavailable: {exc.orig}") from exc
        return connection

    def get(self, name: str) -> Connection | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(C).where(C.c.name == name)).first()
        return None if row is None else _row(row)

    def usable(self, name: str, principal: Principal, kind: str) -> Connection:
        """The connection ``name`` of ``kind`` that ``principal`` may use. Missing, of
        another tenant, admin-only or of the other kind: one answer for all, so a member
        learns nothing about connections it may not use."""
        connection = self.get(name) if NAME_PATTERN.fullmatch(name or "") else None
        if connection is None or not connection.usable_by(principal) or connection.kind != kind:
            what = "SQL database" if kind == "sql" else "object store"
            raise errors.ConnectionNotFound(f"no {what} connection {name!r} that you may use")
        return connection

    def list(self, principal: Principal) -> list[Connection]:
        query = sa.select(C).order_by(C.c.name)
        if not principal.is_admin:
            query = query.where(C.c.tenant == principal.tenant)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def remove(self, name: str) -> Connection:
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(C).where(C.c.name == name)).first()
            if row is None:
                raise errors.ConnectionNotFound(f"no connection {name!r}")
            conn.execute(C.delete().where(C.c.name == name))
        return _row(row)
