"""The docs stay true: the README stays short, every link lands, and every command or option a page
shows (``bridgectl …``, ``python -m localworld …``) still exists."""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING

import click
import pytest

from bench import figures
from bridgectl.cli import bridgectl
from localworld.cli import build_parser
from stage.project import PROJECT_DIR

if TYPE_CHECKING:
    from pathlib import Path

PAGES = [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md")), PROJECT_DIR / "bench" / "README.md"]
COMMAND = re.compile(r"(?:python -m )?(?<![\w/.-])(bridgectl|localworld)(?= )((?: [^`#|\n]*)?)")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _name(page: Path) -> str:
    return str(page.relative_to(PROJECT_DIR))


def shown_commands() -> list[tuple[str, str, list[str]]]:
    """(where, program, words) for every command line a page shows."""
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for match in COMMAND.finditer(line):
                program, rest = match.groups()
                if program == "localworld" and not match.group(0).startswith("python -m "):
                    continue
                words = [w.strip("[]") for w in rest.split()]
                if words:
                    found.append((f"{_name(page)}:{number}", program, words))
    return found


def _options(command: click.Command) -> dict[str, bool]:
    """Each option of ``command`` and whether a value follows it."""
    return {o: not getattr(p, "is_flag", False) for p in command.params if isinstance(p, click.Option) for o in p.opts}


def _click_problems(words: list[str]) -> list[str]:
    command: click.Command = bridgectl
    options = _options(command)
    value_next = False
    for word in words:
        if value_next:
            value_next = False
        elif word.startswith("--"):
            name = word.split("=")[0]
            if name not in options and name != "--help":
                return [f"no option {word} on {command.name}"]
            value_next = options.get(name, False) and "=" not in word
        elif isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            options |= _options(command)
        elif isinstance(command, click.Group) and "--help" not in words:
            return [f"no command {word!r} under {command.name}"]
    return []


def _argparse_problems(words: list[str]) -> list[str]:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if words[0].startswith("-"):
        return []
    if words[0] not in commands.choices:
        return [f"no command {words[0]!r}"]
    options = set(commands.choices[words[0]]._option_string_actions)
    return [f"no option {w} on {words[0]}" for w in words[1:] if w.startswith("--") and w.split("=")[0] not in options]


def test_every_command_and_option_the_docs_show_exists():
    shown = shown_commands()
    problems = [
        f"{where}: {' '.join(words)}: {problem}"
        for where, program, words in shown
        for problem in (_click_problems(words) if program == "bridgectl" else _argparse_problems(words))
    ]

    assert len(shown) > 20  # the pages do show commands; the pattern still finds them
    assert problems == []


def test_a_removed_command_is_caught():
    assert _click_problems(["--stage", "prod", "replay-dlq", "--dry-run"]) == [
        "no command 'replay-dlq' under bridgectl"
    ]
    assert _click_problems(["--stage", "prod", "dlq", "replay", "--since", "2h"]) == ["no option --since on replay"]
    assert _argparse_problems(["braze-send", "--no-such-flag"]) == ["no option --no-such-flag on braze-send"]


def test_no_page_names_the_old_devtools_commands():
    stale = [
        f"{_name(page)}:{n}"
        for page in PAGES
        for n, line in enumerate(page.read_text().splitlines(), 1)
        if "devtools" in line
    ]

    assert stale == []


def test_the_bench_figures_shown_are_the_measured_ones():
    page = figures.PAGE.read_text()

    assert figures.render_page(page, json.loads(figures.RESULTS.read_text())) == page


def test_the_readme_is_short():
    assert len((PROJECT_DIR / "README.md").read_text().splitlines()) <= 200


def _anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_link_lands(page: Path):
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        landing = (page.parent / path).resolve() if path else page
        if not landing.exists() or (anchor and landing.suffix == ".md" and anchor not in _anchors(landing)):
            broken.append(target)

    assert broken == []
