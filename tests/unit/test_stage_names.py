"""A stage's names are written once: the app's name and the metrics namespace in the runtime's settings,
everything else derived from them and from what ``Settings`` parses; `.chalice/config.json` (which Chalice
reads, so it must spell them too) is held to the same names."""

from __future__ import annotations

import ast
import json
import shutil
from typing import TYPE_CHECKING

import pytest

from chalicelib.settings import APP_NAME, METRICS_NAMESPACE, Settings, default_ssm_prefix
from stage.names import StageError, StageNames, function_names
from stage.project import PROJECT_DIR, stage_environment

if TYPE_CHECKING:
    from pathlib import Path

CODE = ["app.py", "chalicelib", "stage", "bridgectl"]


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("name", [APP_NAME, METRICS_NAMESPACE])
def test_the_name_is_written_in_one_place_of_the_code(name: str):
    files = [p for entry in CODE for p in ([PROJECT_DIR / entry] if entry.endswith(".py") else
             sorted((PROJECT_DIR / entry).rglob("*.py")))]  # fmt: skip
    found = [
        f"{path.relative_to(PROJECT_DIR)}:{line}"
        for path in files
        for line, text in _string_literals(path)
        if name in text
    ]

    assert found == [next(f for f in found if f.startswith("chalicelib/settings.py"))]


def test_chalice_config_spells_the_same_names():
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())

    assert config["app_name"] == APP_NAME
    for stage in config["stages"]:
        env = stage_environment(stage)
        assert env["POWERTOOLS_SERVICE_NAME"] == APP_NAME, stage
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE, stage
        assert env["BRIDGE_SSM_PREFIX"] == default_ssm_prefix(env["BRIDGE_STAGE"]), stage
        assert env["IDEMPOTENCY_TABLE"] == f"{APP_NAME}-{env['BRIDGE_STAGE']}-idempotency", stage


@pytest.mark.parametrize("stage", ["local", "dev", "prod"])
def test_stage_names_are_what_the_runtime_parses(stage: str):
    settings = Settings.from_env(stage_environment(stage))

    names = StageNames.of(stage)

    assert (names.prefix, names.table, names.rokt_api_url) == (
        settings.ssm_prefix,
        settings.idempotency_table,
        settings.rokt_api_url,
    )
    assert names.queues("sync")[0] == f"{APP_NAME}-{settings.stage}-sync"
    assert function_names(stage) == {
        "api": f"{APP_NAME}-{stage}",
        "delivery": f"{APP_NAME}-{stage}-deliver_queued",
        "sync": f"{APP_NAME}-{stage}-sync_subscribers",
        "reconcile": f"{APP_NAME}-{stage}-reconcile_subscriptions",
    }


def test_a_stage_the_runtime_would_refuse_is_refused_here_too(tmp_path: Path):
    shutil.copytree(PROJECT_DIR / ".chalice", tmp_path / ".chalice", ignore=shutil.ignore_patterns("deployed"))
    config_file = tmp_path / ".chalice" / "config.json"
    config = json.loads(config_file.read_text())
    config["stages"]["prod"]["environment_variables"]["ROKT_API_URL"] = "http://rokt.example.com"
    config_file.write_text(json.dumps(config))

    with pytest.raises(StageError, match="ROKT_API_URL must be an https:// URL"):
        StageNames.of("prod", tmp_path)
