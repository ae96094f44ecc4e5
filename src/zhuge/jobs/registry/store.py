"""The model registry's rows: registered models, numbered versions, aliases, their history,
and the live record.

A registered model is a name in a tenant (``fleet-cpu``) with its release gate's settings
(:class:`ModelConfig`). Each ``register`` adds version ``max + 1`` (never reused, even after a
version is removed) pointing at the model folder a job saved and the SHA-256 of its manifest,
with its lineage. Aliases (``champion``, ``challenger``, any other) name one version each.

Invariants kept here:

- every read and write is by tenant: another tenant's model is answered exactly like a
  missing one;
- every alias change is one transaction with its event row (``model_events``): the alias
  history is complete, and ``rollback`` is computed from it alone;
- versions of one model are numbered under one lock per model (SQLite's writer lock, a
  PostgreSQL advisory lock), so two registrations at once get two numbers;
- the first version of a model becomes ``champion``;
- a version an alias points at cannot be removed;
- a job that uses a model records, once, the reference it was given and the version it
  resolved to (``jobs.model_ref``, ``jobs.model_version``): a retry of the job uses that
  version again, and a later promotion changes nothing the job recorded;
- a model holds one task's versions (``forecast``, gated; ``cluster``, promoted by hand).
"""

from __future__ import annotations

import builtins
import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zhuge import errors
from zhuge.artifacts import ArtifactDir
from zhuge.jobs import schema
from zhuge.jobs.registry.model import (
    CHALLENGER,
    CHAMPION,
    ModelConfig,
    ModelVersion,
    check_alias,
    check_config,
    check_name,
    parse_ref,
    verified_folder,
)
from zhuge.jobs.store import reading, transaction

# actions that move the champion alias, in the history
CHAMPION_MOVES = frozenset({"register", "alias", "promote", "gate", "rollback", "drift"})

M, V, A, E, S = (
    schema.registered_models,
    schema.model_versions,
    schema.model_aliases,
    schema.model_events,
    schema.model_scores,
)
J = schema.jobs
TASKS = ("forecast", "cluster")


class Registry:
    """Register, alias, promote, roll back, remove and resolve model versions of a tenant."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def _tx(self) -> AbstractContextManager[Connection]:
        return transaction(self.engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return reading(self.engine)

    @staticmethod
    def _lock(conn: Connection, tenant: str, name: str) -> None:
        """One writer per model until the transaction ends (SQLite: BEGIN IMMEDIATE does)."""
        if conn.dialect.name == "postgresql":
            key = f"zhuge-model/{tenant}/{name}".encode()
            lock_id = int.from_bytes(hashlib.sha256(key).digest()[:8], "big", signed=True)
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})

    # -- reads ----------------------------------------------------------------------------

    def _model_row(self, conn: Connection, tenant: str, name: str) -> sa.Row[Any]:
        row = conn.execute(sa.select(M).where(M.c.tenant == tenant, M.c.name == name)).first()
        if row is None:
            raise errors.ModelNotFound(
                f"no registered model {name!r} in this tenant", details={"model": name}
            )
        return row

    @staticmethod
    def _aliases(conn: Connection, tenant: str, name: str) -> dict[str, int]:
        rows = conn.execute(
            sa.select(A.c.alias, A.c.version)
            .where(A.c.tenant == tenant, A.c.model == name)
            .order_by(A.c.alias)
        )
        return {r.alias: r.version for r in rows}

    @staticmethod
    def _version(row: sa.Row[Any], aliases: dict[str, int]) -> ModelVersion:
        m = row._mapping
        return ModelVersion(
            tenant=m["tenant"],
            model=m["model"],
            version=m["version"],
            created_at=m["created_at"],
            created_by=m["created_by"],
            job_id=m["job_id"],
            artifact=m["artifact"],
            manifest_sha256=m["manifest_sha256"],
            lineage=m["lineage"] or {},
            metrics=m["metrics"],
            gate=m["gate"],
            aliases=tuple(sorted(a for a, v in aliases.items() if v == m["version"])),
        )

    def _get_version(self, conn: Connection, tenant: str, name: str, version: int) -> ModelVersion:
        self._model_row(conn, tenant, name)
        row = conn.execute(
            sa.select(V).where(V.c.tenant == tenant, V.c.model == name, V.c.version == version)
        ).first()
        if row is None:
            raise errors.ModelNotFound(
                f"model {name!r} has no version {version}",
                details={"model": name, "version": version},
            )
        return self._version(row, self._aliases(conn, tenant, name))

    def config(self, tenant: str, name: str) -> ModelConfig:
        with self._read() as conn:
            return ModelConfig.model_validate(self._model_row(conn, tenant, name).config)

    def version(self, tenant: str, name: str, version: int) -> ModelVersion:
        check_name(name)
        with self._read() as conn:
            return self._get_version(conn, tenant, name, int(version))

    def resolve(self, tenant: str, ref: str) -> ModelVersion:
        """The version ``NAME@ALIAS`` or ``NAME@VERSION`` names now; ModelNotFound if none."""
        name, at = parse_ref(ref)
        with self._read() as conn:
            if isinstance(at, int):
                return self._get_version(conn, tenant, name, at)
            self._model_row(conn, tenant, name)
            aliases = self._aliases(conn, tenant, name)
            if at not in aliases:
                raise errors.ModelNotFound(
                    f"model {name!r} has no alias {at!r} (aliases: "
                    f"{', '.join(sorted(aliases)) or 'none'})",
                    details={"model": name, "alias": at},
                )
            return self._get_version(conn, tenant, name, aliases[at])

    def versions(self, tenant: str, name: str) -> builtins.list[ModelVersion]:
        check_name(name)
        with self._read() as conn:
            self._model_row(conn, tenant, name)
            aliases = self._aliases(conn, tenant, name)
            rows = conn.execute(
                sa.select(V).where(V.c.tenant == tenant, V.c.model == name).order_by(V.c.version)
            )
            return [self._version(r, aliases) for r in rows]

    def aliases(self, tenant: str, name: str) -> dict[str, int]:
        check_name(name)
        with self._read() as conn:
            self._model_row(conn, tenant, name)
            return self._aliases(conn, tenant, name)

    def events(self, tenant: str, name: str) -> builtins.list[dict[str, Any]]:
        """The model's history, oldest first: registrations, alias changes, gate decisions,
        removals, uses, drift actions."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(E).where(E.c.tenant == tenant, E.c.model == name).order_by(E.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def scores(self, tenant: str, name: str) -> builtins.list[dict[str, Any]]:
        """The live record, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(S).where(S.c.tenant == tenant, S.c.model == name).order_by(S.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def list(self, tenant: str) -> builtins.list[dict[str, Any]]:
        """Every registered model of ``tenant``: name, versions, latest, aliases."""
        with self._read() as conn:
            models = conn.execute(sa.select(M).where(M.c.tenant == tenant).order_by(M.c.name))
            counts = {
                r.model: (r.n, r.latest)
                for r in conn.execute(
                    sa.select(
                        V.c.model,
                        sa.func.count().label("n"),
                        sa.func.max(V.c.version).label("latest"),
                    )
                    .where(V.c.tenant == tenant)
                    .group_by(V.c.model)
                )
            }
            aliases: dict[str, dict[str, int]] = {}
            for r in conn.execute(sa.select(A).where(A.c.tenant == tenant)):
                aliases.setdefault(r.model, {})[r.alias] = r.version
            return [
                {
                    "name": m.name,
                    "created_at": m.created_at,
                    "versions": counts.get(m.name, (0, None))[0],
                    "latest": counts.get(m.name, (0, None))[1],
                    "aliases": dict(sorted(aliases.get(m.name, {}).items())),
                    "config": m.config,
                    "task": m.task,
                }
                for m in models
            ]

    def show(self, tenant: str, name: str) -> dict[str, Any]:
        """Everything about one model: config, versions (lineage, gate decision), aliases,
        alias history, events, live record."""
        check_name(name)
        with self._read() as conn:
            row = self._model_row(conn, tenant, name)
        history = self.events(tenant, name)
        return {
            "name": name,
            "created_at": row.created_at,
            "created_by": row.created_by,
            "config": row.config,
            "task": row.task,
            "aliases": self.aliases(tenant, name),
            "versions": [v.as_dict() for v in self.versions(tenant, name)],
            "alias_history": [e for e in history if e["alias"] is not None],
            "events": history,
            "used_by": self.used_by(tenant, name),
            "live": self.scores(tenant, name),
        }

    def task(self, tenant: str, name: str) -> str:
        """What the model's versions are: ``forecast`` or ``cluster``."""
        with self._read() as conn:
            return str(self._model_row(conn, tenant, name).task)

    def used_by(self, tenant: str, name: str) -> builtins.list[dict[str, Any]]:
        """The jobs that used the model, oldest first: each job's id, kind and state, the
        reference it was given and the version it resolved to (as the job recorded it)."""
        with self._read() as conn:
            uses = conn.execute(
                sa.select(E.c.job_id, E.c.version, E.c.at)
                .where(E.c.tenant == tenant, E.c.model == name, E.c.action == "use")
                .order_by(E.c.id)
            ).all()
            ids = [u.job_id for u in uses if u.job_id is not None]
            jobs = {
                r.id: r
                for r in conn.execute(
                    sa.select(J.c.id, J.c.kind, J.c.state, J.c.model_ref, J.c.model_version).where(
                        J.c.tenant == tenant, J.c.id.in_(ids)
                    )
                )
            }
        out = []
        for u in uses:
            job = jobs.get(u.job_id)
            out.append(
                {
                    "job_id": u.job_id,
                    "version": u.version,
                    "at": u.at,
                    "kind": job.kind if job else None,
                    "state": job.state if job else None,
                    "model_ref": job.model_ref if job else None,
                    "model_version": job.model_version if job else None,
                }
            )
        return out

    def champion_stack(self, tenant: str, name: str) -> builtins.list[int]:
        """The champions in turn, as the history leaves them: each move of the alias pushes
        its version, each rollback pops the current one (so two rollbacks go two back)."""
        stack: builtins.list[int] = []
        for e in self.events(tenant, name):
            if e["alias"] != CHAMPION or e["action"] not in CHAMPION_MOVES:
                continue
            if e["action"] == "rollback":
                if stack:
                    stack.pop()
                if not stack or stack[-1] != e["version"]:
                    stack.append(e["version"])
            elif not stack or stack[-1] != e["version"]:
                stack.append(e["version"])
        return stack

    def previous_champion(self, tenant: str, name: str) -> int | None:
        """The champion before the current one that still exists; None when there is none."""
        existing = {v.version for v in self.versions(tenant, name)}
        stack = self.champion_stack(tenant, name)
        for version in reversed(stack[:-1]):
            if version in existing and version != (stack[-1] if stack else None):
                return version
        return None

    # -- writes ---------------------------------------------------------------------------

    def _event(self, conn: Connection, tenant: str, name: str, action: str, **values: Any) -> None:
        conn.execute(
            E.insert().values(tenant=tenant, model=name, at=self.clock(), action=action, **values)
        )

    def _set_alias(
        self,
        conn: Connection,
        tenant: str,
        name: str,
        alias: str,
        version: int,
        *,
        action: str,
        actor: str | None,
        reason: str,
        job_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> int | None:
        previous = self._aliases(conn, tenant, name).get(alias)
        where = [A.c.tenant == tenant, A.c.model == name, A.c.alias == alias]
        if previous is None:
            conn.execute(
                A.insert().values(
                    tenant=tenant, model=name, alias=alias, version=version, updated_at=self.clock()
                )
            )
        else:
            conn.execute(A.update().where(*where).values(version=version, updated_at=self.clock()))
        self._event(
            conn,
            tenant,
            name,
            action,
            alias=alias,
            version=version,
            previous_version=previous,
            actor=actor,
            reason=reason,
            job_id=job_id,
            details=details,
        )
        return previous

    def register(
        self,
        tenant: str,
        name: str,
        *,
        artifact: str,
        manifest_sha256: str,
        lineage: dict[str, Any],
        job_id: int | None = None,
        metrics: dict[str, Any] | None = None,
        created_by: str | None = None,
        config: dict[str, Any] | None = None,
        task: str = "forecast",
        gate: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Add the next version of ``name`` (creating the model with ``config``; a given
        ``config`` of an existing model replaces its settings). The first becomes champion.
        ``task``: what the version is (a model holds one task's versions); ``gate``: its
        decision when no gate judges it (a cluster version)."""
        check_name(name)
        if task not in TASKS:
            raise ValueError(f"unknown model task {task!r}")
        settings = check_config(config) if config is not None else None
        with self._tx() as conn:
            self._lock(conn, tenant, name)
            model = conn.execute(sa.select(M).where(M.c.tenant == tenant, M.c.name == name)).first()
            if model is None:
                conn.execute(
                    M.insert().values(
                        tenant=tenant,
                        name=name,
                        created_at=self.clock(),
                        created_by=created_by,
                        config=(settings or ModelConfig()).model_dump(),
                        task=task,
                    )
                )
            elif model.task != task:
                raise errors.Conflict(
                    f"model {name!r} holds {model.task} models, not a {task} model: register "
                    "it under another name",
                    details={"model": name, "task": model.task},
                )
            elif settings is not None:
                conn.execute(
                    M.update()
                    .where(M.c.tenant == tenant, M.c.name == name)
                    .values(config=settings.model_dump())
                )
            # never reuse a number, even of a removed version: the history names them
            latest = conn.execute(
                sa.select(sa.func.max(E.c.version)).where(
                    E.c.tenant == tenant, E.c.model == name, E.c.action == "register"
                )
            ).scalar()
            version = int(latest or 0) + 1
            conn.execute(
                V.insert().values(
                    tenant=tenant,
                    model=name,
                    version=version,
                    created_at=self.clock(),
                    created_by=created_by,
                    job_id=job_id,
                    artifact=artifact,
                    manifest_sha256=manifest_sha256,
                    lineage=lineage,
                    metrics=metrics,
                    gate=gate,
                )
            )
            self._event(
                conn, tenant, name, "register", version=version, job_id=job_id, actor=created_by
            )
            if CHAMPION not in self._aliases(conn, tenant, name):
                self._set_alias(
                    conn,
                    tenant,
                    name,
                    CHAMPION,
                    version,
                    action="register",
                    actor=created_by,
                    reason="the first version of a model becomes champion",
                    job_id=job_id,
                )
            return self._get_version(conn, tenant, name, version)

    def set_config(self, tenant: str, name: str, changes: dict[str, Any]) -> ModelConfig:
        check_name(name)
        with self._tx() as conn:
            row = self._model_row(conn, tenant, name)
            config = check_config({**row.config, **changes})
            conn.execute(
                M.update()
                .where(M.c.tenant == tenant, M.c.name == name)
                .values(config=config.model_dump())
            )
        return config

    def set_alias(
        self,
        tenant: str,
        name: str,
        alias: str,
        version: int,
        *,
        actor: str | None = None,
        action: str = "alias",
        reason: str = "",
        job_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (which must exist); recorded in the history."""
        check_name(name)
        check_alias(alias)
        with self._tx() as conn:
            self._lock(conn, tenant, name)
            self._get_version(conn, tenant, name, int(version))
            self._set_alias(
                conn,
                tenant,
                name,
                alias,
                int(version),
                action=action,
                actor=actor,
                reason=reason or f"{alias} set by hand",
                job_id=job_id,
                details=details,
            )
            return self._get_version(conn, tenant, name, int(version))

    def promote(
        self, tenant: str, name: str, version: int, *, actor: str | None = None, reason: str = ""
    ) -> ModelVersion:
        """Make ``version`` the champion by hand (the gate does it on evidence)."""
        return self.set_alias(
            tenant,
            name,
            CHAMPION,
            version,
            actor=actor,
            action="promote",
            reason=reason or "promoted by hand",
        )

    def rollback(
        self,
        tenant: str,
        name: str,
        *,
        actor: str | None = None,
        reason: str = "",
        action: str = "rollback",
        details: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Make the previous champion (from the alias history) champion again."""
        check_name(name)
        previous = self.previous_champion(tenant, name)
        if previous is None:
            raise errors.Conflict(
                f"model {name!r} has no previous champion to roll back to",
                details={"model": name},
            )
        with self._tx() as conn:
            self._lock(conn, tenant, name)
            self._get_version(conn, tenant, name, previous)
            self._set_alias(
                conn,
                tenant,
                name,
                CHAMPION,
                previous,
                action="rollback",
                actor=actor,
                reason=reason or "rolled back by hand",
                details=details,
            )
            if action != "rollback":  # a drift action: say what decided it
                self._event(
                    conn, tenant, name, action, version=previous, actor=actor, reason=reason
                )
            return self._get_version(conn, tenant, name, previous)

    def remove(self, tenant: str, name: str, version: int, *, actor: str | None = None) -> int:
        """Remove one version (its artifacts stay with the job that made them). Refused for a
        version an alias points at."""
        check_name(name)
        with self._tx() as conn:
            self._lock(conn, tenant, name)
            found = self._get_version(conn, tenant, name, int(version))
            if found.aliases:
                names = ", ".join(found.aliases)
                raise errors.Conflict(
                    f"version {version} of {name!r} is {names}: point the alias elsewhere first "
                    f"(zhuge models promote / alias), then remove it",
                    details={"model": name, "version": version, "aliases": list(found.aliases)},
                )
            conn.execute(
                V.delete().where(
                    V.c.tenant == tenant, V.c.model == name, V.c.version == int(version)
                )
            )
            self._event(conn, tenant, name, "remove", version=int(version), actor=actor)
        return int(version)

    def record_gate(
        self,
        tenant: str,
        name: str,
        version: int,
        gate: dict[str, Any],
        *,
        promote: bool,
        job_id: int | None = None,
    ) -> ModelVersion:
        """Store the gate's decision and evidence on the version; move ``champion`` to it
        when ``promote``, else point ``challenger`` at it."""
        with self._tx() as conn:
            self._lock(conn, tenant, name)
            self._get_version(conn, tenant, name, version)
            conn.execute(
                V.update()
                .where(V.c.tenant == tenant, V.c.model == name, V.c.version == version)
                .values(gate=gate)
            )
            alias = CHAMPION if promote else CHALLENGER
            current = self._aliases(conn, tenant, name).get(CHAMPION)
            if promote or current != version:
                self._set_alias(
                    conn,
                    tenant,
                    name,
                    alias,
                    version,
                    action="gate",
                    actor=None,
                    reason=str(gate.get("reason", "")),
                    job_id=job_id,
                    details={"decision": gate.get("decision")},
                )
            return self._get_version(conn, tenant, name, version)

    def recorded(self, tenant: str, job_id: int) -> tuple[str | None, str | None]:
        """(reference given, version it resolved to) as job ``job_id`` recorded them."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(J.c.model_ref, J.c.model_version).where(
                    J.c.id == job_id, J.c.tenant == tenant
                )
            ).first()
        return (row.model_ref, row.model_version) if row is not None else (None, None)

    def use(
        self,
        tenant: str,
        ref: str,
        *,
        job_id: int,
        artifacts_root: str,
        attempt: int | None = None,
    ) -> ModelVersion:
        """Resolve ``ref`` for job ``job_id`` as it starts: the version it names now, whose
        manifest must still be the one registered. The first attempt to resolve it records
        the reference and the version on the job (``jobs.model_ref``, ``model_version``;
        fenced by ``attempt`` when given) and a ``use`` in the model's history; a later
        attempt of the same job uses the version recorded, whatever the alias names by then.
        The files' own hashes are checked when the job loads them."""
        given, pinned = self.recorded(tenant, job_id)
        if pinned is not None and given == ref:
            try:
                found = self.resolve(tenant, pinned)
            except errors.ModelNotFound as exc:
                raise errors.DataError(
                    f"model {pinned}, which {ref} resolved to when this job first started, "
                    f"is gone ({exc.message})"
                ) from exc
        else:
            found = self.resolve(tenant, ref)
        if found.job_id is None:
            raise errors.DataError(f"model {found.ref} has no job whose model folder to load")
        verified_folder(ArtifactDir(artifacts_root), found)
        with self._tx() as conn:
            where = [J.c.id == job_id, J.c.tenant == tenant, J.c.model_version.is_(None)]
            if attempt is not None:
                where.append(J.c.attempt == attempt)
            conn.execute(J.update().where(*where).values(model_ref=ref, model_version=found.ref))
            seen = conn.execute(
                sa.select(E.c.id).where(
                    E.c.tenant == tenant,
                    E.c.model == found.model,
                    E.c.action == "use",
                    E.c.job_id == job_id,
                )
            ).first()
            if seen is None:
                self._event(
                    conn,
                    tenant,
                    found.model,
                    "use",
                    version=found.version,
                    job_id=job_id,
                    reason=f"{ref} resolved to version {found.version}",
                )
        return found

    def record_metrics(self, tenant: str, name: str, version: int, metrics: dict[str, Any]) -> None:
        """A version's own scores (on the gate's held-out windows)."""
        with self._tx() as conn:
            self._get_version(conn, tenant, name, version)
            conn.execute(
                V.update()
                .where(V.c.tenant == tenant, V.c.model == name, V.c.version == version)
                .values(metrics=metrics)
            )

    def record_event(
        self,
        tenant: str,
        name: str,
        action: str,
        *,
        version: int | None = None,
        job_id: int | None = None,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> None:
        with self._tx() as conn:
            self._model_row(conn, tenant, name)
            self._event(
                conn,
                tenant,
                name,
                action,
                version=version,
                job_id=job_id,
                reason=reason,
                details=details,
            )

    def mark_acted(self, tenant: str, name: str, score_id: int) -> None:
        """Note on a live record's row that drift was acted on there (streaks restart)."""
        with self._tx() as conn:
            where = [S.c.id == score_id, S.c.tenant == tenant, S.c.model == name]
            metrics = conn.execute(sa.select(S.c.metrics).where(*where)).scalar_one()
            conn.execute(S.update().where(*where).values(metrics={**metrics, "acted": True}))

    def record_score(
        self,
        tenant: str,
        name: str,
        version: int,
        metrics: dict[str, Any],
        *,
        drifted: bool,
        job_id: int | None = None,
    ) -> dict[str, Any]:
        with self._tx() as conn:
            self._model_row(conn, tenant, name)
            conn.execute(
                S.insert().values(
                    tenant=tenant,
                    model=name,
                    version=version,
                    at=self.clock(),
                    job_id=job_id,
                    metrics=metrics,
                    drifted=drifted,
                )
            )
        return self.scores(tenant, name)[-1]
