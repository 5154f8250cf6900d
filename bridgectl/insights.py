"""A local evaluator for the CloudWatch Logs Insights queries the bridge's tools and docs use, so the
same query text runs against CloudWatch and against a file of the bridge's JSON log lines.

Covers exactly that subset — ``fields``; ``filter`` with ``=``/``!=``/``ispresent()`` joined by ``and``
or ``or``; ``parse <field> /regex/`` with named groups; ``stats`` with ``count(*)``, ``pct(f, N)``,
``earliest(f)``, ``latest(f)``, ``sortsFirst(f)``, ``sortsLast(f)`` (each ``as`` a name) ``by`` fields;
``sort``; ``limit`` — and refuses anything else, so a query edited into an unsupported shape fails
loudly instead of giving a different answer locally than in CloudWatch.
"""

from __future__ import annotations

import math
import re
from typing import Any

_CLAUSE = re.compile(
    r'^(?:ispresent\((?P<present>[\w@]+)\)|(?P<field>[\w@.]+)\s*(?P<op>!=|=)\s*(?P<value>"[^"]*"|-?\d+))$'
)
_PARSE = re.compile(r"^(?P<field>[\w@]+)\s+/(?P<pattern>.*)/$")
_AGGREGATE = re.compile(r"^(?P<fn>\w+)\((?P<args>[^)]*)\)(?:\s+as\s+(?P<name>\w+))?$")


def _get(record: dict[str, Any], name: str) -> Any:
    return record.get("timestamp") if name == "@timestamp" else record.get(name)


def _clause(record: dict[str, Any], clause: str) -> bool:
    found = _CLAUSE.match(clause.strip())
    if found is None:
        raise ValueError(f"unsupported filter clause: {clause!r}")
    if found["present"]:
        return _get(record, found["present"]) is not None
    raw = found["value"]
    expected: Any = raw[1:-1] if raw.startswith('"') else int(raw)
    equal: bool = _get(record, found["field"]) == expected
    return equal == (found["op"] == "=")


def _matches(record: dict[str, Any], condition: str) -> bool:
    if " and " in condition and " or " in condition:
        raise ValueError(f"unsupported filter (mixes and/or): {condition!r}")
    if " or " in condition:
        return any(_clause(record, c) for c in condition.split(" or "))
    return all(_clause(record, c) for c in condition.split(" and "))


def _parse(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """Insights' ``parse``: named groups become fields; a row that does not match gets none of them."""
    found = _PARSE.match(spec)
    if found is None:
        raise ValueError(f"unsupported parse: {spec!r}")
    pattern = re.compile(found["pattern"].replace("(?<", "(?P<"))
    parsed = []
    for row in rows:
        value = _get(row, found["field"])
        match = pattern.search(value) if isinstance(value, str) else None
        parsed.append({**row, **match.groupdict()} if match else row)
    return parsed


def _percentile(values: list[float], percent: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(percent / 100 * len(ordered)) - 1, 0)]


def _aggregate(fn: str, args: str, rows: list[dict[str, Any]]) -> Any:
    if fn == "count" and args == "*":
        return len(rows)
    field, _, extra = (a.strip() for a in args.partition(","))
    values = [_get(r, field) for r in rows if _get(r, field) is not None]
    if fn == "pct":
        return _percentile([float(v) for v in values], float(extra))
    if fn in ("earliest", "latest"):
        return (values[0] if fn == "earliest" else values[-1]) if values else None
    if fn in ("sortsFirst", "sortsLast"):
        return (min(values) if fn == "sortsFirst" else max(values)) if values else None
    raise ValueError(f"unsupported aggregate: {fn}({args})")


def _stats(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    aggregates, _, by = spec.partition(" by ")
    keys = [k.strip() for k in by.split(",")] if by else []
    parts = []
    for part in re.split(r",\s*(?![^()]*\))", aggregates):
        found = _AGGREGATE.match(part.strip())
        if found is None:
            raise ValueError(f"unsupported stats: {part!r}")
        parts.append((found["fn"], found["args"].strip(), found["name"] or part.strip()))
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(_get(row, k) for k in keys), []).append(row)
    return [
        {**dict(zip(keys, group, strict=True)), **{name: _aggregate(fn, args, members) for fn, args, name in parts}}
        for group, members in groups.items()
    ]


def run(query: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``query`` over ``records`` (in time order), as Logs Insights would answer it."""
    rows = list(records)
    projection: list[str] | None = None
    for command in (part.strip() for part in query.split("\n|")):
        verb, _, rest = command.partition(" ")
        rest = rest.strip()
        if verb == "fields":
            projection = [f.strip() for f in rest.split(",")]
        elif verb == "filter":
            rows = [r for r in rows if _matches(r, rest)]
        elif verb == "parse":
            rows = _parse(rows, rest)
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
