"""Inputs as people have them: separators, decimal commas, unnamed columns, wrong epoch units."""

from __future__ import annotations

import gzip
import warnings

import pandas as pd
import pytest

from zhuge.data import iter_series_chunks, parse_timestamps, read_telemetry
from zhuge.data.sources import read_csv, sniff_csv
from zhuge.errors import DataError

GERMAN = (
    "vm;Zeitstempel;Auslastung\n"
    "vm-1;2024-03-01T00:00:00;12,5\n"
    "vm-1;2024-03-01T00:05:00;13,0\n"
    "vm-2;2024-03-01T00:00:00;7,25\n"
)
GERMAN_MAP = "series_id=vm,timestamp=Zeitstempel,value=Auslastung"


@pytest.mark.parametrize(
    ("text", "sep", "decimal"),
    [
        ("a,b,c\n1,2.5,3\n", ",", "."),
        ("a;b;c\n1;2,5;3\n", ";", ","),
        ("a;b;c\n1;2.5;3\n", ";", "."),
        ("a\tb\tc\n1\t2,5\t3\n", "\t", ","),
        ("a|b\nx|1\n", "|", "."),
        ('a,b\n"x;y",1\n', ",", "."),  # a ; inside quotes is no separator
        ("value\n1\n2\n", ",", "."),  # one column
    ],
)
def test_sniff_csv_finds_the_separator_and_decimal_mark(text, sep, decimal):
    dialect = sniff_csv(text)
    assert (dialect.sep, dialect.decimal) == (sep, decimal)


def test_a_given_separator_is_kept_and_the_decimal_mark_still_detected():
    assert sniff_csv("a,b;c\n1,5;2\n", sep=";").sep == ";"
    assert sniff_csv("a,b;c\n1,5;2\n", sep=";").decimal == ","


def test_semicolon_csv_with_decimal_commas_reads_as_numbers(tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_text(GERMAN)
    telemetry = read_telemetry(path, columns=GERMAN_MAP)
    assert telemetry.frame["value"].tolist() == [12.5, 13.0, 7.25]
    assert telemetry.frame["series_id"].tolist() == ["vm-1", "vm-1", "vm-2"]


def test_compressed_semicolon_csv_streams_in_chunks(tmp_path):
    path = tmp_path / "fleet.csv.gz"
    path.write_bytes(gzip.compress(GERMAN.encode()))
    chunks = list(iter_series_chunks(path, columns=GERMAN_MAP, series_per_chunk=1, batch_rows=2))
    assert [c.frame["series_id"].unique().tolist() for c in chunks] == [["vm-1"], ["vm-2"]]
    assert pd.concat([c.frame for c in chunks])["value"].sum() == pytest.approx(32.75)


def test_explicit_sep_overrides_detection(tmp_path):
    path = tmp_path / "odd.csv"
    # every line splits into 2 fields on ',' too, so detection would pick ','
    path.write_text("a;b,c\n1;2,3\n")
    assert list(read_csv(path, sep=";").columns) == ["a", "b,c"]
    with pytest.raises(DataError, match="one character"):
        read_csv(path, sep=";;")


def test_missing_columns_suggest_a_mapping_from_the_closest_names(tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_text(GERMAN)
    with pytest.raises(DataError) as err:
        read_telemetry(path)
    assert f"columns='{GERMAN_MAP}'" in err.value.message
    assert "columns" in err.value.details["params"]


def test_missing_column_suggested_by_content_when_no_name_is_close(tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_text("machine,t,x\nvm-1,2024-03-01T00:00:00,1.5\nvm-1,2024-03-01T00:05:00,2.5\n")
    with pytest.raises(DataError, match="columns='series_id=machine,timestamp=t,value=x'"):
        read_telemetry(path)


def test_streaming_reader_also_suggests_the_mapping(tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_text(GERMAN)
    with pytest.raises(DataError, match="columns='series_id=vm"):
        list(iter_series_chunks(path))


@pytest.mark.parametrize(
    ("values", "unit", "likely"),
    [
        ([1392388020000, 1392388080000], "s", "ms"),  # ms read as s overflows
        ([1392388020, 1392388080], "ms", "s"),
        ([1392388020, 1392388080], "ns", "s"),
        ([1392388020000000, 1392388080000000], "ms", "us"),
    ],
)
def test_a_wrong_epoch_unit_names_the_likely_one_without_numpy_warnings(values, unit, likely):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning leaks
        with pytest.raises(DataError) as err:
            parse_timestamps(pd.Series(values), unit)
    assert f"timestamp_unit={likely!r}" in err.value.message
    assert err.value.details["likely_unit"] == likely


def test_the_right_epoch_unit_and_old_dates_still_parse():
    parsed, unit = parse_timestamps(pd.Series([1392388020000]), "ms")
    assert (unit, parsed.iloc[0]) == ("ms", pd.Timestamp("2014-02-14 14:27:00"))
    parsed, _ = parse_timestamps(pd.Series([631152000]), "s")  # 1990: no band, still fine
    assert parsed.iloc[0] == pd.Timestamp("1990-01-01")


def test_a_file_read_with_the_wrong_separator_says_which_it_looks_like(tmp_path):
    path = tmp_path / "fleet.csv"
    path.write_text(GERMAN)
    with pytest.raises(DataError, match="looks ';'-separated: pass sep=';'") as err:
        read_telemetry(path, sep="|")
    assert "sep" in err.value.details["params"]
