"""The Python SDK: a thin, typed client of the HTTP API. The CLI uses it too.

from zhuge import Client
c = Client()                      # ZHUGE_URL / ZHUGE_TOKEN, or ZHUGE_HOME/token
job = c.submit("sleep", {"seconds": 1})
done = c.wait(job.id)
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from zhuge import errors
from zhuge.config import DEFAULT_HOST, DEFAULT_PORT

TERMINAL_STATES = frozenset({"succeeded", "cancelled", "dead"})
DOWNLOAD_CHUNK_BYTES = 1 << 20  # written at a time by a download
UPLOAD_CHUNK_BYTES = 1 << 20  # read and sent at a time by put_dataset


@dataclass(frozen=True)
class JobHandle:
    """A job as the API last described it."""

    id: int
    kind: str
    state: str
    attempt: int = 0
    result: Any = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    model_ref: str | None = None  # model_from NAME@ALIAS as given
    model_version: str | None = None  # the NAME@VERSION it resolved to as the job started

    @classmethod
    def of(cls, data: dict[str, Any]) -> JobHandle:
        return cls(
            id=data["id"],
            kind=data["kind"],
            state=data["state"],
            attempt=data.get("attempt", 0),
            result=data.get("result"),
            error=data.get("error"),
            raw=data,
            model_ref=data.get("model_ref"),
            model_version=data.get("model_version"),
        )

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]


def default_url() -> str:
    return os.environ.get("ZHUGE_URL") or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def default_token() -> str | None:
    token = os.environ.get("ZHUGE_TOKEN")
    if token:
        return token
    path = Path(os.environ.get("ZHUGE_HOME") or ".zhuge").expanduser() / "token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()["error"]
        name, message, details = body.get("type"), body.get("message"), body.get("details")
    except (ValueError, KeyError, TypeError):
        name, message, details = None, response.text[:500], None
    cls = getattr(errors, name or "", None)
    if (
        not (isinstance(cls, type) and issubclass(cls, errors.ZhugeError))
        or cls is errors.ClientError
    ):
        cls = {
            401: errors.AuthError,
            404: errors.NotFound,
            409: errors.Conflict,
            422: errors.InvalidRequest,
            429: errors.QuotaExceeded,
        }.get(response.status_code)
    if cls is None:
        raise errors.ClientError(
            f"HTTP {response.status_code}: {message}",
            status_code=response.status_code,
            details=details,
        )
    raise cls(message or f"HTTP {response.status_code}", details=details)


class Client:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.token = token if token is not None else default_token()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise errors.ClientError(
                f"cannot reach zhuge at {self.url} ({exc.__class__.__name__}); "
                "is `zhuge up` running, and is ZHUGE_URL right?"
            ) from exc
        _raise_for(response)
        return response.json()

    # -- jobs -----------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        priority: int = 0,
        resources: dict[str, float] | None = None,
        max_attempts: int = 3,
        idempotency_key: str | None = None,
        max_lost: int = 10,
        gang: int = 1,
        timeout_s: float | None = None,
        placement: str | None = None,
        after: Sequence[int] = (),
    ) -> JobHandle:
        """Queue a job. ``max_attempts`` bounds attempts whose code fails; ``max_lost`` those
        the infrastructure loses (a dead worker, a lost lease), which spend no attempts.
        ``gang``: copies of ``resources`` admitted together on that many distinct workers;
        ``timeout_s``: each attempt's time limit (default: the kind's); ``placement``:
        ``binpack`` or ``spread`` (default: the queue configuration's); ``after``: job ids
        that must succeed first (it waits ``blocked``; a dead or cancelled one cancels it)."""
        body: dict[str, Any] = {
            "kind": kind,
            "params": params or {},
            "priority": priority,
            "max_attempts": max_attempts,
            "max_lost": max_lost,
        }
        if resources is not None:
            body["resources"] = resources
        if gang != 1:
            body["gang"] = gang
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        if placement is not None:
            body["placement"] = placement
        if after:
            body["after"] = [int(a) for a in after]
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return JobHandle.of(self._request("POST", "/v1/jobs", json=body, headers=headers))

    def submit_many(self, jobs: Sequence[dict[str, Any]]) -> list[JobHandle]:
        """Submit many jobs in one request and one transaction (all or none), each a dict
        like ``{"kind": "echo", "params": {...}, "priority": 0, "idempotency_key": "k"}``.
        Batches over 1,000 are sent 1,000 at a time (each batch all or none)."""
        out: list[JobHandle] = []
        items = list(jobs)
        for start in range(0, len(items), 1000):
            body = {"jobs": items[start : start + 1000]}
            answer = self._request("POST", "/v1/jobs/batch", json=body)
            out.extend(JobHandle.of(j) for j in answer["jobs"])
        return out

    def get(self, job_id: int) -> JobHandle:
        return JobHandle.of(self._request("GET", f"/v1/jobs/{job_id}"))

    def list(
        self, *, state: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[JobHandle]:
        params = {k: v for k, v in {"state": state, "kind": kind, "limit": limit}.items() if v}
        return [JobHandle.of(j) for j in self._request("GET", "/v1/jobs", params=params)["jobs"]]

    def cancel(self, job_id: int) -> JobHandle:
        return JobHandle.of(self._request("POST", f"/v1/jobs/{job_id}/cancel"))

    def retry(self, job_id: int) -> JobHandle:
        return JobHandle.of(self._request("POST", f"/v1/jobs/{job_id}/retry"))

    def why(self, job_id: int) -> dict[str, Any]:
        """Where a job stands, with ``summary`` in words: a queued job's place in its
        tenant's queue and the cluster's and its ``pending_reason``; a running job's
        ``workers``; a finished job's end."""
        return self._request("GET", f"/v1/jobs/{job_id}/why")

    def events(self, job_id: int) -> list[dict[str, Any]]:
        return self._request("GET", f"/v1/jobs/{job_id}/events")

    def logs(self, job_id: int, *, after: int = 0) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}/logs", params={"after": after})

    def follow_logs(self, job_id: int, *, poll: float = 0.5) -> Iterator[dict[str, Any]]:
        """Yield log lines as they arrive, until the job reaches a terminal state."""
        after = 0
        while True:
            page = self.logs(job_id, after=after)
            yield from page["lines"]
            after = page["next_after"]
            if page["state"] in TERMINAL_STATES and not page["lines"]:
                return
            if not page["lines"]:
                time.sleep(poll)

    def wait(self, job_id: int, *, timeout: float | None = None, poll: float = 0.05) -> JobHandle:
        """Block until the job is succeeded, cancelled or dead; raise WaitTimeout after
        ``timeout`` seconds. Polls gently: starts at ``poll`` and backs off to 1 s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            job = self.get(job_id)
            if job.done:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeout(
                    f"job {job_id} is still {job.state} after {timeout:g}s", details=job.raw
                )
            sleep = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(sleep)
            delay = min(1.0, delay * 1.5)

    # -- artifacts ------------------------------------------------------------------------

    def artifacts(self, job_id: int) -> list[dict[str, Any]]:
        """The files a job wrote, ``[{"name", "size_bytes"}]``: its committed attempt's if it
        succeeded, else its latest attempt's (``GET /v1/jobs/{id}/artifacts`` says which)."""
        return self._request("GET", f"/v1/jobs/{job_id}/artifacts")["artifacts"]

    def download_artifact(self, job_id: int, name: str, dest: str | Path) -> Path:
        """Stream artifact ``name`` of job ``job_id`` to ``dest`` and return its path.

        The bytes go to a temporary file beside ``dest``, which replaces ``dest`` only once
        complete: a reader sees the old file or the new one, and a failed download leaves the
        old one as it was."""
        return self._download(f"/v1/jobs/{job_id}/artifacts/{quote(name, safe='/')}", dest)[0]

    def _download(
        self,
        url: str,
        dest: str | Path,
        *,
        params: dict[str, str] | None = None,
        sha256: str | None = None,
    ) -> tuple[Path, str]:
        """Stream ``GET url`` into a temporary file beside ``dest`` (with the umask's mode),
        then move it onto ``dest`` once complete (as long as Content-Length says, and hashing
        to ``sha256`` if given); return ``(dest, sha256 hex of the bytes)``."""
        dest = Path(dest).expanduser().absolute()
        if not dest.parent.is_dir():
            raise errors.InvalidRequest(f"cannot write {dest}: folder {dest.parent} does not exist")
        if dest.is_dir():
            raise errors.InvalidRequest(f"cannot write {dest}: it is a folder")
        tmp = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.part")
        digest = hashlib.sha256()
        written = 0
        try:
            with tmp.open("xb") as fh, self._http.stream("GET", url, params=params) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response)
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    digest.update(chunk)
                    fh.write(chunk)
                    written += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            expected = response.headers.get("Content-Length")
            if expected is not None and int(expected) != written:
                raise errors.ClientError(f"download of {url}: got {written} of {expected} bytes")
            if sha256 is not None and digest.hexdigest() != sha256:
                raise errors.ClientError(
                    f"download of {url} is corrupt: sha256 {digest.hexdigest()}, not {sha256}"
                )
            os.replace(tmp, dest)
        except httpx.TransportError as exc:
            raise errors.ClientError(
                f"download of {url} from {self.url} broke off ({type(exc).__name__})"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return dest, digest.hexdigest()

    # -- datasets -------------------------------------------------------------------------

    def put_dataset(
        self,
        path: str | Path,
        name: str | None = None,
        *,
        format: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload a CSV or Parquet file as a version of dataset ``name`` (default: the file's
        stem) and return it; its ``ref`` (``dataset://NAME@sha256:...``) names it in job
        parameters. The file is hashed here first: content the name already has is not sent
        again. ``progress(phase, done, total)`` hears of each chunk ("hashing", "uploading").
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise errors.InvalidRequest(f"{path} is not a file")
        name = name or path.stem
        size = path.stat().st_size
        report = progress or (lambda _phase, _done, _total: None)
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(UPLOAD_CHUNK_BYTES):
                digest.update(chunk)
                report("hashing", fh.tell(), size)
        try:
            return self._request(
                "GET", f"/v1/datasets/by-digest/{digest.hexdigest()}", params={"name": name}
            )
        except errors.NotFound:
            pass

        def body() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(UPLOAD_CHUNK_BYTES):
                    yield chunk
                    report("uploading", fh.tell(), size)

        params = {"name": name, **({"format": format} if format else {})}
        return self._request(
            "POST",
            "/v1/datasets",
            params=params,
            content=body(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            # once sent, the server moves the content into place (a copy on object stores)
            timeout=httpx.Timeout(self._http.timeout.connect, read=600.0),
        )

    def datasets(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every version of the tenant's datasets (of ``name``), newest first."""
        params = {"name": name} if name else None
        return self._request("GET", "/v1/datasets", params=params)["datasets"]

    def dataset(self, name: str, sha256: str | None = None) -> dict[str, Any]:
        """A dataset's newest version, or the one with ``sha256``."""
        params = {"sha256": sha256} if sha256 else None
        return self._request("GET", f"/v1/datasets/{quote(name, safe='')}", params=params)

    def download_dataset(self, name: str, dest: str | Path, sha256: str | None = None) -> Path:
        """Stream a dataset's newest version (or the one with ``sha256``) to ``dest`` and
        return its path. ``dest`` is replaced only by a complete file whose SHA-256 is the
        version's."""
        version = self.dataset(name, sha256)["sha256"]  # pinned: a newer put cannot interleave
        url = f"/v1/datasets/{quote(name, safe='')}/content"
        return self._download(url, dest, params={"sha256": version}, sha256=version)[0]

    def remove_dataset(self, name: str, sha256: str | None = None) -> dict[str, Any]:
        """Remove every version of ``name`` (or the one with ``sha256``): ``{"removed": n}``."""
        params = {"sha256": sha256} if sha256 else None
        return self._request("DELETE", f"/v1/datasets/{quote(name, safe='')}", params=params)

    def data_roots(self) -> list[str]:
        """The server folders this token's jobs may read directly (``GET /v1/data-roots``):
        a path under one of them is passed as it is; any other file is sent as a dataset."""
        return self._request("GET", "/v1/data-roots")["roots"]

    # -- connections ----------------------------------------------------------------------

    def add_connection(self, name: str, url: str, *, tenant: str | None = None) -> dict[str, Any]:
        """Register a SQL database or an object-store prefix (admin); ``tenant`` None: for
        admins only. The URL is kept on the server and never shown back."""
        body = {"name": name, "url": url, "tenant": tenant}
        return self._request("POST", "/v1/connections", json=body)

    def connections(self) -> list[dict[str, Any]]:
        """Every connection (admin), or those of this token's tenant: name, kind, tenant and
        location, never the URL."""
        return self._request("GET", "/v1/connections")

    def remove_connection(self, name: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/connections/{quote(name, safe='')}")

    # -- the model registry ---------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The tenant's registered models: versions, latest, aliases, gate settings."""
        return self._request("GET", "/v1/models")

    def model(self, name: str) -> dict[str, Any]:
        """One model: versions (lineage, gate decision and evidence), aliases, alias
        history, events, live record."""
        return self._request("GET", f"/v1/models/{quote(name, safe='')}")

    def model_version(self, ref: str) -> dict[str, Any]:
        """The version ``NAME@VERSION`` names (``NAME@ALIAS``: the one the alias names now)."""
        name, _, at = ref.partition("@")
        if not at.isdigit():
            return self._version_by_alias(name, at)
        return self._request("GET", f"/v1/models/{quote(name, safe='')}/versions/{int(at)}")

    def _version_by_alias(self, name: str, alias: str) -> dict[str, Any]:
        found = self.model(name)
        if alias not in found["aliases"]:
            raise errors.ModelNotFound(f"model {name!r} has no alias {alias!r}")
        return self.model_version(f"{name}@{found['aliases'][alias]}")

    def promote_model(self, name: str, version: int) -> dict[str, Any]:
        """Make ``version`` the champion by hand."""
        path = f"/v1/models/{quote(name, safe='')}/promote"
        return self._request("POST", path, json={"version": version})

    def rollback_model(self, name: str) -> dict[str, Any]:
        """Make the previous champion (from the alias history) champion again."""
        return self._request("POST", f"/v1/models/{quote(name, safe='')}/rollback")

    def alias_model(self, name: str, alias: str, version: int) -> dict[str, Any]:
        path = f"/v1/models/{quote(name, safe='')}/aliases/{quote(alias, safe='')}"
        return self._request("PUT", path, json={"version": version})

    def remove_model_version(self, name: str, version: int) -> dict[str, Any]:
        """Remove a version no alias points at (``Conflict`` otherwise)."""
        return self._request("DELETE", f"/v1/models/{quote(name, safe='')}/versions/{version}")

    def train_model(self, name: str, params: dict[str, Any]) -> JobHandle:
        """Queue a ``model-train`` job: ``params`` as for ``train`` (input, horizon, ...); the
        version is registered under ``name`` behind the release gate (its result says the
        decision)."""
        return self.submit("model-train", {**params, "register_as": name})

    def score_model(self, name: str, actuals: str, **params: Any) -> JobHandle:
        """Queue a ``model-score`` job: the forecasts ``name`` made, scored against
        ``actuals`` (dataset://NAME, connection://NAME/KEY or a path under your roots)."""
        return self.submit("model-score", {**params, "model": name, "input": actuals})

    def configure_model(self, name: str, **config: Any) -> dict[str, Any]:
        """Change the release gate's and drift's settings (margin=0.05, manual=True, ...)."""
        path = f"/v1/models/{quote(name, safe='')}/config"
        return self._request("PATCH", path, json={"config": config})

    # -- schedules ------------------------------------------------------------------------

    def add_schedule(
        self,
        name: str,
        cron: str,
        *,
        pipeline: str | Path | dict[str, Any] | None = None,
        template: str | None = None,
        timezone: str = "UTC",
        params: dict[str, Any] | None = None,
        overlap: str = "skip",
        catch_up: str = "latest",
    ) -> dict[str, Any]:
        """Run a pipeline on ``cron`` (e.g. ``"0 2 * * *"``) in ``timezone``, once per slot:
        ``pipeline`` is the file's text, a path to it, or the loaded object; or name a
        shipped ``template`` (``fleet-nightly``). It runs with this client's token."""
        if isinstance(pipeline, Path):
            pipeline = pipeline.read_text(encoding="utf-8")
        body = {
            "name": name, "cron": cron, "timezone": timezone, "pipeline": pipeline,
            "template": template, "params": params or {}, "overlap": overlap,
            "catch_up": catch_up,
        }  # fmt: skip
        return self._request("POST", "/v1/schedules", json=body)

    def schedules(self) -> list[dict[str, Any]]:
        """The tenant's schedules, each with its next slot and latest run."""
        return self._request("GET", "/v1/schedules")

    def schedule(self, name: str) -> dict[str, Any]:
        """A schedule, its next slots (UTC and local), its latest runs with their pipelines'
        states, and skipped or missed slots with the reason."""
        return self._request("GET", f"/v1/schedules/{quote(name, safe='')}")

    def pause_schedule(self, name: str, reason: str = "") -> dict[str, Any]:
        path = f"/v1/schedules/{quote(name, safe='')}/pause"
        return self._request("POST", path, json={"reason": reason})

    def resume_schedule(self, name: str) -> dict[str, Any]:
        """Run again from the next slot, with this client's token from now on."""
        return self._request("POST", f"/v1/schedules/{quote(name, safe='')}/resume")

    def remove_schedule(self, name: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/schedules/{quote(name, safe='')}")

    def run_schedule_now(self, name: str) -> dict[str, Any]:
        """Run the schedule's pipeline once now; the run, with its ``pipeline_id``."""
        return self._request("POST", f"/v1/schedules/{quote(name, safe='')}/run-now")

    # -- pipelines ------------------------------------------------------------------------

    def run_pipeline(
        self,
        document: str | Path | dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        *,
        template: str | None = None,
    ) -> dict[str, Any]:
        """Submit a pipeline (its YAML text, a path to the file, or the loaded dict; or a
        shipped ``template`` by name, e.g. ``fleet-nightly``) with values for its
        parameters: every step in one transaction. The pipeline, with its ``id`` and each
        step's ``job_id`` and state (docs/pipelines.md)."""
        if template is not None:
            body = {"template": template, "params": params or {}}
            return self._request("POST", "/v1/pipelines", json=body)
        if isinstance(document, Path):
            document = document.read_text(encoding="utf-8")
        if isinstance(document, str):
            import yaml

            try:
                document = yaml.safe_load(document)
            except yaml.YAMLError as exc:
                raise errors.InvalidRequest(f"the pipeline file is not YAML: {exc}") from None
        body = {"document": document, "params": params or {}}
        return self._request("POST", "/v1/pipelines", json=body)

    def pipelines(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """The tenant's pipelines, newest first, each with its steps' states."""
        return self._request("GET", "/v1/pipelines", params={"limit": limit})["pipelines"]

    def pipeline(self, pipeline_id: int) -> dict[str, Any]:
        return self._request("GET", f"/v1/pipelines/{int(pipeline_id)}")

    def cancel_pipeline(self, pipeline_id: int) -> dict[str, Any]:
        """Cancel every step not finished yet."""
        return self._request("POST", f"/v1/pipelines/{int(pipeline_id)}/cancel")

    # -- system ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/v1/status")

    def kinds(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/kinds")

    def readiness(self) -> dict[str, Any]:
        """``GET /readyz``: ``ready``, the ``reasons`` it is not, the live ``schedulers``, the
        number of known ``workers`` and of ``queued`` jobs. Not ready (503) is an answer here,
        not an error."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise errors.ClientError(
                f"cannot reach zhuge at {self.url} ({exc.__class__.__name__}); "
                "is `zhuge up` running, and is ZHUGE_URL right?"
            ) from exc
        if response.status_code == 503:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and "ready" in body:
                return body
        _raise_for(response)
        return response.json()

    def health(self) -> bool:
        try:
            self._request("GET", "/healthz")
        except errors.ZhugeError:
            return False
        return True

    # -- pools, the autoscaler and costs ---------------------------------------------------

    def apply_pools(self, document: str | Path | dict[str, Any]) -> dict[str, Any]:
        """Make a pools file the pools in force (admin): YAML text, a path to the file, or
        the pools as a dict. Each pool names a provider the server configures; refused with
        ``InvalidRequest`` (and nothing changed) otherwise, or if the file is not valid."""
        if isinstance(document, Path):
            try:
                document = document.read_text(encoding="utf-8")
            except OSError as exc:
                raise errors.InvalidRequest(f"cannot read {document}: {exc.strerror}") from exc
        return self._request("PUT", "/v1/pools", json={"document": document})

    def pools(self) -> dict[str, Any]:
        """The pools in force, each with its workers up and latest decision (admin)."""
        return self._request("GET", "/v1/pools")

    def autoscaler_log(
        self, *, pool: str | None = None, changes: bool = False, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The autoscaler's decisions, newest first (admin)."""
        params: dict[str, Any] = {"limit": limit, "changes": changes}
        if pool:
            params["pool"] = pool
        return self._request("GET", "/v1/autoscaler/log", params=params)["decisions"]

    def costs(self, *, by: str = "tenant", since: str | None = None) -> dict[str, Any]:
        """What jobs cost, grouped ``by`` tenant, kind, pool, day or job, since ``since`` (``7d``
        or ISO 8601); an admin also gets the pools' bill, idle cost and spot savings."""
        params: dict[str, Any] = {"by": by}
        if since:
            params["since"] = since
        return self._request("GET", "/v1/costs", params=params)

    # -- queues ---------------------------------------------------------------------------

    def apply_queues(self, document: str | Path | dict[str, Any]) -> dict[str, Any]:
        """Make a queues file the configuration in force (admin): YAML text, a path to the
        file, or the configuration as a dict. Refused with ``InvalidRequest`` naming the
        field (``.details["errors"]``), and nothing changed, if it is not valid."""
        if isinstance(document, Path):
            try:
                document = document.read_text(encoding="utf-8")
            except OSError as exc:
                raise errors.InvalidRequest(f"cannot read {document}: {exc.strerror}") from exc
        return self._request("PUT", "/v1/queues", json={"document": document})

    def queues(self) -> dict[str, Any]:
        """The configuration in force, the file it came from, when and by whom (admin)."""
        return self._request("GET", "/v1/queues")

    def queue_status(self) -> dict[str, Any]:
        """Per tenant (a member: its own) running and queued jobs, usage against nominal,
        what it borrows, fair share against weight; and the cluster's totals."""
        return self._request("GET", "/v1/queues/status")

    def queue_demand(self) -> list[dict[str, Any]]:
        """What admission would start now if workers had room, by resource shape: each
        ``{"resources": {...}, "gang": n, "count": k}`` (admin)."""
        return self._request("GET", "/v1/queues/demand")["demand"]

    # -- tenants, tokens and the audit log (admin tokens) ---------------------------------

    def create_tenant(self, name: str) -> dict[str, Any]:
        return self._request("POST", "/v1/tenants", json={"name": name})

    def tenants(self) -> list[dict[str, Any]]:
        return self._request("GET", "/v1/tenants")

    def set_data_roots(self, tenant: str, roots: list[str]) -> dict[str, Any]:
        """Replace the server folders ``tenant``'s jobs may read by path (admin); [] clears."""
        return self._request("PUT", f"/v1/tenants/{tenant}/data-roots", json={"roots": roots})

    def create_token(
        self, tenant: str, *, role: str = "member", name: str = "", expires: str | None = None
    ) -> dict[str, Any]:
        """A new token of ``tenant`` (``role`` member or admin, ``expires`` like 90d or 12h).
        Its ``token`` is in this answer only; ``id`` names it afterwards."""
        body = {"tenant": tenant, "role": role, "name": name, "expires": expires}
        return self._request("POST", "/v1/tokens", json=body)

    def tokens(self, *, tenant: str | None = None) -> list[dict[str, Any]]:
        """Tokens by id, never the tokens themselves (a member: its own tenant's)."""
        params = {"tenant": tenant} if tenant else None
        return self._request("GET", "/v1/tokens", params=params)

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self._request("POST", f"/v1/tokens/{token_id}/revoke")

    def audit(
        self,
        *,
        tenant: str | None = None,
        since: datetime | str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first; the next page is ``before_id=entries[-1]["id"]``."""
        params: dict[str, Any] = {"limit": limit}
        if tenant:
            params["tenant"] = tenant
        if since is not None:
            params["since"] = since.isoformat() if isinstance(since, datetime) else since
        if before_id is not None:
            params["before_id"] = before_id
        return self._request("GET", "/v1/audit", params=params)["entries"]
