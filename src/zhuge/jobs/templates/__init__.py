"""Pipeline templates shipped with zhuge: ``zhuge pipeline run --template NAME`` and
``zhuge schedules add ... --template NAME`` use one of these files (package data) as the
pipeline document, filled with ``--param`` values."""

from __future__ import annotations

from importlib import resources

from zhuge.errors import InvalidRequest

SUFFIX = ".yaml"


def template_names() -> list[str]:
    """The templates shipped, by name."""
    folder = resources.files(__package__)
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


def template_document(name: str) -> str:
    """The pipeline document (YAML text) of template ``name``; InvalidRequest naming the
    templates there are for any other name."""
    if name not in template_names():
        raise InvalidRequest(
            f"no pipeline template named {name!r} (there are: {', '.join(template_names())})",
            details={"params": ["template"]},
        )
    return (resources.files(__package__) / f"{name}{SUFFIX}").read_text(encoding="utf-8")
