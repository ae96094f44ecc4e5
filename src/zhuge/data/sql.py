"""Running a caller's SQL query read-only: one statement, in a read-only transaction, under a
time limit. What makes it read-only differs per engine:

- **PostgreSQL**: the query is sent as a prepared statement (the extended protocol, where the
  server itself refuses a second command, so ``...; COMMIT; ...`` cannot end the transaction),
  after ``SET TRANSACTION READ ONLY`` and ``SET LOCAL statement_timeout``. A role that is a
  superuser, or a member of ``pg_read_server_files``, ``pg_write_server_files`` or
  ``pg_execute_server_program``, is refused: such a role reads files and runs programs on the
  database server (``pg_read_file``, ``COPY ... TO PROGRAM``) whatever the transaction says.
- **SQLite**: the file is opened ``mode=ro`` with ``PRAGMA query_only`` and an authorizer that
  allows reading and nothing else, so ``ATTACH``, ``VACUUM INTO``, ``PRAGMA``, transactions,
  writes and ``load_extension`` are denied while the statement is compiled; Python's sqlite3
  runs one statement per call; a progress handler interrupts it at the deadline.
- **MySQL** (``mysql+pymysql``, when PyMySQL is installed): a ``READ ONLY`` transaction with
  ``max_execution_time``; PyMySQL sends one statement (multi-statements are off).

Nothing here knows about the platform: :mod:`zhuge.jobs.inputs` decides who may query which
database; this module only makes the query harmless to the database it runs on.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa

from zhuge.errors import DataError, InvalidRequest

__all__ = [
    "POWERFUL_PG_ROLES",
    "QUERY_TIMEOUT_SECONDS",
    "check_postgres_role",
    "database_family",
    "parse_database_url",
    "read_only_query",
    "same_database",
]

QUERY_TIMEOUT_SECONDS = 600.0  # a telemetry query that runs longer is stopped
CONNECT_TIMEOUT_SECONDS = 10
POWERFUL_PG_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
_PROGRESS_STEPS = 10_000  # SQLite VM steps between deadline checks

# SQLite authorizer: what a query may do while it is compiled. Reading only.
_SQLITE_ALLOWED = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
_SQLITE_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
)


def database_family(url: sa.URL) -> str:
    """``postgresql``, ``sqlite`` or ``mysql``; ``InvalidRequest`` for anything else."""
    backend, _, driver = url.drivername.partition("+")  # without loading a dialect
    if backend == "postgresql" and driver in ("psycopg", "psycopg2", ""):
        return "postgresql"
    if backend == "sqlite" and driver in ("pysqlite", ""):
        return "sqlite"
    if backend == "mysql" and driver == "pymysql" and importlib.util.find_spec("pymysql"):
        return "mysql"
    allowed = "postgresql://, sqlite:///ABSOLUTE/PATH"
    if importlib.util.find_spec("pymysql"):
        allowed += ", mysql+pymysql://"
    raise InvalidRequest(f"database URLs of scheme {url.drivername!r} are not accepted: {allowed}")


def parse_database_url(text: str) -> sa.URL:
    """A SQL database URL the readers accept (see :func:`database_family`); a SQLite one must
    name an absolute file path, without query options."""
    try:
        url = sa.make_url(text)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise InvalidRequest("not a database URL (e.g. postgresql://user@host/db)") from exc
    family = database_family(url)
    if family == "sqlite":
        path = url.database or ""
        if url.query or not path or path == ":memory:" or not os.path.isabs(path):
            raise InvalidRequest(
                "a SQLite connection names an absolute file path and nothing else: "
                "sqlite:////path/to/file.db"
            )
    return url


def _sqlite_path(url: sa.URL) -> str:
    return os.path.realpath(url.database or "")


def _pg_address(url: sa.URL) -> tuple[str, int, str]:
    host = (url.host or "localhost").lower()
    if host in ("localhost", "::1", "127.0.0.1") or host.startswith("/"):
        host = "localhost"  # the local server, over TCP or its socket
    return host, int(url.port or 5432), url.database or url.username or ""


def same_database(a: str | sa.URL, b: str | sa.URL) -> bool:
    """Whether two URLs name one database: the same SQLite file (after resolving symlinks),
    or the same PostgreSQL host, port and database name; for two PostgreSQL URLs that look
    different, also the same server asked live (start time, port, database), so an alias of
    the host is caught too."""
    ua, ub = sa.make_url(a), sa.make_url(b)
    fa, fb = ua.get_backend_name(), ub.get_backend_name()
    if fa != fb:
        return False
    if fa == "sqlite":
        return _sqlite_path(ua) == _sqlite_path(ub)
    if fa == "postgresql":
        if _pg_address(ua) == _pg_address(ub):
            return True
        try:
            return _pg_identity(ua) == _pg_identity(ub)
        except DataError:
            return False  # one of them does not answer: the names decided
    return (ua.host, ua.port, ua.database) == (ub.host, ub.port, ub.database)


def _pg_connect(url: sa.URL) -> Any:
    import psycopg

    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return psycopg.connect(libpq, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.Error as exc:
        raise DataError(f"cannot connect to the database: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _pg_identity(url: sa.URL) -> tuple[Any, ...]:
    with _pg_connect(url) as conn:
        row = conn.execute(
            "SELECT pg_postmaster_start_time(), current_setting('port'), current_database()"
        ).fetchone()
        conn.rollback()
    return tuple(row)


def _refuse_powerful_pg_role(conn: Any) -> None:
    row = conn.execute(
        "SELECT r.rolsuper, "
        + ", ".join(f"pg_has_role(current_user, '{role}', 'MEMBER')" for role in POWERFUL_PG_ROLES)
        + " FROM pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    conn.rollback()
    if row is None:
        raise DataError("cannot tell what the connection's role may do; refusing it")
    if row[0]:
        raise DataError(
            "the connection's role is a superuser, which reads files and runs programs on the "
            "database server; give it a role that may only read the tables it needs"
        )
    held = [role for role, has in zip(POWERFUL_PG_ROLES, row[1:], strict=True) if has]
    if held:
        raise DataError(
            f"the connection's role is a member of {', '.join(held)}, which reads files or runs "
            "programs on the database server; give it a role that may only read its tables"
        )


def check_postgres_role(url: str | sa.URL) -> None:
    """Connect and refuse a role that can reach beyond the database (module docstring)."""
    with _pg_connect(sa.make_url(url)) as conn:
        _refuse_powerful_pg_role(conn)


def read_only_query(
    url: str | sa.URL,
    query: str,
    *,
    params: Mapping[str, object] | None = None,
    timeout_seconds: float = QUERY_TIMEOUT_SECONDS,
) -> pd.DataFrame:
    """The rows of ``query`` on the database at ``url``, run read-only (module docstring).
    Values are bound by name (``WHERE vm = :vm`` with ``params={"vm": ...}``), never formatted
    into the query. ``DataError`` names what failed, never the URL."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    parsed = parse_database_url(text)
    if "\x00" in query:
        raise DataError("the query contains a NUL byte")
    bound = dict(params or {})
    family = database_family(parsed)
    if family == "postgresql":
        columns, rows = _postgres_rows(parsed, query, bound, timeout_seconds)
    elif family == "sqlite":
        columns, rows = _sqlite_rows(parsed, query, bound, timeout_seconds)
    else:
        columns, rows = _mysql_rows(parsed, query, bound, timeout_seconds)
    return pd.DataFrame.from_records(rows, columns=columns)


def _postgres_rows(
    url: sa.URL, query: str, params: dict[str, object], timeout: float
) -> tuple[list[str], list[Any]]:
    import psycopg
    from sqlalchemy.dialects.postgresql.psycopg import dialect

    # :name placeholders become psycopg's, and a literal % is escaped, as SQLAlchemy does it
    statement = str(sa.text(query).compile(dialect=dialect()))

    with _pg_connect(url) as conn:
        try:
            _refuse_powerful_pg_role(conn)
            with conn.cursor() as cur:
                # first in its transaction, as PostgreSQL requires
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
                cur.execute(statement, params, prepare=True)  # prepared: one command only
                if cur.description is None:
                    raise DataError("the statement returned no rows; give a query (SELECT)")
                columns = [d.name for d in cur.description]
                rows = cur.fetchall()
        except psycopg.errors.QueryCanceled as exc:
            raise DataError(f"the query ran longer than {timeout:g} s and was stopped") from exc
        except psycopg.Error as exc:
            raise DataError(f"the query failed: {_first_line(exc)}") from exc
        finally:
            conn.rollback()
    return columns, rows


def _sqlite_authorizer(action: int, arg1: Any, arg2: Any, _db: Any, _source: Any) -> int:
    if action not in _SQLITE_ALLOWED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _sqlite_rows(
    url: sa.URL, query: str, params: dict[str, object], timeout: float
) -> tuple[list[str], list[Any]]:
    path = url.database or ""
    if not os.path.isfile(path):
        raise DataError("the SQLite database file does not exist")
    try:
        conn = sqlite3.connect(
            f"file:{quote(path)}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise DataError(f"cannot open the SQLite database: {exc}") from exc
    deadline = time.monotonic() + timeout
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.set_authorizer(_sqlite_authorizer)
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
        try:
            cur = conn.execute(query, params)  # sqlite3 refuses a second statement
            if cur.description is None:
                raise DataError("the statement returned no rows; give a query (SELECT)")
            columns = [d[0] for d in cur.description]
            rows = cur.fetchall()
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted":
                raise DataError(f"the query ran longer than {timeout:g} s and was stopped") from exc
            raise DataError(f"the query failed: {exc}") from exc
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise DataError(f"the query failed: {exc}") from exc
    finally:
        conn.close()
    return columns, rows


def _mysql_rows(
    url: sa.URL, query: str, params: dict[str, object], timeout: float
) -> tuple[list[str], list[Any]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET SESSION MAX_EXECUTION_TIME = {max(1, int(timeout * 1000))}")
            conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
            conn.commit()  # the next transaction is the read-only one
            result = conn.execute(sa.text(query), params)
            if not result.returns_rows:
                raise DataError("the statement returned no rows; give a query (SELECT)")
            columns, rows = list(result.keys()), [tuple(r) for r in result]
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        raise DataError(f"the query failed: {_first_line(exc.orig or exc)}") from exc
    finally:
        engine.dispose()
    return columns, rows
