"""Worker pools as an admin declares them (``pools.yaml``). Pure: no SQL, no provider code.

A pool is a set of identical workers, each offering ``resources`` (the amounts admission
places jobs on, as ``zhuge worker --cpus 4 --memory 16`` advertises them), whose size an
autoscaling policy (``zhuge.jobs.elastic.policy``) keeps between ``min`` and ``max``, run by a
provider that the server's own configuration names (``local``, ``dask-cluster``,
``command``…). A pools file only *chooses* a provider by name; what a provider runs (an import
path, a command) is configured on the server alone, never here.

The file::

    pools:
      - name: cpu
        resources: {CPU: 4, memory_gb: 16}
        min: 0                      # a pool reaches 0 only with min: 0 and warm: 0
        max: 10
        warm: 0                     # idle workers kept ready above the demand
        idle_timeout: 5m            # an idle worker is retired after this long (not before)
        startup_s: 60               # expected start-up delay (a worker counts once started)
        billing: {granularity: second, minimum_s: 60}
        price_per_hour: {on_demand: 0.20, spot: 0.06}
        spot: 0.5                   # fraction of workers on spot (true: all, false: none)
        provider: local
        policy: {name: demand}      # or a bare name: policy: demand
        cooldown: {up: 30s, down: 2m}
        stabilisation: {up: 0s, down: 5m}
      - {name: legacy, count: 4, resources: {CPU: 8}}   # min = max = count, fixed

Durations are seconds or ``30s``, ``10m``, ``1h`` (as in ``queues.yaml``). Unknown keys are
errors, named by path (``pools.0.policy.treshold``). Policy parameters (with defaults) are in
``RulePolicy``, ``DemandPolicy``, ``PredictivePolicy`` and ``FixedPolicy`` below.

Interface (what the autoscaler, ``zhuge pools apply`` and the simulator use):

- ``PoolsConfig.parse(document) -> PoolsConfig`` (YAML text or a parsed mapping);
  ``InvalidRequest`` with a one-line message naming the field, all field errors in
  ``details["errors"]``.
- ``PoolsConfig.pools`` (a list of ``PoolSpec``), ``.pool(name)``, ``.for_shape(resources)``
  (the smallest pool whose worker fits one copy of a job; None when none does).
- ``PoolSpec``: the fields above; ``policy`` is one of the ``*Policy`` models (``.name`` tells
  which), ``spot`` is a fraction in [0, 1] (``True`` parses as 1, ``False`` as 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from zhuge.errors import InvalidRequest
from zhuge.jobs.admission import EPS, Amounts, Duration

POLICY_NAMES = ("rule", "demand", "predictive", "fixed-peak", "fixed-mean")
MAX_WORKERS = 100_000  # per pool: more than any cluster we know


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Billing(_Strict):
    """How a provider charges a worker's up-time: rounded up to whole ``granularity`` units,
    never less than ``minimum_s`` per up-interval."""

    granularity: Literal["second", "hour"] = "second"
    minimum_s: Duration = 60.0


class Prices(_Strict):
    """Price of one worker per hour, on demand and on spot (None: no spot offer)."""

    on_demand: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False)
    spot: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False)


class Window(_Strict):
    """A time each way: ``up`` for growing, ``down`` for shrinking."""

    up: Duration = 0.0
    down: Duration = 0.0


class RulePolicy(_Strict):
    """The seed's rule: when allocated / capacity (the pool's dominant resource) is above
    ``threshold`` and more than ``waiting_jobs`` admissible jobs wait, add ``step`` workers.
    Without demand, idle workers go after ``idle_timeout``."""

    name: Literal["rule"] = "rule"
    threshold: float = Field(0.8, gt=0, le=1)
    waiting_jobs: int = Field(5, ge=0, le=1_000_000)
    step: int = Field(1, ge=1, le=MAX_WORKERS)


class DemandPolicy(_Strict):
    """Enough workers for the admissible demand: the busy workers plus the demand bin-packed
    (first-fit decreasing by resource shape; a gang of N on N distinct workers) into empty
    workers of this pool."""

    name: Literal["demand"] = "demand"


class PredictivePolicy(_Strict):
    """Capacity ahead of the arrivals this pool's own history forecasts: the larger of the
    ``demand`` target and the worker-seconds of work forecast to arrive per interval over the
    next ``horizon`` intervals (``zhuge.ml.forecast``'s statsforecast ``model``, or a
    baseline), divided by the interval. With fewer than ``min_history`` intervals of history
    it is the ``demand`` policy."""

    name: Literal["predictive"] = "predictive"
    interval: Duration = Field(300.0)
    """One step of the arrivals series (seconds of work arrived per interval)."""
    horizon: int | None = Field(None, ge=1, le=10_000)
    """Intervals looked ahead (default: enough to cover ``startup_s``, plus one)."""
    season: int = Field(288, ge=1, le=100_000)
    """Intervals in a season (288: a day of 5-minute intervals)."""
    model: Literal["autoets", "autoarima", "mstl", "seasonal_naive", "window_median"] = "autoets"
    min_history: int = Field(24, ge=2, le=100_000)
    max_history: int = Field(2016, ge=2, le=1_000_000)
    """At most this many recent intervals are fitted (a week of 5-minute intervals)."""
    refit_every: int = Field(6, ge=1, le=100_000)
    """Fit the model again every this many intervals; in between, read further along the
    last fit's forecast (a statsforecast fit takes 0.05-1 s)."""

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("the interval must be more than 0 seconds")
        return value


class FixedPolicy(_Strict):
    """A fixed size: ``workers`` (clamped to min/max). ``fixed-peak`` and ``fixed-mean`` are
    the simulator's baselines: it sets ``workers`` to the trace's peak or mean need when the
    file leaves it out; the autoscaler then holds ``min``."""

    name: Literal["fixed-peak", "fixed-mean"]
    workers: int | None = Field(None, ge=0, le=MAX_WORKERS)


Policy = Annotated[
    RulePolicy | DemandPolicy | PredictivePolicy | FixedPolicy, Field(discriminator="name")
]


def _policy_document(value: Any) -> Any:
    if isinstance(value, str):
        return {"name": value}
    return value


def _spot_fraction(value: Any) -> Any:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    return value


class PoolSpec(_Strict):
    """One pool (see the module's docstring for the file)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    resources: Amounts = Field(min_length=1)
    """What each worker offers admission (``{CPU: 4, memory_gb: 16}``)."""
    min: int = Field(0, ge=0, le=MAX_WORKERS)
    max: int = Field(1, ge=0, le=MAX_WORKERS)
    warm: int = Field(0, ge=0, le=MAX_WORKERS)
    """Idle workers kept ready above the demand (within min/max)."""
    idle_timeout: Duration = 300.0
    startup_s: Duration = 60.0
    billing: Billing = Field(default_factory=Billing)
    price_per_hour: Prices = Field(default_factory=Prices)
    spot: Annotated[float, BeforeValidator(_spot_fraction)] = Field(0.0, ge=0, le=1)
    """The fraction of workers run on spot capacity (priced at ``price_per_hour.spot``)."""
    provider: str = Field("local", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """A provider configured on the server, by name only."""
    policy: Annotated[Policy, BeforeValidator(_policy_document)] = Field(
        default_factory=DemandPolicy
    )
    cooldown: Window = Field(default_factory=lambda: Window(up=30.0, down=120.0))
    """Least time between two scale-ups (``up``), and between any scale event and a
    scale-down (``down``)."""
    stabilisation: Window = Field(default_factory=lambda: Window(up=0.0, down=300.0))
    """A scale-up goes to the least target wanted over the last ``up`` seconds, a scale-down
    to the most wanted over the last ``down`` seconds (Kubernetes HPA's windows)."""

    count: int | None = Field(None, ge=1, le=MAX_WORKERS, exclude=True)
    """The fixed-workers simulator's shorthand: ``min = max = count``, no start-up delay,
    a fixed size."""

    @model_validator(mode="before")
    @classmethod
    def _count_shorthand(cls, data: Any) -> Any:
        count = data.get("count") if isinstance(data, Mapping) else None
        if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
            if "min" in data or "max" in data:
                raise ValueError("give either count or min/max, not both")
            data = {"startup_s": 0, "policy": {"name": "fixed-peak", "workers": count}, **data}
            data["min"] = data["max"] = count
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PoolSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        if self.warm > self.max:
            raise ValueError(f"warm ({self.warm}) is more than max ({self.max})")
        if self.spot > 0 and self.price_per_hour.spot is None:
            raise ValueError("spot is set but price_per_hour.spot is not")
        return self

    @property
    def policy_name(self) -> str:
        return self.policy.name

    def fits(self, resources: Mapping[str, float]) -> bool:
        """Whether one of this pool's workers, empty, holds one copy of ``resources``."""
        return all(self.resources.get(k, 0.0) + EPS >= v for k, v in resources.items() if v > 0)

    def copies_per_worker(self, resources: Mapping[str, float]) -> int:
        """How many copies of ``resources`` one empty worker holds (0 if none)."""
        asked = [(k, v) for k, v in resources.items() if v > 0]
        if not self.fits(resources):
            return 0
        if not asked:
            return MAX_WORKERS
        return max(1, min(math.floor(self.resources.get(k, 0.0) / v + EPS) for k, v in asked))

    def worker_fraction(self, resources: Mapping[str, float]) -> float:
        """The dominant share of one worker that ``resources`` take (0..1; 1 if it fits not)."""
        shares = [
            v / self.resources[k] if self.resources.get(k, 0.0) > 0 else math.inf
            for k, v in resources.items()
            if v > 0
        ]
        return min(1.0, max(shares, default=0.0))


class PoolsConfig(_Strict):
    """Every pool of one file; names unique."""

    pools: list[PoolSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> PoolsConfig:
        names = [p.name for p in self.pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"pool names must be unique: {', '.join(dupes)} repeated")
        return self

    def pool(self, name: str) -> PoolSpec:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)

    def for_shape(self, resources: Mapping[str, float]) -> PoolSpec | None:
        """The smallest pool whose worker holds one copy of ``resources``: the fewest kinds of
        resource the job does not ask for (a CPU job does not take a GPU worker), then the
        lowest on-demand price, then the smallest worker, then the name. None if none fits
        (or every pool that fits has ``max: 0``)."""
        asked = {k for k, v in resources.items() if v > 0}
        fitting = [p for p in self.pools if p.max > 0 and p.fits(resources)]
        if not fitting:
            return None
        return min(
            fitting,
            key=lambda p: (
                len(set(p.resources) - asked),
                p.price_per_hour.on_demand,
                sum(p.resources.values()),
                p.name,
            ),
        )

    @classmethod
    def parse(cls, document: str | Mapping[str, Any]) -> PoolsConfig:
        """From YAML text (or an already parsed mapping); ``InvalidRequest`` naming the field."""
        if isinstance(document, str):
            try:
                data = yaml.safe_load(document)
            except yaml.YAMLError as exc:
                raise InvalidRequest(f"pools file is not valid YAML: {exc}") from exc
        else:
            data = document
        if not isinstance(data, Mapping):
            raise InvalidRequest("pools file must be a mapping with a 'pools' list")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = [
                {"field": _where(e["loc"]), "message": _message(e["msg"])} for e in exc.errors()
            ]
            first = errors[0]
            raise InvalidRequest(
                f"pools file: {first['field']}: {first['message']}", details={"errors": errors}
            ) from exc


def _where(loc: tuple[Any, ...]) -> str:
    # the discriminated union adds the policy's name to the path (pools.0.policy.rule.step):
    # a user wrote pools.0.policy.step
    parts = [str(p) for p in loc]
    out = []
    for i, part in enumerate(parts):
        if i > 0 and parts[i - 1] == "policy" and part in POLICY_NAMES:
            continue
        out.append(part)
    return ".".join(out) or "file"


def _message(msg: str) -> str:
    if "does not match any of the expected tags" in msg or "Unable to extract tag" in msg:
        return f"unknown policy; one of {', '.join(POLICY_NAMES)}"
    return msg.removeprefix("Value error, ")
