"""The campaign simulator behind ``python -m localworld braze-send``: render a Braze webhook template
for every profile in the Braze sandbox with a real Liquid engine, send the webhooks to the bridge
as Braze does, and tell what each user got back.

Braze-specific syntax is translated to standard Liquid before parsing: ``${user_id}`` (and the other
``${...}`` standard attributes), ``custom_attribute.${name}`` (names with ``:`` become
``custom_attribute["name"]``), ``{{ ... }}`` nested inside a ``{% ... %}`` tag, and Braze's
``json_escape`` and ``hmac_sha256_hex`` filters. ``connected_content`` is refused: the bridge is
what replaces it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from liquid import Environment
from liquid.exceptions import LiquidError

from localworld.braze_sandbox import STANDARD_ATTRIBUTES
from localworld.braze_sender import Webhook

if TYPE_CHECKING:
    from collections.abc import Mapping

# The partner page's own template (seed/rokt_calendar.pt.md, "Enviar um novo evento"), host and
# Authorization left for the caller: values are not escaped, exactly as Braze's page ships it.
SEED_BODY = """{% capture eventId %}Event_0001{% endcapture %}
{% capture eventTitle %}Event Title{% endcapture %}
{% capture eventDescr %}Event Description{% endcapture %}
{% capture eventLocation %}Event Location{% endcapture %}
{% capture eventStart %}2019-02-21T15:00:00{% endcapture %}
{% capture eventEnd %}2019-02-21T15:00:00{% endcapture %}
{% capture notifyBefore %}15{% endcapture %}
{% capture eventTZ %}Eastern Standard Time{% endcapture %}

{
  "event": {
    "eventId": "{{eventId}}_{{${user_id}}}",
    "title": "{{eventTitle}}",
    "description": "{{eventDescr}}",
    "location": "{{eventLocation}}",
    "start": "{{eventStart}}",
    "end": "{{eventEnd}}",
    "timezone": "{{eventTZ}}",
    "notifyBefore": "{{notifyBefore}}"
  },
  "subscriptionIds": ["{{custom_attribute.${rokt:subscription_id}| join: '","'  }}"]
}"""
SEED_URL = (
    "{% assign accountCode = {{custom_attribute.${rokt:account_code}}}[0] | split: '/' | first %}"
    "{{bridge}}/v1/subscriptionevent/{{accountCode}}"
)
# Braze's Liquid names for standard profile fields that differ from the profile's own keys.
_STANDARD_NAMES = {"user_id": "external_id", "email_address": "email", "date_of_birth": "dob"}
_TAG = re.compile(r"\{%.*?%\}", re.S)
_NESTED_OUTPUT = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)
_CUSTOM = re.compile(r"custom_attribute\.\$\{([^}]+)\}")
_STANDARD = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ValueError):
    """The template cannot be rendered as Braze would render it."""


def braze_to_liquid(text: str) -> str:
    """Braze's dialect → standard Liquid."""
    if "connected_content" in text:
        raise TemplateError("connected_content is not simulated: the bridge holds the Rokt token, remove it")
    text = _CUSTOM.sub(lambda m: f'custom_attribute["{m.group(1)}"]', text)
    text = _STANDARD.sub(lambda m: m.group(1), text)
    return _TAG.sub(lambda m: _NESTED_OUTPUT.sub(r"\1", m.group(0)), text)


def _json_escape(value: object) -> str:
    return json.dumps("" if value is None else str(value))[1:-1]


def _sha2(value: object) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def _hmac_sha256_hex(value: object, key: object) -> str:
    return hmac.new(str(key).encode(), str(value).encode(), hashlib.sha256).hexdigest()


def liquid_environment() -> Environment:
    env = Environment()
    env.filters["json_escape"] = _json_escape
    env.filters["hmac_sha256_hex"] = _hmac_sha256_hex
    env.filters["sha2"] = _sha2
    return env


@dataclass(frozen=True)
class WebhookTemplate:
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @classmethod
    def parse(cls, text: str) -> WebhookTemplate:
        """The format ``braze-template`` prints: ``Webhook URL:``, ``Request headers:``, ``Request body ...:``."""
        sections: dict[str, list[str]] = {}
        current = ""
        for line in text.splitlines():
            header = line.strip().lower()
            if header.startswith(("webhook url:", "http method:", "request headers:", "request body")):
                current = header.split(":")[0].split(" (")[0]
                continue
            if line.startswith("## "):
                continue
            sections.setdefault(current, []).append(line)
        url = "\n".join(sections.get("webhook url", [])).strip()
        body = "\n".join(sections.get("request body", [])).strip()
        if not url or not body:
            raise TemplateError("a template needs a 'Webhook URL:' and a 'Request body (Raw text):' section")
        headers = tuple(
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in sections.get("request headers", []) if line.strip())
        )
        return cls(url, headers, body)

    @classmethod
    def seed(cls) -> WebhookTemplate:
        return cls(SEED_URL, (("Content-Type", "application/json"),), SEED_BODY)


def _with_key(header: str, event_prefix: str | None, signing_key: str | None) -> str:
    """A header as the marketer would paste it: the signing key filled in, the same event prefix as the body."""
    if event_prefix:
        header = header.replace("Event_0001", event_prefix)
    return header.replace("<signing key>", signing_key) if signing_key else header


def profile_context(profile: Mapping[str, Any]) -> dict[str, Any]:
    """What Liquid sees for one Braze sandbox profile: standard fields by name, the rest as custom."""
    attributes = dict(profile.get("attributes") or {})
    context: dict[str, Any] = {name: attributes.get(name) for name in STANDARD_ATTRIBUTES}
    context.update({liquid: attributes.get(field) for liquid, field in _STANDARD_NAMES.items()})
    context["user_id"] = profile.get("external_id")
    context["custom_attribute"] = {k: v for k, v in attributes.items() if k not in STANDARD_ATTRIBUTES}
    return context


class Renderer:
    def __init__(
        self,
        template: WebhookTemplate,
        *,
        bridge_url: str,
        secret: str,
        event_prefix: str | None = None,
        signing_key: str | None = None,
    ) -> None:
        env = liquid_environment()
        body = template.body.replace("Event_0001", event_prefix) if event_prefix else template.body
        try:
            self._url = env.from_string(braze_to_liquid(template.url))
            self._body = env.from_string(braze_to_liquid(body))
            self._headers = [
                (n, env.from_string(braze_to_liquid(_with_key(v, event_prefix, signing_key))))
                for n, v in template.headers
            ]
        except LiquidError as exc:
            raise TemplateError(f"the template is not valid Liquid: {exc}") from exc
        self._globals = {"bridge": bridge_url.rstrip("/"), "webhook_secret": secret}
        self._secret = secret
        self._bridge = bridge_url.rstrip("/")

    def render(self, profile: Mapping[str, Any], dry_run: bool = False) -> Webhook:
        context = {**profile_context(profile), **self._globals}
        url = "".join(self._url.render(**context).split())
        url = url.replace("https://<api-id>.execute-api.<region>.amazonaws.com/api", self._bridge)
        headers = {n: h.render(**context).replace("<webhook secret>", self._secret) for n, h in self._headers}
        headers.setdefault("Authorization", f"Bearer {self._secret}")
        if dry_run:
            url += "&dryRun=true" if "?" in url else "?dryRun=true"
        return Webhook(url, self._body.render(**context), headers, user=str(profile.get("external_id") or ""))


def outcome(webhook: Webhook) -> str:
    """What a marketer reads: delivered, duplicate, queued, dry_run, or the status and error code."""
    if not webhook.attempts:
        return "not sent"
    last = webhook.attempts[-1]
    answer = last.answer if isinstance(last.answer, dict) else {}
    if last.status == 0:
        return f"no answer ({last.error})"
    if last.status < 300:
        status = str(answer.get("status") or last.status)
        return "duplicate" if answer.get("duplicate") else status
    return f"{last.status} {answer.get('error', '')}".strip()


def summary(webhooks: list[Webhook]) -> list[tuple[str, int, list[str]]]:
    """(outcome, count, two example users), most frequent first."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for webhook in webhooks:
        key = outcome(webhook)
        counts[key] += 1
        if len(examples.setdefault(key, [])) < 2:
            examples[key].append(webhook.user or "(no user id)")
    return [(key, count, examples[key]) for key, count in counts.most_common()]


def render_table(rows: list[tuple[str, int, list[str]]]) -> str:
    width = max([len("answer"), *(len(r[0]) for r in rows)])
    lines = [f"{'answer':<{width}}  {'users':>6}  examples", f"{'-' * width}  {'-' * 6}  {'-' * 8}"]
    lines += [f"{key:<{width}}  {count:>6}  {', '.join(users)}" for key, count, users in rows]
    return "\n".join(lines)
