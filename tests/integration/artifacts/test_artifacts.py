"""Artifacts with manifests, on a local folder and on a real S3 protocol server (moto)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import free_port
from zhuge.artifacts import ArtifactDir
from zhuge.errors import ModelNotFound


@pytest.fixture(scope="module")
def s3_root():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.2)
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="zhuge-test")
    yield "s3://zhuge-test/artifacts"
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path) -> ArtifactDir:
    if request.param == "file":
        return ArtifactDir((tmp_path / "artifacts").as_uri())
    return ArtifactDir(request.getfixturevalue("s3_root") + f"/{time.time_ns()}")


def test_save_and_load_verifies_hashes_and_records_versions(root):
    model = root.child("jobs/7/attempt-1/model")
    manifest = model.save(
        {"booster.txt": b"tree 1\n", "config.json": b'{"lags": [1, 24]}'},
        kind="forecaster",
        libraries=["numpy"],
        metadata={"freq": "1h"},
    )
    assert manifest["libraries"]["numpy"] != "not installed"
    loaded, files = model.load(kind="forecaster")
    assert files == {"booster.txt": b"tree 1\n", "config.json": b'{"lags": [1, 24]}'}
    assert loaded["metadata"] == {"freq": "1h"}


def test_tampered_file_is_refused(root):
    model = root.child("m")
    model.save({"weights.bin": b"\x00\x01"}, kind="forecaster")
    model.write_bytes("weights.bin", b"\x00\x02")
    with pytest.raises(ModelNotFound, match="does not match its manifest hash"):
        model.load()


def test_missing_or_wrong_kind_is_a_clear_error(root):
    with pytest.raises(ModelNotFound, match="no saved artifact"):
        root.child("nothing-here").load()
    model = root.child("seg")
    model.save({"a": b"1"}, kind="segmenter")
    with pytest.raises(ModelNotFound, match="is a 'segmenter', not a 'forecaster'"):
        model.load(kind="forecaster")


def test_parquet_round_trip(root):
    import pandas as pd

    frame = pd.DataFrame({"series_id": ["a", "b"], "yhat": [1.5, 2.5]})
    root.write_parquet("out/forecast.parquet", frame)
    pd.testing.assert_frame_equal(root.read_parquet("out/forecast.parquet"), frame)
