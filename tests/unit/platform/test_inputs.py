"""Every parameter that names data goes through ``zhuge.jobs.inputs``: the registered kinds
are enumerated, and a field that could carry a path, URL or connection without the marker
fails the test. Also the walker itself, and the rules for one reference, without a store."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from zhuge.jobs.inputs import (
    ConnectionName,
    DataRef,
    JobOrDataRef,
    JobRef,
    _classify,
    _Dataset,
    _Object,
    _Path,
    _Refused,
    data_refs,
    field_markers,
)
from zhuge.jobs.kinds import all_kinds

# Text fields that name no data, each with the reason it is safe to leave unmarked.
NOT_DATA = {
    "sql": "a query; it runs read-only on the database of the marked `connection` field",
    "columns": "column names of the input (or a canonical=source mapping of them)",
    "id_column": "a column name",
    "horizon": "a duration, parsed",
    "sample_freq": "a duration, parsed",
    "window": "a duration, parsed",
    "deadline": "a duration or timestamp, parsed",
    "not_before": "a duration or timestamp, parsed",
    "blackouts": "daily time ranges, parsed",
    "model": "a model name, checked against the list",
    "models": "model names, checked against the list",
    "algorithm": "an algorithm name, checked against the list",
    "preprocess": "a preprocessing spec: column and transform names (zhuge.ml.preprocess)",
    "register_as": "a registered model's name in the caller's tenant (registry.check_name)",
    "config": "a model's release gate settings, checked by registry.ModelConfig",
}
DATA_WORDS = re.compile(
    r"\b(paths?|urls?|uri|files?|tables?|databases?|db|folders?|director(y|ies)|s3)\b", re.I
)


def _is_text(annotation: Any) -> bool:
    """Whether a value of this type can hold free text (a Literal cannot)."""
    if annotation is str:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return False  # walked on its own
    return annotation is Any or any(_is_text(a) for a in typing.get_args(annotation))


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The model and every model nested in its fields' types."""
    found = [model]
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel) and t not in found:
                found.extend(_models(t))
            stack.extend(typing.get_args(t))
    return found


FIELDS = [
    (kind.name, model.__name__, name, field)
    for kind in all_kinds()
    # the product's kinds: test modules collected before this one may have registered
    # test-only kinds (gates, markers) whose paths are the tests' own
    if kind.run.__module__.startswith("zhuge.")
    for model in _models(kind.params)
    for name, field in model.model_fields.items()
]


def test_the_registry_has_the_kinds_that_read_data():
    names = {kind for kind, *_ in FIELDS}
    assert {"prepare", "train", "forecast", "backtest", "cluster", "cluster-predict", "tune",
            "plan-migration", "calibrate-migration"} <= names  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "model", "name", "field"), FIELDS, ids=[f"{k}.{n}" for k, _, n, _ in FIELDS]
)
def test_every_text_field_names_data_through_the_one_check_or_is_known_not_to(
    kind, model, name, field
):
    markers = field_markers(field)
    words = f"{name} {field.description or ''}"
    if DATA_WORDS.search(words):
        assert markers, f"{kind}: {model}.{name} ({words!r}) reads like data but is not marked"
    if _is_text(field.annotation) and not markers:
        assert name in NOT_DATA, (
            f"{kind}: {model}.{name} is text without a data marker: mark it DataRef / "
            "ConnectionName / JobOrDataRef, or add it to NOT_DATA with the reason it is safe"
        )


def test_the_known_fields_and_the_markers_are_what_the_kinds_use():
    marked = {(kind, name): field_markers(field) for kind, _, name, field in FIELDS}
    assert marked[("forecast", "input")] == {"data"}
    assert marked[("prepare", "connection")] == {"connection"}
    assert marked[("forecast", "model_from")] == {"job", "model"}
    assert marked[("cluster-predict", "model_from")] == {"job", "model"}
    assert marked[("backtest", "model_from")] == {"job", "model"}
    assert marked[("plan-migration", "forecast")] == {"job-or-data"}
    assert marked[("plan-migration", "vm_list")] == {"data"}
    assert not any(name == "db" for _, _, name, _ in FIELDS)


class Inner(BaseModel):
    source: DataRef
    note: str = ""


class Outer(BaseModel):
    input: DataRef | None = None
    more: list[DataRef] = []
    by_name: dict[str, DataRef] = {}
    nested: Inner | None = None
    many: list[Inner] = []
    either: JobOrDataRef | None = None
    job: JobRef | None = None
    connection: ConnectionName | None = None
    plain: str = "not data"
    extra: Annotated[list[Inner | int], "doc"] = []


def test_the_walker_finds_references_in_nested_models_lists_and_dicts():
    params = Outer(
        input="/a",
        more=["/b", "dataset://c"],
        by_name={"x": "/d"},
        nested=Inner(source="/e"),
        many=[Inner(source="/f"), Inner(source="/g")],
        either="7",
        job=3,
        connection="warehouse",
        extra=[5, Inner(source="/h")],
    )
    found = {loc: (marker, value) for loc, marker, value in data_refs(params)}
    assert found == {
        ("input",): ("data", "/a"),
        ("more", 0): ("data", "/b"),
        ("more", 1): ("data", "dataset://c"),
        ("by_name", "x"): ("data", "/d"),
        ("nested", "source"): ("data", "/e"),
        ("many", 0, "source"): ("data", "/f"),
        ("many", 1, "source"): ("data", "/g"),
        ("either",): ("job-or-data", "7"),
        ("job",): ("job", 3),
        ("connection",): ("connection", "warehouse"),
        ("extra", 1, "source"): ("data", "/h"),
    }
    assert list(data_refs(Outer())) == []


@pytest.mark.parametrize(
    ("ref", "rule"),
    [
        ("file:///etc/shadow", "scheme 'file'"),
        ("FILE:/etc/shadow", "scheme 'FILE'"),
        ("http://127.0.0.1:8470/x", "scheme 'http'"),
        ("memory://x", "scheme 'memory'"),
        ("s3://bucket/key", "scheme 's3'"),
        ("zip::file:///x.zip", "scheme 'zip'"),
        ("/data/x::memory://y", "'::'"),
        ("/data/*.csv", "wildcards"),
        ("/data/x?.csv", "wildcards"),
        ("/data/[ab].csv", "wildcards"),
        ("/data/x\x00.csv", "NUL"),
        ("C:\\data\\x.csv", "Windows"),
        ("c:/data/x.csv", "Windows"),
        ("\\\\server\\share\\x.csv", "Windows"),
        ("/data/x\\y.csv", "Windows"),
        ("~/x.csv", "'~'"),
        ("~root/x.csv", "'~'"),
        ("data/x.csv", "relative path"),
        ("../x.csv", "relative path"),
        ("", "empty"),
        ("connection://", "not connection://NAME/KEY"),
        ("connection://warehouse", "not connection://NAME/KEY"),
        ("connection://warehouse/../x", "'..'"),
        ("connection://warehouse/a//b", "'..'"),
        ("connection://warehouse//etc/passwd", "'..'"),
        ("connection://warehouse/a/*.csv", "wildcards"),
        ("/" + "a" * 5000, "longer than"),
    ],
)
def test_references_outside_the_accepted_forms_are_refused_by_rule(ref, rule):
    with pytest.raises(_Refused, match=re.escape(rule)):
        _classify(ref)


def test_the_accepted_forms():
    assert _classify("dataset://fleet") == _Dataset("dataset://fleet")
    assert _classify("connection://lake/2024/cpu.parquet") == _Object("lake", "2024/cpu.parquet")
    assert _classify("/data/fleet/../x.parquet") == _Path("/data/fleet/../x.parquet")
