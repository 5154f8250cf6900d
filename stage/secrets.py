"""Writing a stage's SecureStrings (the runtime reads them through ``chalicelib.secrets``): the Rokt
credentials, the Braze key, and the lists of accepted webhook secrets and Rokt webhook tokens, rotated
by adding before removing. Used by the operator CLI and by the local stack, so both write the same way."""

from __future__ import annotations

import re
import secrets as random_secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.secrets import BRAZE_API_KEY, ROKT_WEBHOOK_TOKENS, WEBHOOK_SECRETS, split_list
from stage.bootstrap import put_secure
from stage.names import OpsError

if TYPE_CHECKING:
    from mypy_boto3_ssm.client import SSMClient

    from stage.bootstrap import Progress
    from stage.names import StageNames


URL_SAFE = re.compile(r"[A-Za-z0-9_-]{16,256}")


def set_rokt_credentials(
    names: StageNames, ssm: SSMClient, client_id: str, client_secret: str, progress: Progress = print
) -> None:
    if not client_id.strip() or not client_secret.strip():
        raise OpsError("the Rokt client id and secret must not be empty")
    put_secure(ssm, f"{names.prefix}/rokt/client-id", client_id.strip(), progress)
    put_secure(ssm, f"{names.prefix}/rokt/client-secret", client_secret.strip(), progress)


def secret_list(ssm: SSMClient, name: str) -> list[str]:
    """The values a comma-separated SecureString accepts (none when it is missing)."""
    try:
        raw = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"].get("Value", "")
    except ssm.exceptions.ParameterNotFound:
        return []
    return split_list(raw)


@dataclass(frozen=True)
class SecretList:
    """A comma-separated SecureString of accepted secrets, rotated by adding before removing."""

    relative: str
    what: str
    refused_without: str
    url_safe: bool = False  # it travels as a URL path segment

    def add(self, names: StageNames, ssm: SSMClient, secret: str | None, progress: Progress = print) -> str:
        """Add ``secret`` (or a generated one) to the accepted list and return it."""
        value = (secret or random_secrets.token_urlsafe(32)).strip()
        if self.url_safe and not URL_SAFE.fullmatch(value):
            raise OpsError(f"a {self.what} needs at least 16 characters, only letters, digits, '-' and '_'")
        if len(value) < 16 or "," in value:
            raise OpsError(f"a {self.what} needs at least 16 characters and no comma")
        name = f"{names.prefix}/{self.relative}"
        current = secret_list(ssm, name)
        if value in current:
            progress(f"that {self.what} is already accepted")
            return value
        put_secure(ssm, name, ",".join([*current, value]), progress)
        progress(f"{len(current) + 1} {self.what}(s) now accepted")
        return value

    def remove(
        self, names: StageNames, ssm: SSMClient, secret: str, allow_none_left: bool = False, progress: Progress = print
    ) -> None:
        name = f"{names.prefix}/{self.relative}"
        current = secret_list(ssm, name)
        if secret.strip() not in current:
            raise OpsError(f"that {self.what} is not in the accepted list; nothing changed")
        remaining = [s for s in current if s != secret.strip()]
        if not remaining and not allow_none_left:
            raise OpsError(
                f"that is the last accepted secret ({self.what}): every {self.refused_without} would be refused "
                "(pass --allow-none-left)"
            )
        if remaining:
            put_secure(ssm, name, ",".join(remaining), progress)
        else:
            ssm.delete_parameter(Name=name)
            progress(f"parameter {name}: deleted")
        progress(f"{len(remaining)} {self.what}(s) still accepted; calls with the removed one now get 401")


WEBHOOK_SECRET_LIST = SecretList(WEBHOOK_SECRETS, "webhook secret", "Braze webhook")
ROKT_TOKEN_LIST = SecretList(ROKT_WEBHOOK_TOKENS, "Rokt webhook token", "Rokt webhook", url_safe=True)


def add_webhook_secret(names: StageNames, ssm: SSMClient, secret: str | None, progress: Progress = print) -> str:
    """Add ``secret`` (or a generated one) to the accepted list; return it so Braze can be configured."""
    return WEBHOOK_SECRET_LIST.add(names, ssm, secret, progress)


def remove_webhook_secret(
    names: StageNames, ssm: SSMClient, secret: str, allow_none_left: bool = False, progress: Progress = print
) -> None:
    WEBHOOK_SECRET_LIST.remove(names, ssm, secret, allow_none_left, progress)


def set_braze_key(names: StageNames, ssm: SSMClient, key: str, progress: Progress = print) -> None:
    """The Braze REST key (``users.track`` permission) the sync flow writes with."""
    if len(key.strip()) < 8 or not key.strip().isascii():
        raise OpsError("that does not look like a Braze REST API key")
    put_secure(ssm, f"{names.prefix}/{BRAZE_API_KEY}", key.strip(), progress)


def rokt_webhook_url(api_url: str, token: str) -> str:
    """What to paste in Rokt's dashboard (Webhooks → Add Webhook, v2)."""
    return f"{api_url.rstrip('/')}/rokt/webhooks/{token}"
