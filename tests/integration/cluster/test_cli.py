"""``zhuge cluster`` / ``cluster predict`` / ``tune`` end to end on an embedded platform.

Each successful command starts a local Dask cluster (seconds), so successful runs are few and
each checks several things; every bad-input case fails in the command's own checks, before
any platform starts, so those also prove nothing was written (not even ZHUGE_HOME).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from zhuge.cli import app
from zhuge.data import generate_fleet

pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(app, args, env=env)


def _json(args: list[str], env: dict[str, str]) -> dict:
    result = _run([*args, "--json"], env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _baseline_ari(X: np.ndarray, y: np.ndarray) -> float:
    labels = KMeans(n_clusters=len(set(y)), n_init=10, random_state=0).fit_predict(
        StandardScaler().fit_transform(X)
    )
    return adjusted_rand_score(y, labels)


def _file(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def test_auto_on_wine_reaches_the_true_k_baseline_then_predict_round_trip(tmp_path, env):
    data = datasets.load_wine(as_frame=True)
    table = data.data.assign(wine_id=[f"w{i:03d}" for i in range(len(data.data))])
    table.to_parquet(tmp_path / "wine.parquet")
    out = tmp_path / "labels.parquet"

    report = _json(
        ["cluster", "--input", str(tmp_path / "wine.parquet"), "--id-column", "wine_id",
         "--out", str(out)],
        env,
    )  # fmt: skip
    labels = pd.read_parquet(out)
    assert list(labels.columns) == ["wine_id", "label"]
    assert labels["wine_id"].tolist() == table["wine_id"].tolist()  # input row order
    ari = adjusted_rand_score(data.target, labels["label"])
    assert ari >= _baseline_ari(data.data.to_numpy(), data.target.to_numpy()) - 1e-9
    assert ari > 0.85 and report["n_clusters"] == 3
    assert "gap statistic chose k=3" in report["reason"]
    assert len(report["candidates"]) > 10
    assert report["winner"] in {c["candidate"] for c in report["candidates"]}
    assert {c["algorithm"] for c in report["candidates"]} >= {"kmeans", "gmm", "spectral"}
    assert "wine_id" not in report["features"]
    assert sum(c["size"] for c in report["profile"]) == len(table)
    # the model artifact is on disk with a manifest whose hashes match its files
    model = _file(report["artifacts"]["model"])
    manifest = json.loads((model / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((model / name).read_bytes()).hexdigest() == digest
    profile = pd.read_parquet(_file(report["artifacts"]["profile"]))
    assert set(profile["feature"]) == set(data.data.columns)

    # predict: new rows (the first 40, shuffled) get the labels the fit gave them
    new = table.iloc[:40].sample(frac=1.0, random_state=1)
    new.to_csv(tmp_path / "new.csv", index=False)
    predicted = _json(
        ["cluster", "predict", "--model-from", str(report["job_id"]),
         "--input", str(tmp_path / "new.csv"), "--out", str(tmp_path / "new_labels.parquet")],
        env,
    )  # fmt: skip
    assert predicted["rows"] == 40 and predicted["id_column"] == "wine_id"
    got = pd.read_parquet(tmp_path / "new_labels.parquet").set_index("wine_id")["label"]
    want = labels.set_index("wine_id")["label"]
    assert (got == want.loc[got.index]).all()


def test_auto_on_iris_with_rich_output_and_a_compact_candidate_table(tmp_path, env):
    """Iris: setosa is separated, the other two touch; auto keeps the two groups it can see
    (see tests/unit/cluster/test_quality.py). The candidate table stays short (#18): one
    line per shown candidate, long labels cut, the rest counted."""
    data = datasets.load_iris(as_frame=True)
    data.data.to_csv(tmp_path / "iris.csv", index=False)
    out = tmp_path / "iris_labels.parquet"
    result = _run(["cluster", "--input", str(tmp_path / "iris.csv"), "--out", str(out)], env)
    assert result.exit_code == 0, result.output
    labels = pd.read_parquet(out)["label"]
    assert adjusted_rand_score(data.target, labels) > 0.55
    for fragment in ("Segmented 150 rows", "separate their clusters cleanly", "Candidates (",
                     "decided by dunn_owa", "winner", "what sets each apart",
                     "cluster predict --model-from"):  # fmt: skip
        assert fragment in " ".join(result.stdout.split()), result.stdout
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Candidates (" in line)
    end = next(i for i, line in enumerate(lines) if "more (--json lists all)" in line)
    assert end - start <= 16, "\n".join(lines[start : end + 1])  # 8 rows + borders + header


def _transactions(seed: int = 0) -> tuple[pd.DataFrame, dict[str, int]]:
    """Three customer kinds: loyal (recent, frequent, big), lapsed (old, few), bargain (recent,
    frequent, tiny amounts)."""
    rng = np.random.default_rng(seed)
    rows, kind_of = [], {}
    end = pd.Timestamp("2024-06-30")
    for i in range(90):
        kind = i % 3
        customer = f"c{i:03d}"
        kind_of[customer] = kind
        n = [40, 3, 30][kind] + int(rng.integers(0, 5))
        last = [2, 150, 5][kind] + float(rng.uniform(0, 4))
        days = last + rng.uniform(0, 60 if kind != 1 else 100, n)
        amount = [200.0, 60.0, 5.0][kind] * rng.uniform(0.8, 1.2, n)
        rows.append(
            pd.DataFrame(
                {"customer_id": customer, "timestamp": end - pd.to_timedelta(days, "D"),
                 "amount": amount}
            )
        )  # fmt: skip
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed), kind_of


def test_rfm_template_recovers_customer_segments(tmp_path, env):
    # k is given: with 3-7 purchases per lapsed customer, frequency takes five values and the
    # gap statistic (rightly, for these features) sees sub-groups; the template is under test
    transactions, kind_of = _transactions()
    transactions.to_parquet(tmp_path / "transactions.parquet")
    out = tmp_path / "segments.parquet"
    report = _json(
        ["cluster", "--template", "rfm", "--input", str(tmp_path / "transactions.parquet"),
         "--k", "3", "--out", str(out)],
        env,
    )  # fmt: skip
    segments = pd.read_parquet(out)
    assert list(segments.columns) == ["customer_id", "label"] and len(segments) == 90
    truth = segments["customer_id"].map(kind_of)
    assert adjusted_rand_score(truth, segments["label"]) == 1.0
    assert report["features"] == ["recency_days", "frequency", "monetary"]
    assert any("template rfm" in n for n in report["notes"])


def test_load_profile_template_on_a_synthetic_fleet(tmp_path, env):
    telemetry, _ = generate_fleet(40, days=3, freq="15min", seed=3)
    telemetry.to_parquet(tmp_path / "fleet.parquet")
    out = tmp_path / "vm_groups.parquet"
    report = _json(
        ["cluster", "--template", "load-profile", "--input", str(tmp_path / "fleet.parquet"),
         "--algorithm", "kmeans", "--out", str(out)],
        env,
    )  # fmt: skip
    groups = pd.read_parquet(out)
    assert list(groups.columns) == ["series_id", "label"]
    assert sorted(groups["series_id"]) == sorted(telemetry["series_id"].unique())
    assert report["algorithm"] == "kmeans" and report["n_clusters"] >= 2
    assert report["features"] == [f"h{h:02d}" for h in range(24)]
    assert groups["label"].nunique() == report["n_clusters"]


def test_streamed_parquet_keeps_row_order_and_predicts(tmp_path, env):
    rng = np.random.default_rng(0)
    n = 30_000
    truth = rng.integers(0, 3, n)
    X = np.array([[0.0, 0.0], [8.0, 8.0], [0.0, 8.0]])[truth] + rng.normal(size=(n, 2))
    table = pd.DataFrame({"row_id": np.arange(n), "a": X[:, 0], "b": X[:, 1]})
    table.to_parquet(tmp_path / "big.parquet", row_group_size=5_000)
    out = tmp_path / "big_labels.parquet"
    report = _json(
        ["cluster", "--input", str(tmp_path / "big.parquet"), "--id-column", "row_id",
         "--stream", "--batch-rows", "5000", "--out", str(out)],
        env,
    )  # fmt: skip
    assert report["streamed"] and report["pages"] == 6 and report["n_clusters"] == 3
    # auto, streamed: it says which of its candidates it can use, and how to get the rest
    assert any("only minibatch-kmeans learns from pages" in n for n in report["notes"])
    assert any("--sample N" in n for n in report["notes"])
    labels = pd.read_parquet(out)
    assert labels["row_id"].tolist() == list(range(n))
    assert adjusted_rand_score(truth, labels["label"]) > 0.99
    predicted = _json(
        ["cluster", "predict", "--model-from", str(report["job_id"]),
         "--input", str(tmp_path / "big.parquet")],
        env,
    )  # fmt: skip
    again = pd.read_parquet(_file(predicted["artifacts"]["labels"]))
    assert (again["label"].to_numpy() == labels["label"].to_numpy()).all()


# -- bad input: a clear message, exit 1, nothing written, no job submitted --------------------


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "bad.parquet") -> str:
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return str(path)


BAD_TABLES = {
    "no numeric columns": (
        pd.DataFrame({"customer": [f"c{i}" for i in range(30)]}), [], "no numeric columns"
    ),
    "all rows missing": (
        pd.DataFrame({"a": [np.nan] * 5, "b": [np.nan] * 5}), [], "all rows are missing"
    ),
    "a single row": (pd.DataFrame({"a": [1.0], "b": [2.0]}), [], "single row"),
    "k larger than rows": (
        pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5.0)}), ["--k", "8"],
        "k=8 is larger than the number of rows (5)",
    ),
    "unknown column": (
        pd.DataFrame({"a": np.arange(9.0), "b": np.arange(9.0)}), ["--columns", "a,nope"],
        "unknown column name(s) ['nope']",
    ),
    "unknown id column": (
        pd.DataFrame({"a": np.arange(9.0)}), ["--id-column", "customer_id"],
        "unknown column name(s) ['customer_id']",
    ),
    "none preprocessing on text": (
        pd.DataFrame({"name": ["x", "y", "z"]}), ["--preprocess", "none"], "no numeric columns"
    ),
    "missing values without preprocessing": (
        pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [1.0, 2.0, 3.0, 4.0]}),
        ["--preprocess", "none"], "1 missing value(s) and preprocess none",
    ),
    "spectral too big": (
        pd.DataFrame({"a": np.arange(25_000.0), "b": np.arange(25_000.0)}),
        ["--algorithm", "spectral"], "spectral grows with rows squared",
    ),
    "bad k": (pd.DataFrame({"a": np.arange(9.0)}), ["--k", "many"], "give a number (4)"),
    "k range backwards": (
        pd.DataFrame({"a": np.arange(9.0)}), ["--k", "8..2"],
        "--k '8..2': the range starts above where it ends; write it low to high (2..8)",
    ),
    "unknown algorithm": (
        pd.DataFrame({"a": np.arange(9.0)}), ["--algorithm", "kmedoids"], "unknown algorithm"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_input_exits_1_and_writes_nothing(case, tmp_path, env):
    frame, extra, message = BAD_TABLES[case]
    out = tmp_path / "labels.parquet"
    result = _run(["cluster", "--input", _write(tmp_path, frame), "--out", str(out), *extra], env)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert not out.exists()
    assert not (tmp_path / "home").exists()  # refused before any job was submitted


def test_bad_input_as_json_names_the_error(tmp_path, env):
    path = _write(tmp_path, pd.DataFrame({"a": [1.0], "b": [2.0]}), "one.csv")
    result = _run(["cluster", "--input", path, "--json"], env)
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "DataError" and "single row" in error["message"]


def test_missing_input_and_missing_model_inputs(tmp_path, env):
    result = _run(["cluster", "--out", str(tmp_path / "x.parquet")], env)
    assert result.exit_code == 1 and "--input is required" in result.stderr
    result = _run(["cluster", "--input", str(tmp_path / "nope.parquet")], env)
    assert result.exit_code == 1 and "does not exist" in result.stderr
    result = _run(
        ["cluster", "predict", "--model-from", "7", "--input", str(tmp_path / "nope.csv")], env
    )
    assert result.exit_code == 1 and "does not exist" in result.stderr
    assert not (tmp_path / "home").exists()


def test_predict_needs_only_the_columns_the_model_uses(tmp_path, env):
    """#18: an identifier-like column (email) that preprocessing dropped is not required by
    ``cluster predict``; a used column missing is named together with what the model needs."""
    data = datasets.load_wine(as_frame=True)
    table = data.data[["alcohol", "malic_acid", "color_intensity"]].copy()
    table["email"] = [f"user{i}@example.com" for i in range(len(table))]
    table.to_parquet(tmp_path / "fit.parquet")
    report = _json(
        ["cluster", "--input", str(tmp_path / "fit.parquet"), "--algorithm", "kmeans",
         "--k", "3", "--out", str(tmp_path / "labels.parquet")],
        env,
    )  # fmt: skip
    assert any("dropped email" in line for line in report["preprocessing"]), report
    table.drop(columns="email").iloc[:20].to_csv(tmp_path / "new.csv", index=False)
    predicted = _json(
        ["cluster", "predict", "--model-from", str(report["job_id"]),
         "--input", str(tmp_path / "new.csv"), "--out", str(tmp_path / "new_labels.parquet")],
        env,
    )  # fmt: skip
    got = pd.read_parquet(tmp_path / "new_labels.parquet")["label"].tolist()
    assert predicted["rows"] == 20
    assert got == pd.read_parquet(tmp_path / "labels.parquet")["label"].iloc[:20].tolist()

    table[["alcohol", "email"]].iloc[:20].to_csv(tmp_path / "lacking.csv", index=False)
    bad = _run(
        ["cluster", "predict", "--model-from", str(report["job_id"]),
         "--input", str(tmp_path / "lacking.csv"), "--out", str(tmp_path / "x.parquet"), "--json"],
        env,
    )  # fmt: skip
    assert bad.exit_code == 1, bad.output
    message = json.dumps(json.loads(bad.stdout)["error"])
    assert "needs the columns" in message and "alcohol" in message
    assert "lacks ['malic_acid', 'color_intensity']" in message
