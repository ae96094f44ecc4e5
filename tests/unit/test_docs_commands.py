"""Every ``zhuge ...`` command line in a fenced block of README.md and docs/*.md parses: the
command exists and accepts every option shown, so the docs cannot go stale silently."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest
import typer

from zhuge.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*(```|~~~)")
STOP = {"|", "||", "&&", ";", ">", ">>", "<", "&", "2>&1"}


def command_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of each ``zhuge`` line in the file's fenced blocks, with its
    ``\\`` continuations joined and a leading ``$`` prompt dropped."""
    found: list[tuple[int, str]] = []
    fenced = False
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced, pending = not fenced, None
            continue
        if not fenced:
            continue
        if pending is not None:
            start, text = pending
            text += " " + line.strip()
        else:
            start, text = number, line.strip().removeprefix("$ ")
            if not re.match(r"(\S+=\S+\s+)*zhuge\s", text + " "):
                continue
        if text.endswith("\\"):
            pending = (start, text[:-1])
            continue
        pending = None
        found.append((start, text))
    return found


CASES = [
    pytest.param(text, id=f"{path.relative_to(ROOT)}:{number}")
    for path in DOCS
    for number, text in command_lines(path)
]


@functools.cache
def _root():
    return typer.main.get_command(app)


def _options(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return names


def check_command_line(text: str) -> None:
    try:
        words = shlex.split(text, comments=True)
    except ValueError as exc:
        pytest.fail(f"{text!r} does not split as a shell line: {exc}")
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)  # VAR=value before the command
    assert words and words[0] == "zhuge", text
    words = words[1:]
    if STOP & set(words):
        words = words[: min(words.index(w) for w in STOP if w in words)]
    root = _root()
    global_options = _options(root)
    while words and words[0].startswith("-"):  # zhuge's own options (all flags) come first
        assert words[0] in global_options, f"zhuge has no option {words[0]}: {text}"
        words.pop(0)
    command, path = root, ["zhuge"]
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        assert name in command.commands, f"{' '.join(path)} has no command {name!r}: {text}"
        command = command.commands[name]
        path.append(name)
    if hasattr(command, "commands"):
        return  # a group shown alone (its --help)
    accepted = _options(command) | (global_options if len(path) > 1 else set())
    for word in words:
        if word == "--":
            break
        if re.match(r"^--?[A-Za-z]", word):
            option = word.split("=", 1)[0]
            assert option in accepted, (
                f"{' '.join(path)} has no option {option}: {text}\n"
                f"it has: {', '.join(sorted(accepted))}"
            )


@pytest.mark.parametrize("text", CASES)
def test_documented_command_line_parses(text):
    check_command_line(text)


def test_the_check_catches_a_stale_option_and_a_missing_command():
    with pytest.raises(AssertionError, match="has no option --sample-freq"):
        check_command_line("zhuge forecast --input x.parquet --sample-freq 5min")
    with pytest.raises(AssertionError, match="has no command 'forcast'"):
        check_command_line("zhuge forcast --input x.parquet")
    check_command_line("zhuge jobs ls --state running --wide | head  # a comment --nope")
    check_command_line("zhuge --detach forecast --input x.parquet")
    with pytest.raises(AssertionError, match="zhuge has no option --nope"):
        check_command_line("zhuge --nope jobs ls")
    with pytest.raises(AssertionError, match="has no option --sample-freq"):
        check_command_line("zhuge --wide forecast --sample-freq 5min")


def test_the_docs_have_command_lines():
    assert len(CASES) > 20  # the extraction still finds them


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_two_sections_share_a_heading(path):
    """Two ``## Calibration`` sections: a reader (and an anchor link) finds only the first."""
    headings = [line.strip() for line in path.read_text().splitlines() if line.startswith("## ")]
    repeated = sorted({h for h in headings if headings.count(h) > 1})
    assert not repeated, f"{path.name}: {repeated}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_stay_in_the_repository_and_exist(path):
    text = path.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    targets += re.findall(r"[Ss]ee `(\.\./[^`]+)`", text)
    for target in targets:
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name} links outside the repo: {target}"
        assert resolved.exists(), f"{path.name} links to a missing file: {target}"
