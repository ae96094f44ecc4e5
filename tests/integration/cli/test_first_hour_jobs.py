"""Errors that need the platform: ``--model-from`` tells "no such job" from "no model"."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from zhuge.cli import app

pytestmark = pytest.mark.slow


def test_model_from_tells_no_such_job_from_a_job_without_a_model(env, tmp_path):
    path = tmp_path / "fleet.csv"
    rows = [f"vm-1,2024-03-01T{h:02d}:00:00,{h}" for h in range(6)]
    path.write_text("series_id,timestamp,value\n" + "\n".join(rows) + "\n")
    runner = CliRunner()

    missing = runner.invoke(app, ["forecast", "--input", str(path), "--model-from", "999"], env=env)
    assert missing.exit_code == 1
    text = " ".join(missing.output.split()).partition("error:")[2]
    assert "--model-from 999 is no such job" in text
    assert "model_from" not in text and "saved no" not in text

    prepared = runner.invoke(app, ["prepare", "--input", str(path), "--json"], env=env)
    assert prepared.exit_code == 0, prepared.output
    job_id = json.loads(prepared.stdout)["job_id"]
    no_model = runner.invoke(
        app, ["forecast", "--input", str(path), "--model-from", str(job_id)], env=env
    )
    assert no_model.exit_code == 1
    text = " ".join(no_model.output.split()).partition("error:")[2]
    assert f"job {job_id} saved no forecast model" in text
    assert "no such job" not in text
