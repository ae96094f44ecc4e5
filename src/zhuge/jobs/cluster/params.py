"""Parameters of the clustering job kinds, and the names they choose from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from zhuge.errors import InvalidRequest
from zhuge.jobs.inputs import DataRef, JobRef, ModelRef
from zhuge.jobs.kinds import KindParams

ALGORITHM_CHOICES = (
    "auto", "kmeans", "minibatch_kmeans", "dbscan", "hdbscan", "gmm", "spectral",
    "genie", "ward", "average",
)  # fmt: skip
STREAMABLE = ("auto", "kmeans", "minibatch_kmeans")
TEMPLATE_ID = {"rfm": "customer_id", "load-profile": "series_id"}
STREAM_K_SAMPLE = 20_000  # rows drawn to choose k before streaming
PROFILE_TOP = 3  # features per cluster in the result (profile.parquet has all)


class ClusterInputParams(KindParams):
    """What to cluster and how to search; shared by ``cluster`` and ``tune``."""

    input: DataRef = Field(
        description="CSV or Parquet table: dataset://NAME, connection://NAME/KEY or a path "
        "under your allowed roots."
    )
    columns: list[str] | None = Field(None, description="Feature columns (default: all).")
    id_column: str | None = Field(
        None, description="Column copied to the labels and left out of the features."
    )
    template: Literal["rfm", "load-profile"] | None = Field(
        None,
        description="rfm: transactions (customer_id, timestamp, amount) -> recency, frequency, "
        "monetary per customer; load-profile: telemetry (series_id, timestamp, value) -> "
        "24-hour load shape per VM.",
    )
    algorithm: str = Field("auto", description=f"One of {', '.join(ALGORITHM_CHOICES)}.")
    k: int | None = Field(
        None, ge=1, description="Number of clusters; None: chosen in k_min..k_max."
    )
    k_min: int = Field(2, ge=2)
    k_max: int = Field(10, ge=2)
    preprocess: Literal["auto", "none"] | dict[str, Any] = Field(
        "auto", description="auto, none, or a preprocessing spec (zhuge.ml.preprocess)."
    )
    sample: int | None = Field(
        None, ge=2, description="Fit on a random sample of this many rows; label all rows."
    )
    random_state: int = 0
    memory_limit_gb: float | None = Field(
        None, gt=0, description="Memory the fit may plan to use (default: 70 % of available)."
    )

    @field_validator("algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        name = value.strip().lower().replace("-", "_")
        if name not in ALGORITHM_CHOICES:
            raise ValueError(f"unknown algorithm {value!r}; choose one of {ALGORITHM_CHOICES}")
        return name

    @field_validator("preprocess")
    @classmethod
    def _preprocess(cls, value: Any) -> Any:
        if isinstance(value, dict):
            from zhuge.ml.preprocess import PreprocessSpec

            try:
                PreprocessSpec.from_dict(value)
            except (InvalidRequest, TypeError) as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _k_range(self) -> ClusterInputParams:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) is larger than k_max ({self.k_max})")
        return self


class ClusterParams(ClusterInputParams):
    stream: Literal["auto", "on", "off"] = Field(
        "auto", description="Stream Parquet in pages: auto (when it would not fit), on, off."
    )
    batch_rows: int = Field(100_000, ge=100, description="Rows per page when streaming.")
    register_as: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$",
        description="Also register the model as the next version of this registered model "
        "(the first version becomes champion; later ones are promoted by hand).",
    )


class TuneParams(ClusterInputParams):
    pass


class PredictParams(KindParams):
    model_from: JobRef | ModelRef = Field(
        description="The model that labels: the id of a cluster job of your tenant, or a "
        "registered clustering model, NAME@ALIAS or NAME@VERSION (resolved when the job starts)."
    )
    input: DataRef = Field(
        description="CSV or Parquet table with the columns the model was fit on (a dataset, "
        "connection object or allowed path)."
    )
    id_column: str | None = Field(
        None, description="Copied to the labels (default: the one the model was fit with)."
    )
