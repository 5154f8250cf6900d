"""Regenerate chalicelib/delivery/data/windows_zones.json from the CLDR windowsZones table tzlocal carries.

The bridge ships the data as JSON so Lambda needs no extra package; run this after bumping tzlocal:
``python -m scripts.windows_zones``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tzlocal import windows_tz

DATA_FILE = Path(__file__).resolve().parent.parent / "chalicelib" / "delivery" / "data" / "windows_zones.json"


def cldr_table() -> dict[str, Any]:
    """The Windows ids (with their primary IANA zone) and the IANA → Windows map, from tzlocal."""
    return {
        "source": "CLDR windowsZones via tzlocal.windows_tz",
        "windows_to_iana": dict(sorted(windows_tz.win_tz.items())),
        "iana_to_windows": dict(sorted(windows_tz.tz_win.items())),
    }


def main() -> None:
    DATA_FILE.write_text(json.dumps(cldr_table(), indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {DATA_FILE}")


if __name__ == "__main__":
    main()
