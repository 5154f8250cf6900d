"""Rokt wants Windows time-zone ids; Braze's ``${time_zone}`` renders IANA names. Translate here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

_DATA = Path(__file__).resolve().parent / "data" / "windows_zones.json"


@dataclass(frozen=True)
class ZoneChoice:
    """A resolved time zone: the Windows id Rokt needs and the IANA name when one was given."""

    windows_id: str
    iana_name: str | None = None


class UnknownTimeZone(ValueError):
    """Neither a Windows id from CLDR windowsZones nor an IANA name that maps to one."""


@cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_DATA.read_text(encoding="utf-8"))
    return data


def windows_ids() -> frozenset[str]:
    return frozenset(_table()["windows_to_iana"])


def iana_for_windows(windows_id: str) -> str | None:
    iana: str | None = _table()["windows_to_iana"].get(windows_id)
    return iana


def resolve(name: str) -> ZoneChoice:
    """Resolve a Windows id or an IANA name into the Windows id Rokt expects."""
    table = _table()
    if name in table["windows_to_iana"]:
        return ZoneChoice(windows_id=name)
    windows_id = table["iana_to_windows"].get(name)
    if windows_id is not None:
        return ZoneChoice(windows_id=windows_id, iana_name=name)
    raise UnknownTimeZone(name)


def is_iana_name(name: str) -> bool:
    return name in _table()["iana_to_windows"]
