"""Preprocessing: auto choices on a mixed table, the spec as JSON, bad specs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from zhuge.errors import DataError
from zhuge.ml.preprocess import Preprocessor, PreprocessSpec, load_spec


@pytest.fixture
def mixed() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    income = rng.normal(50_000, 10_000, n)
    income[:5] = np.nan
    words = ["fast delivery great price", "slow shipping bad support", "ok product would buy again"]
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "age": rng.integers(18, 80, n),
            "income": income,
            "city": rng.choice(["Paris", "Lyon", "Nice"], n),
            "review": [f"{words[i % 3]} {i}" for i in range(n)],
            "signup": pd.date_range("2024-01-01", periods=n, freq="D"),
            "email": [f"user{i}@example.com" for i in range(n)],
        }
    )


def test_auto_choices_on_a_mixed_table(mixed) -> None:
    pre = Preprocessor()
    out = pre.fit_transform(mixed)
    spec = pre.resolved_spec_
    assert spec["numeric"] == ["age", "income"]
    assert spec["categorical"] == ["city"]
    assert spec["text"] == ["review"]
    assert spec["impute"] == "knn" and spec["scaling"] == "standard" and spec["outliers"] == "flag"
    text = "\n".join(pre.description_)
    for fragment in [
        "dropped customer_id",
        "dropped signup",
        "dropped email",
        "imputed 5",
        "PCA",
        "IsolationForest",
    ]:
        assert fragment in text, text
    assert out.shape[0] == len(mixed) and np.isfinite(out).all()
    assert pre.outlier_mask_.shape == (len(mixed),)
    # the resolved spec replays the same transformation
    again = Preprocessor(spec=PreprocessSpec.from_dict(spec)).fit_transform(mixed)
    np.testing.assert_allclose(again, out)
    np.testing.assert_allclose(pre.transform(mixed.iloc[:7]), out[:7])


def test_heavy_tails_choose_robust_scaling() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=2_000)
    x[:100] = 1e4  # 2.5 % of all cells
    pre = Preprocessor(spec={"outliers": "none"}).fit(
        pd.DataFrame({"x": x, "y": rng.normal(size=2_000)})
    )
    assert pre.resolved_spec_["scaling"] == "robust"


def test_spec_from_json_file_and_exclusion(tmp_path, mixed) -> None:
    path = tmp_path / "spec.json"
    path.write_text(
        json.dumps(
            {
                "numeric": ["age", "income"],
                "categorical": [],
                "text": [],
                "outliers": "exclude",
                "pca": None,
                "impute": "median",
            }
        )
    )
    pre = Preprocessor(spec=load_spec(path))
    out = pre.fit_transform(mixed)
    assert out.shape == (len(mixed), 2)
    assert any("excluded from fitting" in line for line in pre.description_)


def test_bad_specs(tmp_path) -> None:
    with pytest.raises(DataError, match="unknown preprocessing option"):
        PreprocessSpec.from_dict({"scale": "robust"})
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        load_spec(tmp_path / "bad.json")
