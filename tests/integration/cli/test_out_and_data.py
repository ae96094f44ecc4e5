"""The convenience commands take one path, embedded or remote: ``--out`` downloads the job's
output through the API and replaces the file whole; a local file given to a data option is
sent as a dataset once, then reused by its digest; paths under the server's roots go as
they are."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.cli.run import data_ref
from zhuge.client import Client
from zhuge.errors import DataError
from zhuge.jobs.store import JobStore

pytestmark = pytest.mark.slow


def _table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    centres = np.repeat([[0.0, 0.0], [8.0, 8.0]], 30, axis=0)
    frame = pd.DataFrame(centres + rng.normal(size=centres.shape), columns=["a", "b"])
    frame.assign(row_id=[f"r{i}" for i in range(len(frame))]).to_csv(path, index=False)
    return path


@pytest.fixture
def requests(monkeypatch) -> list[tuple[str, str]]:
    """Every API request the commands make: (method, path)."""
    seen: list[tuple[str, str]] = []
    original = Client._request

    def recorded(self, method, path, **kwargs):
        seen.append((method, path))
        return original(self, method, path, **kwargs)

    monkeypatch.setattr(Client, "_request", recorded)
    return seen


def _ok(env, *args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_out_replaces_the_file_whole_and_a_local_file_is_uploaded_once(
    env, tmp_path, tmp_path_factory, requests
):
    # outside the data roots (env's are tmp_path): the file must travel as a dataset
    table = _table(tmp_path_factory.mktemp("elsewhere") / "points.csv")
    out = tmp_path / "labels.parquet"
    out.write_bytes(b"yesterday's labels")
    reader = tmp_path / "reader.parquet"
    os.link(out, reader)  # a reader holding the old file keeps seeing it whole

    fit = _ok(env, "cluster", "--input", str(table), "--id-column", "row_id",
              "--algorithm", "kmeans", "--k", "2", "--out", str(out))  # fmt: skip
    labels = pd.read_parquet(out)
    assert fit["out"] == str(out) and fit["output"] == "labels.parquet"
    assert list(labels.columns) == ["row_id", "label"] and len(labels) == 60
    first_half = labels["row_id"].str[1:].astype(int) < 30
    assert labels.groupby(first_half)["label"].nunique().tolist() == [1, 1]
    assert reader.read_bytes() == b"yesterday's labels"  # replaced, not rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "home", "labels.parquet", "reader.parquet"
    ]  # fmt: skip  # no temporary file left behind

    again = tmp_path / "again.parquet"
    predicted = _ok(env, "cluster", "predict", "--model-from", str(fit["job_id"]),
                    "--input", str(table), "--out", str(again))  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_parquet(again), labels)
    uploads = [r for r in requests if r == ("POST", "/v1/datasets")]
    assert len(uploads) == 1  # the second run found the file's digest and sent nothing

    store = JobStore.open(f"sqlite:///{Path(env['ZHUGE_HOME']) / 'zhuge.db'}")
    try:
        (ref,) = {store.get(j["job_id"]).params["input"] for j in (fit, predicted)}
    finally:
        store.dispose()
    assert ref.startswith("dataset://points@sha256:")


def test_a_job_that_fails_leaves_out_as_it_was(env, tmp_path):
    table = _table(tmp_path / "points.csv")
    out = tmp_path / "labels.parquet"
    out.write_bytes(b"yesterday's labels")
    args = ["cluster", "predict", "--model-from", "999", "--input", str(table),
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    assert "999" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == b"yesterday's labels"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "labels.parquet", "points.csv"]


class FakeClient:
    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self.uploaded: list[Path] = []

    def data_roots(self) -> list[str]:
        return self.roots

    def put_dataset(self, path: Path) -> dict:
        self.uploaded.append(path)
        return {"ref": f"dataset://{path.stem}@sha256:{'0' * 64}"}


def test_data_ref_passes_roots_and_references_and_uploads_the_rest(tmp_path, monkeypatch):
    root = tmp_path / "shared"
    (root / "fleet").mkdir(parents=True)
    (root / "fleet" / "telemetry.parquet").write_bytes(b"x")
    (tmp_path / "mine.csv").write_text("a\n1\n")
    monkeypatch.chdir(tmp_path)
    client = FakeClient([str(root)])

    under = data_ref(client, "shared/fleet/../fleet/telemetry.parquet", flag="--input")
    assert under == str(root / "fleet" / "telemetry.parquet")  # absolute, resolved
    assert data_ref(client, "shared/fleet", flag="--input") == str(root / "fleet")  # a folder
    for ref in ("dataset://fleet", "connection://lake/fleet/x.parquet"):
        assert data_ref(client, ref, flag="--input") == ref
    assert data_ref(client, None, flag="--vms") is None
    assert data_ref(client, "mine.csv", flag="--vms").startswith("dataset://mine@sha256:")
    assert client.uploaded == [tmp_path / "mine.csv"]

    with pytest.raises(DataError, match=r"--history nope\.csv: no such file"):
        data_ref(client, "nope.csv", flag="--history")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(DataError, match="--input elsewhere is a folder outside"):
        data_ref(client, "elsewhere", flag="--input")
