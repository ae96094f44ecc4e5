"""zhuge demo-data migrations writes a history calibrate-migrations accepts."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.jobs.migration import read_history
from zhuge.migration.calibration import calibrate


@pytest.mark.parametrize("name", ["past.csv", "past.parquet"])
def test_demo_migrations_is_a_history_the_calibration_reads_and_fits(tmp_path, name):
    out = tmp_path / name
    result = CliRunner().invoke(
        app, ["demo-data", "migrations", "--out", str(out), "--migrations", "200", "--vms", "30"]
    )
    assert result.exit_code == 0, result.output
    assert "zhuge calibrate-migrations --history" in result.output
    history = read_history(str(out))
    assert len(history) == 200 and history["vm_id"].nunique() <= 30
    fit = calibrate(history)
    # the default model's coefficient (10 MB/s per GB at 100 %) is found again, roughly
    assert 6 < fit.model.dirty_rate_coeff < 15


def test_demo_migrations_is_deterministic_by_seed(tmp_path):
    paths = [tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"]
    for path, seed in zip(paths, ["1", "1", "2"], strict=True):
        args = ["demo-data", "migrations", "--out", str(path), "--seed", seed]
        assert CliRunner().invoke(app, args).exit_code == 0
    a, b, c = (pd.read_csv(p) for p in paths)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--migrations", "2"], "--migrations must be at least 3"),
        (["--noise", "2"], "--noise must be in [0, 1)"),
        (["--out", "/nonexistent/x.csv"], "folder /nonexistent does not exist"),
        (["--out", "history.txt"], "name a .csv or .parquet file"),
    ],
)
def test_demo_migrations_refuses_bad_options(tmp_path, args, message):
    argv = ["demo-data", "migrations", "--out", str(tmp_path / "h.csv"), *args]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
