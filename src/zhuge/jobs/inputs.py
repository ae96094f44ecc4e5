"""Job parameters that name data, and the one check every one of them goes through.

A token holder is not the server's operating-system user: a job reads only what the server
names for the caller's tenant. Parameter models mark each field that names data with one of
these types, and nothing else reads a path or URL from a token holder:

- :data:`DataRef`: ``dataset://NAME`` or ``dataset://NAME@sha256:HEX`` (a dataset of the
  caller's tenant), ``connection://NAME/KEY`` (an object under the prefix of an object-store
  connection the caller may use; ``KEY`` relative, no ``..``), or an absolute server path under
  the caller's **allowed roots** (``ZHUGE_DATA_ROOTS`` plus the tenant's own), after ``..`` and
  symlinks are resolved, and outside the platform's own files (token, artifacts, database);
- :data:`ConnectionName`: a SQL connection the caller may use (``sql`` runs on it read-only,
  :mod:`zhuge.data.sql`);
- :data:`JobRef`: a job id of the caller's tenant (``model_from``);
- :data:`JobOrDataRef`: a job id of the caller's tenant, or a :data:`DataRef`;
- :data:`ModelRef`: ``NAME@ALIAS`` or ``NAME@VERSION`` of the caller's model registry,
  resolved to the version's job when the job starts (:meth:`Registry.use` records it).

Everything else is refused by rule, before anything is read: other URL schemes (``file:``,
``http:``, ``memory:``, ``s3:``...), wildcards, NUL bytes, Windows paths, ``~``, relative paths.

**Two checks, one rule.** :func:`check_params` runs when a job is submitted (a 422 naming the
field and the rule, never anything read from the location), and :func:`resolve_params` runs
again when the job starts, on the worker, turning each reference into a URL the readers open:
a symlink swapped after submission, a dataset removed or a connection withdrawn is caught
there, still without reading what was refused.

:func:`data_refs` walks a parameter model (nested models, lists and dicts included) and yields
every marked value; ``tests/unit/platform/test_inputs.py`` fails if a registered kind has a
field that names data without a marker.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union

import sqlalchemy as sa
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from zhuge import errors
from zhuge.jobs import schema
from zhuge.jobs.job_artifacts import checked_name

if TYPE_CHECKING:
    import pandas as pd

    from zhuge.config import Settings
    from zhuge.jobs.context import JobContext
    from zhuge.jobs.kinds import Kind
    from zhuge.jobs.model import Principal
    from zhuge.jobs.store import JobStore

__all__ = [
    "ConnectionName",
    "DataRef",
    "JobOrDataRef",
    "JobRef",
    "ModelRef",
    "check_params",
    "data_refs",
    "field_markers",
    "job_output",
    "private_paths",
    "read_connection_sql",
    "resolve_input",
    "resolve_params",
]

MARKER = "x-zhuge"  # the JSON-schema key that marks a field naming data (GET /v1/kinds shows it)
DATA, CONNECTION, JOB, JOB_OR_DATA = "data", "connection", "job", "job-or-data"
MODEL = "model"
MARKERS = (DATA, CONNECTION, JOB, JOB_OR_DATA, MODEL)

DataRef = Annotated[str, Field(json_schema_extra={MARKER: DATA})]
ConnectionName = Annotated[str, Field(json_schema_extra={MARKER: CONNECTION})]
JobRef = Annotated[int, Field(ge=1, json_schema_extra={MARKER: JOB})]
JobOrDataRef = Annotated[str, Field(json_schema_extra={MARKER: JOB_OR_DATA})]
ModelRef = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}@[A-Za-z0-9_-]{1,64}$",
        json_schema_extra={MARKER: MODEL},
    ),
]

DATASET_SCHEME = "dataset://"
JOB_SCHEME = "job://"
CONNECTION_SCHEME = "connection://"
MAX_REF_CHARS = 4096
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_WINDOWS = re.compile(r"^[A-Za-z]:|^\\\\|\\")
_WILDCARDS = "*?["
_ACCEPTED = (
    "name a dataset (dataset://NAME), an object of a connection (connection://NAME/KEY), a "
    "job's output (job://ID/NAME) or an absolute path under your allowed roots "
    "(GET /v1/data-roots)"
)

Loc = tuple[str | int, ...]


# -- finding the fields that name data -------------------------------------------------------


def _marker_in(metadata: Iterable[Any]) -> str | None:
    for item in metadata:
        extra = getattr(item, "json_schema_extra", None)
        if isinstance(extra, dict) and extra.get(MARKER) in MARKERS:
            return extra[MARKER]
    return None


def field_markers(field: FieldInfo) -> set[str]:
    """Every data marker a field's type carries, anywhere in it (``list[DataRef]``...)."""
    found = set()
    if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get(MARKER):
        found.add(field.json_schema_extra[MARKER])
    found.update(annotation_markers(field.annotation))
    return found


def annotation_markers(annotation: Any) -> set[str]:
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        marker = _marker_in(metadata)
        return {marker} if marker else annotation_markers(base)
    found: set[str] = set()
    for arg in typing.get_args(annotation):
        found |= annotation_markers(arg)
    return found


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` is of this member of a union (enough to follow the right branch)."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation) or annotation
    if annotation is Any:
        return True
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    return isinstance(origin, type) and isinstance(value, origin)


def _walk(value: Any, annotation: Any, loc: Loc) -> Iterator[tuple[Loc, str, Any]]:
    if value is None:
        return
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        marker = _marker_in(metadata)
        if marker is not None:
            yield loc, marker, value
        else:
            yield from _walk(value, base, loc)
    elif isinstance(value, BaseModel):
        yield from data_refs(value, loc)
    elif origin in (Union, types.UnionType):
        for member in typing.get_args(annotation):
            if _accepts(member, value):
                yield from _walk(value, member, loc)
                return
    elif isinstance(value, dict):
        args = typing.get_args(annotation)
        for key, item in value.items():
            yield from _walk(item, args[1] if len(args) == 2 else Any, (*loc, key))
    elif isinstance(value, list | tuple | set | frozenset):
        args = typing.get_args(annotation)
        for i, item in enumerate(value):
            yield from _walk(item, _member(origin, args, i), (*loc, i))


def _member(origin: Any, args: tuple[Any, ...], i: int) -> Any:
    """The type of item ``i`` of a ``list[T]``, ``set[T]``, ``tuple[T, ...]`` or
    ``tuple[A, B]``."""
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return args[i] if i < len(args) else Any
    return args[0] if args else Any


def data_refs(params: BaseModel, loc: Loc = ()) -> Iterator[tuple[Loc, str, Any]]:
    """``(location, marker, value)`` of every field value of ``params`` that names data,
    in nested models, lists and dicts too; unset (None) ones are skipped."""
    for name, field in type(params).model_fields.items():
        value = getattr(params, name)
        if value is None:
            continue
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get(MARKER) in MARKERS:
            yield (*loc, name), extra[MARKER], value
        else:
            yield from _walk(value, field.annotation, (*loc, name))


# -- the rules for one reference -----------------------------------------------------------


class _Refused(Exception):
    """A reference broke a rule; the message names the rule (and never anything read)."""


@dataclass(frozen=True)
class _Path:
    path: str


@dataclass(frozen=True)
class _Dataset:
    ref: str


@dataclass(frozen=True)
class _Object:
    connection: str
    key: str


@dataclass(frozen=True)
class _JobFile:
    """``job://ID/NAME``: file NAME of job ID's committed outputs (an upstream job's)."""

    job_id: int
    name: str


def _classify(text: Any) -> _Path | _Dataset | _Object | _JobFile:
    """Which kind of reference ``text`` is, by syntax alone; ``_Refused`` naming the rule."""
    if not isinstance(text, str) or not text.strip():
        raise _Refused("is empty; " + _ACCEPTED)
    if "\x00" in text:
        raise _Refused("contains a NUL byte")
    if len(text) > MAX_REF_CHARS:
        raise _Refused(f"is longer than {MAX_REF_CHARS} characters")
    if text.startswith(DATASET_SCHEME):
        return _Dataset(text)
    if text.startswith(JOB_SCHEME):
        job_id, _, name = text[len(JOB_SCHEME) :].partition("/")
        if not job_id.isdigit() or not 0 < int(job_id) < 2**63 or not name:
            raise _Refused("is not job://ID/NAME (a file a job of yours wrote)")
        try:
            checked_name(name)
        except errors.InvalidRequest:
            raise _Refused("names no file of a job's outputs (a relative name, no '..')") from None
        return _JobFile(int(job_id), name)
    if text.startswith(CONNECTION_SCHEME):
        name, _, key = text[len(CONNECTION_SCHEME) :].partition("/")
        segments = key.split("/")
        if not name or not key:
            raise _Refused("is not connection://NAME/KEY")
        if any(s in ("", ".", "..") for s in segments) or "\\" in key:
            raise _Refused("has a KEY that is not relative to the connection's prefix ('..')")
        if any(c in key for c in _WILDCARDS):
            raise _Refused("has wildcards (*, ?, [): name one object")
        return _Object(name, key)
    if _WINDOWS.search(text):
        raise _Refused("is a Windows-style path (drive letter, UNC or backslash)")
    scheme = _URL_SCHEME.match(text)
    if scheme is not None:
        raise _Refused(
            f"is a URL of scheme {scheme.group(1)!r}, which jobs may not read; {_ACCEPTED}"
        )
    if "::" in text or "://" in text:
        raise _Refused("holds '::' or '://' (a chained URL)")
    if text.startswith("~"):
        raise _Refused("starts with '~', which is not expanded; give an absolute path")
    if any(c in text for c in _WILDCARDS):
        raise _Refused("has wildcards (*, ?, [): name one file or folder")
    if not text.startswith("/"):
        raise _Refused(f"is a relative path; {_ACCEPTED}")
    return _Path(text)


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder == "/" else folder + "/")


def _local_path(url: str | None) -> str | None:
    """The local folder or file of a ``file://`` URL or a path; None for other schemes."""
    if not url:
        return None
    if url.startswith("file://"):
        return url.removeprefix("file://")
    return None if _URL_SCHEME.match(url) else url


def _database_files(db_url: str | None) -> list[str]:
    if not db_url or not db_url.startswith("sqlite"):
        return []
    database = sa.make_url(db_url).database
    if not database or database == ":memory:":
        return []
    path = os.path.realpath(database)
    return [path, *(path + suffix for suffix in ("-wal", "-shm", "-journal"))]


def private_paths(settings: Settings) -> tuple[str, ...]:
    """The platform's own files, which no data reference may reach (roots notwithstanding):
    its token file, its local artifacts (every tenant's outputs and datasets) and its SQLite
    database. Other files in its home are the user's, like any under a root."""
    paths = [os.path.realpath(settings.token_path)]
    artifacts = _local_path(settings.artifacts_root)
    if artifacts:
        paths.append(os.path.realpath(artifacts))
    paths.extend(_database_files(settings.database_url))
    return tuple(dict.fromkeys(paths))


@dataclass(frozen=True)
class _Scope:
    """Who asks, and what the server lets it read: built at submit from the principal, at run
    time from the job's context."""

    tenant: str
    principal: Principal | None  # None at run time: the submit checked the role
    roots: tuple[str, ...]  # ZHUGE_DATA_ROOTS (the tenant's own are read from the store)
    private: tuple[str, ...]
    engine: sa.Engine | None
    artifacts_root: str
    platform_db_url: str | None

    def allowed_roots(self) -> list[str]:
        return allowed_roots(self.engine, self.tenant, self.roots)

    def check_path(self, given: str) -> str:
        """The resolved path of ``given`` if it lies under an allowed root and outside the
        platform's files; ``_Refused`` otherwise (whether or not it exists)."""
        resolved = os.path.realpath(given)
        if not any(_inside(resolved, root) for root in self.allowed_roots()):
            raise _Refused(
                "is outside your allowed roots (after resolving '..' and symlinks); " + _ACCEPTED
            )
        if any(_inside(resolved, own) for own in self.private):
            raise _Refused("lies in the platform's own files (token, artifacts or database)")
        return resolved

    def check_folder(self, folder: str) -> None:
        """Every symlink under a folder must stay in the allowed roots too."""
        for here, dirs, files in os.walk(folder):
            for name in (*dirs, *files):
                entry = os.path.join(here, name)
                if os.path.islink(entry):
                    self.check_path(entry)

    def datasets(self) -> Any:
        from zhuge.jobs.datasets import Datasets

        if self.engine is None:
            raise _Refused("names a dataset, but this job runs without the platform's store")
        return Datasets(self.engine, self.artifacts_root)

    def connection(self, name: str, kind: str) -> Any:
        from zhuge.jobs.connections import NAME_PATTERN, Connections

        what = "SQL database" if kind == "sql" else "object store"
        if self.engine is None:
            raise _Refused("names a connection, but this job runs without the platform's store")
        found = Connections(self.engine).get(name) if NAME_PATTERN.fullmatch(name) else None
        usable = found is not None and (
            found.usable_by(self.principal)
            if self.principal is not None
            else found.tenant in (None, self.tenant)
        )
        if not usable or found.kind != kind:
            raise _Refused(f"names no {what} connection {name!r} that you may use")
        return found


def allowed_roots(
    engine: sa.Engine | None, tenant: str, roots: Iterable[str | os.PathLike]
) -> list[str]:
    """The folders ``tenant`` may read directly: the server's roots and the tenant's own
    (``tenants.data_roots``), each resolved."""
    found = [str(r) for r in roots]
    if engine is not None:
        T = schema.tenants
        with engine.connect() as conn:
            own = conn.execute(sa.select(T.c.data_roots).where(T.c.name == tenant)).scalar()
        found.extend(str(r) for r in own or [] if isinstance(r, str))
    return list(dict.fromkeys(os.path.realpath(r) for r in found if os.path.isabs(r)))


def _submit_scope(principal: Principal, settings: Settings, store: JobStore) -> _Scope:
    return _Scope(
        tenant=principal.tenant,
        principal=principal,
        roots=tuple(str(r) for r in settings.data_roots),
        private=private_paths(settings),
        engine=store.engine,
        artifacts_root=settings.artifacts_root,
        platform_db_url=settings.database_url,
    )


def _run_scope(ctx: JobContext) -> _Scope:
    from zhuge.jobs.store import store_for

    private = [*ctx.private_paths, *_database_files(ctx.db_url)]
    artifacts = _local_path(ctx.artifacts_root.url)
    if artifacts:
        private.append(os.path.realpath(artifacts))
    return _Scope(
        tenant=ctx.tenant,
        principal=None,
        roots=tuple(ctx.data_roots),
        private=tuple(private),
        engine=store_for(ctx.db_url).engine if ctx.db_url else None,
        artifacts_root=ctx.artifacts_root.url,
        platform_db_url=ctx.db_url,
    )


def _where(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def _refusal(loc: Loc, value: Any, why: str) -> errors.InvalidParams:
    shown = value if isinstance(value, int) else repr(str(value)[:200])
    message = f"{_where(loc)} {shown} {why}"
    return errors.InvalidParams(
        message, details=[{"loc": list(loc), "msg": f"{shown} {why}", "type": "data_ref"}]
    )


def _check_job(scope: _Scope, value: Any) -> None:
    job_id = int(value)
    if scope.engine is None:
        raise _Refused("names a job, but this job runs without the platform's store")
    J = schema.jobs
    with scope.engine.connect() as conn:
        found = conn.execute(
            sa.select(J.c.id).where(J.c.id == job_id, J.c.tenant == scope.tenant)
        ).first()
    if found is None:
        raise _Refused("is no such job in your tenant")


def _check_data(scope: _Scope, value: Any) -> None:
    ref = _classify(value)
    if isinstance(ref, _Dataset):
        try:
            scope.datasets().get(scope.tenant, ref.ref)
        except errors.NotFound as exc:
            raise _Refused("is no dataset of your tenant") from exc
        except errors.InvalidRequest as exc:
            raise _Refused(f"is not a dataset reference ({exc.message})") from exc
    elif isinstance(ref, _Object):
        scope.connection(ref.connection, "objects")
    elif isinstance(ref, _JobFile):
        _check_job(scope, ref.job_id)  # it may not have run yet: a job submitted after it
    else:
        scope.check_path(ref.path)


def _check_model(scope: _Scope, value: Any, kind: str | None = None) -> None:
    """``value`` names a version of the tenant's registry (of the task ``kind`` needs)."""
    from zhuge.jobs.registry import Registry, task_of_kind

    if scope.engine is None:
        raise _Refused("names a registered model, but this job runs without the platform's store")
    registry = Registry(scope.engine)
    try:
        found = registry.resolve(scope.tenant, str(value))
        task = registry.task(scope.tenant, found.model)
    except errors.NotFound as exc:
        raise _Refused(f"is no registered model version of your tenant ({exc.message})") from exc
    except errors.InvalidRequest as exc:
        raise _Refused(exc.message) from exc
    if kind is not None and task != task_of_kind(kind):
        raise _Refused(f"is a {task} model; {kind} takes a {task_of_kind(kind)} model")


def _use_model(scope: _Scope, value: Any, ctx: JobContext) -> int:
    """The job id of the version ``value`` names now, its use recorded in the registry."""
    from zhuge.jobs.registry import Registry

    _check_model(scope, value)
    assert scope.engine is not None
    found = Registry(scope.engine).use(
        scope.tenant,
        str(value),
        job_id=ctx.job_id,
        artifacts_root=scope.artifacts_root,
        attempt=ctx.attempt,
    )
    ctx.log(f"model {value} is version {found.version} (the model of job {found.job_id})")
    assert found.job_id is not None
    return found.job_id


def _check_one(scope: _Scope, marker: str, value: Any, kind: str | None = None) -> None:
    if marker == MODEL:
        _check_model(scope, value, kind)
    elif marker == JOB or (marker == JOB_OR_DATA and str(value).strip().isdigit()):
        _check_job(scope, value)
    elif marker in (DATA, JOB_OR_DATA):
        _check_data(scope, value)
    elif marker == CONNECTION:
        scope.connection(str(value), "sql")


def check_params(
    kind: Kind | str,
    params: BaseModel,
    principal: Principal,
    settings: Settings,
    store: JobStore,
    *,
    ignore: Callable[[Any], bool] | None = None,
) -> None:
    """Refuse, with ``InvalidParams`` naming the field and the rule, a job whose parameters
    name data ``principal`` may not read (module docstring). Reads nothing from any location.
    ``ignore``: values checked elsewhere (a pipeline's ``step://`` references to its own
    steps, ``zhuge.jobs.pipelines``)."""
    scope = _submit_scope(principal, settings, store)
    name = kind if isinstance(kind, str) else kind.name
    for loc, marker, value in data_refs(params):
        if ignore is not None and ignore(value):
            continue
        try:
            _check_one(scope, marker, value, name)
        except _Refused as exc:
            raise _refusal(loc, value, str(exc)) from None


# -- at run time ----------------------------------------------------------------------------


def _job_file(scope: _Scope, ref: _JobFile) -> str:
    """The URL of the committed artifact ``ref`` names: the job must be the tenant's, have
    succeeded, and list the file (``GET /v1/jobs/{id}/artifacts`` shows the same names)."""
    from zhuge.jobs.job_artifacts import attempt_artifacts
    from zhuge.jobs.store import _row_to_job

    if scope.engine is None:
        raise _Refused("names a job, but this job runs without the platform's store")
    J = schema.jobs
    with scope.engine.connect() as conn:
        row = conn.execute(
            sa.select(J).where(J.c.id == ref.job_id, J.c.tenant == scope.tenant)
        ).first()
    if row is None:
        raise _Refused("is no such job in your tenant")
    job = _row_to_job(row)
    if job.state.value != "succeeded":
        raise _Refused(f"is an output of job {job.id}, which is {job.state.value}, not succeeded")
    artifacts = attempt_artifacts(job, scope.artifacts_root)
    if ref.name not in artifacts.files:
        listed = ", ".join(sorted(artifacts.files)[:20]) or "none"
        raise _Refused(f"names no artifact of job {job.id} (it has: {listed})")
    return artifacts.folder.path(ref.name)


def _resolve(scope: _Scope, value: str) -> str:
    ref = _classify(value)
    if isinstance(ref, _JobFile):
        return _job_file(scope, ref)
    if isinstance(ref, _Dataset):
        try:
            return scope.datasets().get(scope.tenant, ref.ref).url(scope.artifacts_root)
        except errors.NotFound as exc:
            raise _Refused("is no dataset of your tenant") from exc
    if isinstance(ref, _Object):
        connection = scope.connection(ref.connection, "objects")
        prefix = connection.url.rstrip("/")
        if prefix.startswith("file://"):
            folder = os.path.realpath(prefix.removeprefix("file://"))
            path = os.path.realpath(os.path.join(folder, ref.key))
            if not _inside(path, folder):
                raise _Refused("leads out of the connection's prefix (a symlink)")
            return path
        return f"{prefix}/{ref.key}"
    path = scope.check_path(ref.path)
    if os.path.isdir(path):
        scope.check_folder(path)
    return path


def resolve_input(ref: str, ctx: JobContext) -> str:
    """The URL to read for the data reference ``ref`` of the job running in ``ctx``, after
    checking it again (a ``DataError`` naming the rule if it no longer holds)."""
    try:
        return _resolve(_run_scope(ctx), ref)
    except _Refused as exc:
        raise errors.DataError(f"{ref!r} {exc}") from None


def resolve_params(params: BaseModel, ctx: JobContext) -> BaseModel:
    """``params`` with every data reference replaced by the URL to read (job ids are checked
    and kept; kinds find a job's outputs with :func:`job_output`). Called by the runner before
    a kind's code runs, so no kind reads a reference that was not checked again."""
    scope = _run_scope(ctx)
    data = params.model_dump()
    changed = False
    for loc, marker, value in data_refs(params):
        try:
            if marker == JOB or (marker == JOB_OR_DATA and str(value).strip().isdigit()):
                _check_job(scope, value)
            elif marker == MODEL:
                _set(data, loc, _use_model(scope, value, ctx))
                changed = True
            elif marker == CONNECTION:
                scope.connection(str(value), "sql")
            else:
                _set(data, loc, _resolve(scope, value))
                changed = True
        except _Refused as exc:
            raise errors.DataError(f"{_where(loc)} {str(value)[:200]!r} {exc}") from None
    return type(params).model_validate(data) if changed else params


def _set(data: Any, loc: Loc, value: Any) -> None:
    for part in loc[:-1]:
        data = data[part]
    data[loc[-1]] = value


def job_output(ctx: JobContext, job_id: int | str, name: str) -> str:
    """The URL of file ``name`` that job ``job_id`` (of the caller's tenant, succeeded) wrote
    in its committed attempt's artifacts."""
    from zhuge.jobs.states import JobState
    from zhuge.jobs.store import store_for

    if not ctx.db_url:
        raise errors.DataError(f"job {job_id}: this job runs without the platform's store")
    try:
        job = store_for(ctx.db_url).get(int(job_id), tenant=ctx.tenant)
    except errors.JobNotFound:
        raise errors.DataError(f"job {job_id} is no such job in your tenant") from None
    if job.state is not JobState.SUCCEEDED:
        raise errors.DataError(f"job {job_id} is {job.state.value}, not succeeded")
    return ctx.artifacts_root.child(job.artifact_prefix()).path(name)


def read_connection_sql(
    query: str, connection: str, ctx: JobContext, *, timeout_seconds: float | None = None
) -> pd.DataFrame:
    """The rows of ``query`` on SQL connection ``connection``, run read-only
    (:mod:`zhuge.data.sql`): the connection is checked again, and so is its role."""
    from zhuge.data.sql import QUERY_TIMEOUT_SECONDS, read_only_query
    from zhuge.jobs.connections import check_not_platform_database

    scope = _run_scope(ctx)
    try:
        found = scope.connection(connection, "sql")
    except _Refused as exc:
        raise errors.DataError(f"connection {connection!r} {exc}") from None
    check_not_platform_database(found, scope.platform_db_url)
    try:
        return read_only_query(
            found.url, query, timeout_seconds=timeout_seconds or QUERY_TIMEOUT_SECONDS
        )
    except errors.InvalidRequest as exc:
        raise errors.DataError(f"connection {connection!r}: {exc.message}") from exc
