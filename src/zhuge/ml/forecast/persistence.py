"""Save and load a fitted :class:`Forecaster` as an artifact folder (no pickles).

Files: ``config.json`` (parameters, learned JSON state, residual quantiles), ``history.parquet``
(the recent history forecasts start from), ``series_model.parquet`` (the model of each series),
and per fitted model its native format: ``gbm.txt`` (LightGBM's text model) or
``lstm.npz`` (weights as plain arrays). ``zhuge.artifacts`` writes a manifest with library
versions and a SHA-256 per file and verifies them before anything here parses a byte.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd

from zhuge.artifacts import ArtifactDir
from zhuge.errors import ModelNotFound
from zhuge.ml.forecast._fleet import Fleet, to_fleet, to_long
from zhuge.ml.forecast.forecaster import Forecaster
from zhuge.ml.forecast.gbm import GlobalGBM
from zhuge.ml.forecast.models import GBMModel, make_model

__all__ = ["ARTIFACT_KIND", "load", "save"]

ARTIFACT_KIND = "zhuge.forecast.forecaster"
FORMAT_VERSION = 1


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def save(
    forecaster: Forecaster,
    artifact_dir: ArtifactDir | str,
    *,
    extra: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write a fitted forecaster to ``artifact_dir``; return the manifest.

    ``extra`` files (e.g. how the input was prepared) are saved and hashed beside it.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(forecaster, "models_")
    target = artifact_dir if isinstance(artifact_dir, ArtifactDir) else ArtifactDir(artifact_dir)
    history: Fleet = forecaster.history_
    files: dict[str, bytes] = {}
    models: dict[str, str] = {}
    for name, model in forecaster.models_.items():
        if isinstance(model, GBMModel):
            meta, text = model.model_.to_state()
            files[f"{name}.txt"] = text.encode()
            models[name] = "gbm"
            files[f"{name}.json"] = json.dumps(meta).encode()
        elif name == "lstm":
            files["lstm.npz"] = model.to_bytes()
            models[name] = "lstm"
        else:
            models[name] = "stateless"
    hist = to_long(
        history.series_ids,
        history.end - np.timedelta64((history.n_steps - 1) * history.freq.value, "ns"),
        history.freq,
        {"value": history.values},
    ).dropna(subset=["value"])
    files["history.parquet"] = _parquet(hist)
    files["series_model.parquet"] = _parquet(
        pd.DataFrame(
            {
                "series_id": forecaster.series_model_.index,
                "model": forecaster.series_model_.astype("string").to_numpy(),
            }
        )
    )
    config = {
        "format_version": FORMAT_VERSION,
        "params": {k: _jsonable(v) for k, v in forecaster.get_params().items()},
        "model_": forecaster.model_,
        "selection_": forecaster.selection_,
        "notes_": forecaster.notes_,
        "season_": forecaster.season_,
        "n_series_": forecaster.n_series_,
        "nonnegative_": forecaster.nonnegative_,
        "residual_quantiles_": forecaster.residual_quantiles_.tolist(),
        "history_steps": history.n_steps,
        "models": models,
    }
    files["config.json"] = json.dumps(config, indent=2, sort_keys=True).encode()
    for name, data in (extra or {}).items():
        if name in files:
            raise ValueError(f"extra file {name!r} would overwrite the forecaster's own")
        files[name] = data
    libraries = ["numpy", "pandas", "lightgbm", "statsforecast", "scikit-learn"]
    if "lstm" in models:
        libraries.append("torch")
    return target.save(
        files,
        kind=ARTIFACT_KIND,
        libraries=libraries,
        metadata={"model": forecaster.model_, "selection": forecaster.selection_},
    )


def load(artifact_dir: ArtifactDir | str) -> Forecaster:
    """Read a forecaster saved by :func:`save` (hashes verified first; ModelNotFound if not)."""
    source = artifact_dir if isinstance(artifact_dir, ArtifactDir) else ArtifactDir(artifact_dir)
    _, files = source.load(kind=ARTIFACT_KIND)
    config = json.loads(files["config.json"])
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelNotFound(
            f"forecaster at {source.url} has format {config.get('format_version')}, "
            f"this zhuge reads {FORMAT_VERSION}"
        )
    params = config["params"]
    for key in ("quantiles", "buckets", "candidates"):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    forecaster = Forecaster(**params)
    for key in ("model_", "selection_", "notes_", "season_", "n_series_", "nonnegative_"):
        setattr(forecaster, key, config[key])
    forecaster.residual_quantiles_ = np.asarray(config["residual_quantiles_"], dtype=np.float64)
    forecaster.residual_quantiles_ = forecaster.residual_quantiles_.reshape(
        -1, int(params["horizon"])
    )
    models = {}
    for name, kind in config["models"].items():
        if kind == "gbm":
            meta = json.loads(files[f"{name}.json"])
            model = GBMModel()
            model.model_ = GlobalGBM.from_state(meta, files[f"{name}.txt"].decode())
            model.options = model.model_.options
            models[name] = model
        elif kind == "lstm":
            from zhuge.ml.forecast.torch_lstm import LSTMModel

            models[name] = LSTMModel.from_bytes(files["lstm.npz"])
        else:
            models[name] = make_model(name)
    forecaster.models_ = models
    hist = pd.read_parquet(io.BytesIO(files["history.parquet"]))
    forecaster.history_ = to_fleet(hist, freq=params["freq"], max_steps=config["history_steps"])
    sm = pd.read_parquet(io.BytesIO(files["series_model.parquet"]))
    forecaster.series_model_ = pd.Series(
        sm["model"].astype(object).where(sm["model"].notna(), None).to_numpy(),
        index=sm["series_id"].to_numpy(),
        name="model",
    )
    return forecaster
