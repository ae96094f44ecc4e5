"""A migration calibration as a JSON document, and loading one by job id, folder or file."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pandas as pd

from zhuge.artifacts import ArtifactDir
from zhuge.errors import DataError, InvalidRequest, ModelNotFound
from zhuge.jobs.outputs import existing_location, json_safe, latest_saved
from zhuge.migration import (
    Calibration,
    MigrationModel,
)

CALIBRATION_KIND = "migration-calibration"  # manifest kind of a saved calibration
CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "zhuge.migration-calibration/1"


def calibration_document(calibration: Calibration) -> dict[str, Any]:
    return json_safe(
        {
            "format": CALIBRATION_FORMAT,
            "source": calibration.source,
            "model": dataclasses.asdict(calibration.model),
            "metrics": calibration.metrics,
            "per_vm": calibration.per_vm.to_dict(orient="records"),
        }
    )


def _calibration_from_document(doc: Any, where: str) -> Calibration:
    if not isinstance(doc, dict) or doc.get("format") != CALIBRATION_FORMAT:
        raise DataError(f"{where} is not a zhuge migration calibration ({CALIBRATION_FORMAT})")
    try:
        model = MigrationModel(**doc["model"])
    except (KeyError, TypeError, InvalidRequest) as exc:
        raise DataError(f"{where} holds an unusable model: {exc}") from exc
    per_vm = pd.DataFrame(doc.get("per_vm") or [], columns=["vm_id", "dirty_rate_coeff"])
    return Calibration(model, per_vm, doc.get("metrics") or {}, doc.get("source", "fit"))


def _is_folder(url: str) -> bool:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return bool(fs.isdir(path))


def load_calibration(ref: str, artifacts_root: ArtifactDir | None = None) -> Calibration:
    """A calibration from a job id (its saved artifact), a saved folder, or a JSON file."""
    ref = str(ref).strip()
    if ref.isdigit():
        if artifacts_root is None:
            raise DataError(f"calibration job {ref}: no artifact store to look in")
        folder = latest_saved(artifacts_root, ref, "calibration")
        if folder is not None:
            return load_calibration(folder.url)
        raise DataError(
            f"job {ref} saved no migration calibration (is it a calibrate-migration job "
            "that succeeded?)"
        )
    if ref.endswith(".json") or not _is_folder(ref):
        fs, path = existing_location(ref, "calibration")
        try:
            with fs.open(path, "rb") as fh:
                doc = json.load(fh)
        except (ValueError, OSError) as exc:
            raise DataError(f"calibration file {ref} is not valid JSON: {exc}") from exc
        return _calibration_from_document(doc, f"calibration file {ref}")
    folder = ArtifactDir(ref)
    try:
        _, files = folder.load(kind=CALIBRATION_KIND)
    except ModelNotFound as exc:
        raise DataError(f"calibration {ref}: {exc.message}") from exc
    return _calibration_from_document(json.loads(files[CALIBRATION_FILE]), f"calibration {ref}")
