"""What import-linter cannot hold: it roots packages only, so `app.py` (a module) is checked here — the
route table imports the runtime (chalicelib), Chalice and Powertools, never the tooling."""

from __future__ import annotations

import ast

from stage.project import PROJECT_DIR

TOOLING = {"stage", "bridgectl", "localworld", "scripts", "bench", "tests"}


def test_app_imports_none_of_the_tooling():
    tree = ast.parse((PROJECT_DIR / "app.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}

    assert {name.split(".")[0] for name in imported} & TOOLING == set()
    assert any(name.startswith("chalicelib") for name in imported)
