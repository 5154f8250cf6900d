"""The operator CLI's shape: grouped commands, ``--stage`` declared once, a console script, and only the
packages ``pyproject.toml`` declares (no dev requirements, no local world) imported to run it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata

import click

from bridgectl import cli
from stage.project import PROJECT_DIR


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += walk(sub, (*path, name))
    return found


def test_commands_are_grouped_by_what_an_operator_does():
    paths = {" ".join(path) for path, _ in walk(cli.bridgectl)}

    assert {"stage bootstrap", "stage doctor", "stage enable-partial-batch", "stage put-dashboard"} <= paths
    assert {"secrets set rokt-credentials", "secrets set braze-key", "secrets add", "secrets remove"} <= paths
    assert {"secrets rotate", "dlq show", "dlq replay", "report", "backfill", "capacity", "braze-template"} <= paths


def test_stage_is_declared_once_on_the_root():
    declared = [path for path, command in walk(cli.bridgectl) for p in command.params if p.name == "stage"]

    assert declared == [()]


def test_a_command_that_needs_a_stage_says_where_to_put_it(capsys):
    assert cli.main(["stage", "doctor"]) == 2
    assert "--stage" in capsys.readouterr().err


def test_the_console_script_is_the_cli():
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]

    assert project["scripts"] == {"bridgectl": "bridgectl.cli:main"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution(requirement: str) -> str:
    return _normal(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


def _closure(names: list[str]) -> set[str]:
    """The declared distributions and everything they require (extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # only required under another Python (a marker)
            continue
        for requirement in requirements:
            if "extra ==" not in requirement:
                todo.append(_distribution(requirement))
    return seen


def test_running_it_imports_only_what_pyproject_declares():
    declared = [_distribution(r) for r in tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
                ["dependencies"]]  # fmt: skip
    probe = (
        "import json, sys\n"
        "from bridgectl.cli import main\n"
        "main(['--help'])\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True
    )
    imported = set(json.loads(answer.stdout.splitlines()[-1]))

    ours = {"bridgectl", "stage", "chalicelib"}
    assert not imported & {"localworld", "tests", "bench", "scripts"}
    owners = metadata.packages_distributions()
    # _distutils_hack: setuptools' start-up hook, in every process of this venv
    third_party = {m for m in imported - ours - set(sys.stdlib_module_names) if m in owners and m != "_distutils_hack"}
    allowed = _closure(declared)
    undeclared = {m: owners[m] for m in third_party if not {_normal(d) for d in owners[m]} & allowed}
    assert undeclared == {}
