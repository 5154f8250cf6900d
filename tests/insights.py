"""Run the CloudWatch Logs Insights queries from docs/operations.md against captured log records.

Covers exactly the subset the docs use (fields, filter with =, !=, and, ispresent(), stats count(*)
by, sort, limit) and refuses anything else, so a query edited into an unsupported shape fails the test
instead of passing untested.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
_CLAUSE = re.compile(
    r'^(?:ispresent\((?P<present>[\w@]+)\)|(?P<field>[\w@.]+)\s*(?P<op>!=|=)\s*(?P<value>"[^"]*"|-?\d+))$'
)


def documented_queries() -> dict[str, str]:
    """``### name`` headings followed by a fenced block → {name: query}."""
    text = DOCS.read_text()
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^### ([\w-]+)\n.*?```\n(.*?)```", text, re.M | re.S)}


def _get(record: dict[str, Any], name: str) -> Any:
    return record.get("timestamp") if name == "@timestamp" else record.get(name)


def _matches(record: dict[str, Any], condition: str) -> bool:
    for clause in condition.split(" and "):
        found = _CLAUSE.match(clause.strip())
        if found is None:
            raise ValueError(f"unsupported filter clause: {clause!r}")
        if found["present"]:
            if _get(record, found["present"]) is None:
                return False
            continue
        raw = found["value"]
        expected: Any = raw[1:-1] if raw.startswith('"') else int(raw)
        equal = _get(record, found["field"]) == expected
        if equal != (found["op"] == "="):
            return False
    return True


def _stats(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    found = re.fullmatch(r"count\(\*\)(?: as (\w+))? by (.+)", spec)
    if found is None:
        raise ValueError(f"unsupported stats: {spec!r}")
    name = found.group(1) or "count(*)"
    keys = [k.strip() for k in found.group(2).split(",")]
    groups: dict[tuple[Any, ...], int] = {}
    for row in rows:
        group = tuple(_get(row, k) for k in keys)
        groups[group] = groups.get(group, 0) + 1
    return [{**dict(zip(keys, group, strict=True)), name: count} for group, count in groups.items()]


def run(query: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = list(records)
    projection: list[str] | None = None
    for command in (part.strip() for part in query.split("\n|")):
        verb, _, rest = command.partition(" ")
        if verb == "fields":
            projection = [f.strip() for f in rest.split(",")]
        elif verb == "filter":
            rows = [r for r in rows if _matches(r, rest)]
        elif verb == "stats":
            rows, projection = _stats(rows, rest), None
        elif verb == "sort":
            field, _, direction = rest.partition(" ")
            rows.sort(key=lambda r: (_get(r, field) is None, _get(r, field)), reverse=direction == "desc")
        elif verb == "limit":
            rows = rows[: int(rest)]
        else:
            raise ValueError(f"unsupported command: {verb!r}")
    if projection is not None:
        rows = [{f: _get(r, f) for f in projection} for r in rows]
    return rows
