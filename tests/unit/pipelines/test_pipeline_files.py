"""Pipeline files and their templates (``zhuge.jobs.pipelines``): parsing and refusals,
with no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from zhuge.errors import InvalidPipeline
from zhuge.jobs.pipelines import PipelineSpec, TemplateError, render

SLOT = datetime(2026, 3, 8, 2, 0, tzinfo=timezone(timedelta(hours=8)))


def pipeline(**steps):
    return {"name": "p", "params": {"seconds": 1, "label": "x"}, "steps": steps}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ slot }}", "2026-03-08T02:00:00+08:00"),
        ("{{slot-1d}}", "2026-03-07T02:00:00+08:00"),
        ("from {{ slot - 2w }} to {{ slot + 6h }}", "from 2026-02-22T02:00:00+08:00 to 2026-03-08T08:00:00+08:00"),
        ("{{ slot + 90m }}|{{ slot - 30s }}", "2026-03-08T03:30:00+08:00|2026-03-08T01:59:30+08:00"),
        ("run {{ label }}-{{ seconds }}", "run x-1"),
        ("no templates here", "no templates here"),
    ],
)  # fmt: skip
def test_render(text, expected):
    assert render(text, {"slot": SLOT, "label": "x", "seconds": 1}) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ nope }}", "unknown name 'nope'"),
        ("{{ label + 1d }}", "only a time"),
        ("{{ slot - 1y }}", "is not a template"),
        ("{{ slot.year }}", "is not a template"),
        ("{{ __import__('os') }}", "is not a template"),
        ("{{ slot + 999999w }}", "outside the years"),
        ("{% for x in y %}", "Jinja"),
        ("{{ slot", "unclosed"),
        ("slot }}", "stray"),
    ],
)
def test_render_refuses_what_it_does_not_know(text, message):
    with pytest.raises(TemplateError, match=message):
        render(text, {"slot": SLOT, "label": "x"})


def test_a_template_alone_keeps_its_type_and_params_override_defaults():
    spec = PipelineSpec.parse(
        pipeline(a={"kind": "sleep", "params": {"seconds": "{{ seconds }}"}}),
        params={"seconds": 2.5},
        slot=SLOT,
    )
    assert spec.params == {"seconds": 2.5, "label": "x"}
    assert spec.steps[0].params == {"seconds": 2.5}


def test_an_edge_given_twice_is_one_edge():
    spec = PipelineSpec.parse(
        pipeline(
            a={"kind": "sleep"},
            b={"kind": "echo", "after": ["a", "a"], "params": {"text": "step://a/f"}},
        ),
        slot=SLOT,
    )
    assert spec.step("b").after == ("a",)


def test_steps_come_in_an_order_that_respects_their_edges():
    spec = PipelineSpec.parse(
        pipeline(
            c={"kind": "sleep", "after": ["b"]},
            b={"kind": "sleep", "after": ["a"]},
            a={"kind": "sleep"},
            d={"kind": "echo", "params": {"text": "step://c/x.json"}},
        ),
        slot=SLOT,
    )
    assert [s.name for s in spec.steps] == ["a", "b", "c", "d"]
    assert spec.step("d").after == ("c",)


@pytest.mark.parametrize(
    ("steps", "where", "message"),
    [
        ({"a": {"kind": "sleep", "after": ["b"]}, "b": {"kind": "sleep", "after": ["a"]}}, "steps", "cycle: "),
        ({"a": {"kind": "sleep", "after": ["a"]}}, "steps.a.after.0", "itself"),
        ({"a": {"kind": "sleep", "after": ["ghost"]}}, "steps.a.after.0", "no step named 'ghost'"),
        ({"a": {"kind": "no-such-kind"}}, "steps.a.kind", "unknown job kind"),
        ({"a": {"kind": "sleep", "params": {"seconds": -1}}}, "steps.a.params.seconds", "greater"),
        ({"a": {"kind": "sleep", "params": {"sekonds": 1}}}, "steps.a.params.sekonds", "Extra"),
        ({"a": {"kind": "echo", "params": {"text": "step://ghost/f"}}}, "steps.a.params.text", "no step named 'ghost'"),
        ({"a": {"kind": "echo", "params": {"text": "step://a"}}}, "steps.a.params.text", "step://STEP/FILE"),
        ({"a": {"kind": "echo", "params": {"text": "{{ ghost }}"}}}, "steps.a.params", "unknown name 'ghost'"),
        ({"a": {"kind": "sleep", "retries": 3}}, "steps.a.retries", "Extra"),
        ({"a b": {"kind": "sleep"}}, "steps.a b", "a step's name"),
        ({"a": {"kind": "sleep", "resources": {"CPU": -1}}}, "steps.a.resources.CPU", "greater"),
        ({"a": {"kind": "sleep", "resources": {"no such": 1}}}, "steps.a.resources.no such.[key]", "pattern"),
    ],
)  # fmt: skip
def test_refusals_name_the_step_and_field(steps, where, message):
    with pytest.raises(InvalidPipeline, match=message) as caught:
        PipelineSpec.parse(pipeline(**steps), slot=SLOT)
    assert caught.value.message.startswith(f"invalid pipeline: {where}: ")
    assert ".".join(str(p) for p in caught.value.details[0]["loc"]) == where


def test_refusals_of_parameters():
    doc = pipeline(a={"kind": "sleep"})
    with pytest.raises(InvalidPipeline, match=r"params\.colour: not a parameter"):
        PipelineSpec.parse(doc, params={"colour": "red"})
    with pytest.raises(InvalidPipeline, match=r"params\.day: required"):
        PipelineSpec.parse({**doc, "params": {"day": None}})
    with pytest.raises(InvalidPipeline, match="slot: a slot's time must carry its time zone"):
        PipelineSpec.parse(doc, slot=datetime(2026, 1, 1))
    with pytest.raises(InvalidPipeline, match="a mapping"):
        PipelineSpec.parse(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_without_a_slot_a_run_by_hand_uses_now():
    before = datetime.now(UTC).replace(microsecond=0)
    spec = PipelineSpec.parse(pipeline(a={"kind": "echo", "params": {"text": "{{ slot }}"}}))
    rendered = datetime.fromisoformat(spec.steps[0].params["text"])
    assert rendered.tzinfo is not None
    assert before <= rendered <= datetime.now(UTC)


def test_to_document_round_trips_through_parse():
    spec = PipelineSpec.parse(
        pipeline(a={"kind": "sleep"}, b={"kind": "sleep", "after": ["a"], "priority": 3}),
        slot=SLOT,
    )
    again = PipelineSpec.parse(spec.to_document(), slot=SLOT)
    assert again.steps == spec.steps
