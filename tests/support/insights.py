"""The CloudWatch Logs Insights queries from docs/operations.md, for tests that run them (with
``bridgectl.insights.run``) against captured log records."""

from __future__ import annotations

import re
from pathlib import Path

from bridgectl.insights import run

__all__ = ["documented_queries", "run"]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented_queries() -> dict[str, str]:
    """``### name`` headings followed by a fenced block → {name: query}."""
    text = DOCS.read_text()
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^### ([\w-]+)\n.*?```\n(.*?)```", text, re.M | re.S)}
