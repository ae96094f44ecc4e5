"""Reading telemetry: column maps, timestamp units, formats, SQL and grouped streaming."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from zhuge.data import (
    iter_series_chunks,
    parse_column_map,
    parse_timestamps,
    read_sql,
    read_telemetry,
)
from zhuge.errors import DataError

T0 = pd.Timestamp("2024-03-01 00:00:00")


def _raw(n_series: int = 3, n_steps: int = 4) -> pd.DataFrame:
    ts = T0 + pd.to_timedelta(np.arange(n_steps) * 5, unit="min")
    return pd.DataFrame(
        {
            "vm": np.repeat([f"vm-{i}" for i in range(n_series)], n_steps),
            "ts": np.tile(ts.strftime("%Y-%m-%dT%H:%M:%SZ"), n_series),
            "cpu": np.arange(n_series * n_steps, dtype=float),
        }
    )


def test_parse_column_map_from_cli_string():
    assert parse_column_map("series_id=vm, timestamp=ts,value=cpu") == {
        "series_id": "vm",
        "timestamp": "ts",
        "value": "cpu",
    }


@pytest.mark.parametrize("spec", ["serie_id=vm", "series_id", "series_id=", "=vm"])
def test_parse_column_map_refuses_typos(spec):
    with pytest.raises(DataError, match=r"series_id|canonical=source"):
        parse_column_map(spec)


def test_csv_with_mapping_and_iso_timestamps(tmp_path):
    path = tmp_path / "fleet.csv"
    _raw().to_csv(path, index=False)
    got = read_telemetry(path, columns="series_id=vm,timestamp=ts,value=cpu")
    assert got.timestamp_unit == "iso"
    assert list(got.frame.columns) == ["series_id", "timestamp", "value"]
    assert got.frame["timestamp"].dtype == "datetime64[ns]"
    assert got.frame["timestamp"].iloc[1] == T0 + pd.Timedelta("5min")
    assert got.n_series == 3


def test_unknown_column_lists_the_columns_present(tmp_path):
    path = tmp_path / "fleet.csv"
    _raw().to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        read_telemetry(path, columns={"series_id": "vm", "timestamp": "ts", "value": "load"})
    assert "value (as 'load')" in str(err.value)
    assert "['vm', 'ts', 'cpu']" in str(err.value)


@pytest.mark.parametrize(("scale", "unit"), [(1, "s"), (1000, "ms"), (10**6, "us"), (10**9, "ns")])
def test_epoch_unit_is_detected_and_reported(scale, unit):
    epoch_s = np.array([1_709_251_200, 1_709_251_500])  # 2024-03-01 00:00 and 00:05 UTC
    parsed, detected = parse_timestamps(pd.Series(epoch_s * scale))
    assert detected == unit
    assert parsed.tolist() == [T0, T0 + pd.Timedelta("5min")]


def test_explicit_unit_overrides_detection_and_numeric_strings_are_epochs():
    parsed, unit = parse_timestamps(pd.Series(["1709251200000"]), "ms")
    assert (parsed.iloc[0], unit) == (T0, "ms")
    parsed, unit = parse_timestamps(pd.Series(["1709251200"]))
    assert (parsed.iloc[0], unit) == (T0, "s")


def test_time_zones_are_converted_to_utc():
    parsed, unit = parse_timestamps(pd.Series(["2024-03-01T08:00:00+08:00"]))
    assert (parsed.iloc[0], unit) == (T0, "iso")


def test_unparseable_timestamps_name_the_bad_value():
    with pytest.raises(DataError, match="'yesterday'"):
        parse_timestamps(pd.Series(["2024-03-01", "yesterday"]), column="ts")
    with pytest.raises(DataError, match="magnitude"):
        parse_timestamps(pd.Series([12345.0, 12346.0]))


def test_non_numeric_values_are_refused(tmp_path):
    path = tmp_path / "fleet.csv"
    raw = _raw()
    raw["cpu"] = raw["cpu"].astype(object)
    raw.loc[2, "cpu"] = "12%"
    raw.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"1 non-numeric value.*'12%'"):
        read_telemetry(path, columns="series_id=vm,timestamp=ts,value=cpu")


def test_parquet_with_epoch_ms_and_placement(tmp_path):
    raw = _raw()
    raw["ts"] = pd.to_datetime(raw["ts"]).astype("int64") // 10**6
    raw["host"] = "h1"
    path = tmp_path / "fleet.parquet"
    raw.to_parquet(path)
    got = read_telemetry(
        f"file://{path}",
        columns={"series_id": "vm", "timestamp": "ts", "value": "cpu", "host_id": "host"},
    )
    assert got.timestamp_unit == "ms"
    assert list(got.frame.columns) == ["series_id", "timestamp", "value", "host_id"]
    assert got.frame["timestamp"].min() == T0


def test_nab_file_as_one_series(shared_data):
    path = shared_data / "nab/realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv"
    got = read_telemetry(path, series_id="5f5533")
    assert len(got.frame) == 4032
    assert got.frame["timestamp"].iloc[0] == pd.Timestamp("2014-02-14 14:27:00")
    assert got.timestamp_unit == "iso"


def test_read_sql_binds_params(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    raw = _raw()
    raw["ts"] = pd.to_datetime(raw["ts"]).astype("int64") // 10**9
    engine = sa.create_engine(url)
    raw.to_sql("metrics", engine, index=False)
    engine.dispose()
    got = read_sql(
        "SELECT vm, ts, cpu FROM metrics WHERE vm = :vm ORDER BY ts",
        url,
        columns="series_id=vm,timestamp=ts,value=cpu",
        params={"vm": "vm-1"},
    )
    assert got.timestamp_unit == "s"
    assert got.frame["series_id"].unique().tolist() == ["vm-1"]
    assert got.frame["value"].tolist() == [4.0, 5.0, 6.0, 7.0]
    with pytest.raises(DataError, match="query failed"):
        read_sql("SELECT * FROM nowhere", url)


def _write_grouped(path, n_series=23, n_steps=7, row_group=10):
    ts = T0 + pd.to_timedelta(np.arange(n_steps) * 5, unit="min")
    frame = pd.DataFrame(
        {
            "series_id": np.repeat([f"vm-{i:03d}" for i in range(n_series)], n_steps),
            "timestamp": np.tile(ts.values, n_series),
            "value": np.arange(n_series * n_steps, dtype=float),
        }
    )
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group
    )
    return frame


def test_chunks_never_split_a_series(tmp_path):
    path = tmp_path / "t.parquet"
    frame = _write_grouped(path)
    chunks = list(iter_series_chunks(path, series_per_chunk=5, batch_rows=10))
    assert [c.n_series for c in chunks] == [5, 5, 5, 5, 3]
    seen: list[str] = []
    for chunk in chunks:
        counts = chunk.frame.groupby("series_id").size()
        assert (counts == 7).all(), "a series was split across chunks"
        seen += counts.index.tolist()
    assert sorted(seen) == sorted(frame["series_id"].unique())
    assert sum(len(c.frame) for c in chunks) == len(frame)


def test_ungrouped_input_is_refused_or_partitioned(tmp_path):
    path = tmp_path / "t.parquet"
    frame = _write_grouped(path).sample(frac=1.0, random_state=0)
    frame.to_parquet(path, row_group_size=20)
    with pytest.raises(DataError, match="not grouped by series_id"):
        list(iter_series_chunks(path, series_per_chunk=5, batch_rows=20))
    chunks = list(iter_series_chunks(path, series_per_chunk=5, batch_rows=20, partitions=4))
    sizes = pd.concat([c.frame for c in chunks]).groupby("series_id").size()
    assert len(sizes) == 23 and (sizes == 7).all()
    ids = [set(c.frame["series_id"]) for c in chunks]
    assert sum(len(s) for s in ids) == len(set().union(*ids)) == 23
