import pytest

from zhuge.errors import InvalidParams, UnknownKind
from zhuge.jobs.context import local_context
from zhuge.jobs.kinds import all_kinds, get_kind


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(UnknownKind, match=r"unknown job kind 'nope'; known kinds: .*echo.*sleep"):
        get_kind("nope")


def test_params_are_validated_with_field_details():
    with pytest.raises(InvalidParams) as info:
        get_kind("sleep").normalise({"seconds": "soon", "fail_times": -1})
    fields = {tuple(d["loc"]) for d in info.value.details}
    assert fields == {("seconds",), ("fail_times",)}


def test_unknown_params_are_rejected_not_dropped():
    with pytest.raises(InvalidParams, match="secs"):
        get_kind("sleep").normalise({"secs": 1})


def test_normalise_fills_defaults():
    assert get_kind("sleep").normalise({}) == {"seconds": 1.0, "fail_times": 0, "bad_input": False}


def test_builtin_kinds_registered_with_cpu_resources():
    kinds = {k.name: k for k in all_kinds()}
    assert {"sleep", "echo"} <= set(kinds)
    assert kinds["sleep"].resources == {"CPU": 1.0}


def test_sleep_fails_first_attempts_then_succeeds(tmp_path):
    kind = get_kind("sleep")
    ctx = local_context(artifacts_url=tmp_path.as_uri())
    params = kind.parse({"seconds": 0, "fail_times": 1})
    with pytest.raises(RuntimeError, match="failing attempt 1"):
        kind.run(params, ctx)
    ctx.attempt = 2
    assert kind.run(params, ctx) == {"slept": 0.0, "attempt": 2}
