"""The Braze webhook templates a marketer pastes, one per route: Braze's Liquid in ``stage/braze/*.liquid``
(the request bodies and the account-code assignment, exactly as pasted) laid out on the printed sheet by
``webhook.liquid``, which python-liquid renders. Liquid is imported only when templates are printed."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "braze"
ROUTES = {"create": "", "update": "/update", "delete": "/delete"}


def body(route: str) -> str:
    """The request body's Braze Liquid for ``route`` (create, update or delete)."""
    return (TEMPLATES / f"{route}.liquid").read_text().strip()


def _one_line(text: str) -> str:
    return "".join(line.strip() for line in text.splitlines())


def braze_templates(api_url: str, signature_required: bool = False) -> dict[str, str]:
    """Ready-to-paste Braze webhook templates (create, update, delete) for the bridge at ``api_url``."""
    from liquid import Environment  # noqa: PLC0415 - only the braze-template command needs Liquid

    sheet = Environment().from_string((TEMPLATES / "webhook.liquid").read_text())
    account_code = (TEMPLATES / "account_code.liquid").read_text().strip()
    templates = {}
    for route, suffix in ROUTES.items():
        text = body(route)
        templates[route] = sheet.render(
            name=route,
            api_url=api_url,
            suffix=suffix,
            account_code=account_code,
            body=_one_line(text) if signature_required else text,
            signed=signature_required,
        )
    return templates
