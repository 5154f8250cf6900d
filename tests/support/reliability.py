"""The reliability rig shared by the fault matrix (tests) and the soak (`make soak`): the local stack
with a fault-injecting AWS proxy, the Rokt sandbox's fault knobs, and webhooks to send."""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

from localworld.aws_proxy import AwsFault, AwsProxy
from localworld.localstack import LocalStack, Ports, free_port
from stage.project import SAMPLE_BODY
from tests.conftest import Sandbox
from tests.support.braze_simulator import Webhook

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class Rig:
    def __init__(self, stack: LocalStack, proxy: AwsProxy) -> None:
        self.stack = stack
        self.proxy = proxy
        self.sandbox = Sandbox(stack.sandbox_url)


@contextlib.contextmanager
def running_rig(
    rokt_timeout: str = "1", *, spill: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[Rig]:
    """The local stack with the bridge's AWS traffic going through a fault-injecting proxy (and, with
    ``spill``, the delivery queue behind direct mode, fed to the consumer by the queue worker)."""
    ports = Ports(moto=free_port(), sandbox=free_port(), bridge=free_port())
    with AwsProxy(f"http://127.0.0.1:{ports.moto}") as proxy:
        stack = LocalStack.isolated(
            "fm",
            ports,
            # the bridge talks to AWS through the fault proxy; bootstrap goes straight to moto
            extra_env={"AWS_ENDPOINT_URL": proxy.url, "ROKT_TIMEOUT_SECONDS": rokt_timeout, **(extra_env or {})},
            spill=spill,
        )
        with stack:
            yield Rig(stack, proxy)


def webhooks(count: int = 12, duplicates: int = 2) -> list[Webhook]:
    run = uuid.uuid4().hex[:8]
    event = SAMPLE_BODY["event"]
    unique = [
        Webhook("/v1/subscriptionevent/brazetest", {**SAMPLE_BODY, "event": {**event, "eventId": f"E{run}_{i}_user"}})
        for i in range(count)
    ]
    return unique + [Webhook(w.path, w.body) for w in unique[:duplicates]]


def tokens_revoked_mid_run(rig: Rig) -> None:
    rig.sandbox.fault(revoke=True, after=3)  # Rokt revokes every token at the 4th event call


def token_endpoint_down(rig: Rig) -> None:
    rig.sandbox.revoke_tokens()
    rig.sandbox.fault(target="token", status=503, count=6)


def ssm_throttled(rig: Rig) -> None:
    rig.sandbox.revoke_tokens()  # so the bridge must go to SSM for a token
    rig.proxy.fail(AwsFault("ssm", count=6))  # every attempt of the token read and write-back


def ssm_unreachable(rig: Rig) -> None:
    rig.sandbox.revoke_tokens()
    rig.proxy.fail(AwsFault("ssm", count=6, drop=True))


def dynamodb_outage(rig: Rig) -> None:
    rig.proxy.fail(AwsFault("dynamodb", "UpdateItem", count=12, status=500, code="InternalServerError"))


def dynamodb_drops_connections(rig: Rig) -> None:
    rig.proxy.fail(AwsFault("dynamodb", "UpdateItem", count=9, drop=True))


def ssm_hangs(rig: Rig) -> None:
    rig.sandbox.revoke_tokens()  # so the bridge must go to SSM for a token
    rig.proxy.fail(AwsFault("ssm", count=4, hang=60))


def token_endpoint_hangs(rig: Rig) -> None:
    rig.sandbox.revoke_tokens()
    rig.sandbox.fault(target="token", delay=60, count=2)


FAULTS: dict[str, Callable[[Rig], None]] = {
    "rokt-500": lambda r: r.sandbox.fault(status=500, count=8),
    "rokt-502": lambda r: r.sandbox.fault(status=502, count=8),
    "rokt-503-retry-after": lambda r: r.sandbox.fault(status=503, retryAfter="1", count=8),
    "rokt-429-retry-after": lambda r: r.sandbox.fault(status=429, retryAfter="30", count=6),
    "rokt-429-no-retry-after": lambda r: r.sandbox.fault(status=429, count=6),
    "rokt-too-slow": lambda r: r.sandbox.fault(delay=1.5, drop=True, count=3),
    "rokt-drops-connections": lambda r: r.sandbox.fault(drop=True, count=5),
    "tokens-revoked-mid-run": tokens_revoked_mid_run,
    "token-endpoint-down": token_endpoint_down,
    "ssm-throttled": ssm_throttled,
    "ssm-unreachable": ssm_unreachable,
    "dynamodb-outage": dynamodb_outage,
    "dynamodb-drops-connections": dynamodb_drops_connections,
    # hangs: the dependency holds the call open far longer than any budget
    "rokt-hangs": lambda r: r.sandbox.fault(delay=60, count=3),
    "token-endpoint-hangs": token_endpoint_hangs,
    "ssm-hangs": ssm_hangs,
    "dynamodb-hangs": lambda r: r.proxy.fail(AwsFault("dynamodb", "UpdateItem", count=3, hang=60)),
}

# Slow peers: alive, one byte every 0.6 s, so every socket read succeeds and only the
# request deadline ends the wait. Kept out of FAULTS so the soak's seeded fault draw is unchanged.
DRIP_SECONDS = 0.6


def token_endpoint_drips(rig: Rig) -> None:
    rig.sandbox.revoke_tokens()
    rig.sandbox.fault(target="token", drip=DRIP_SECONDS, count=2)


DRIP_FAULTS: dict[str, Callable[[Rig], None]] = {
    "rokt-drips": lambda r: r.sandbox.fault(drip=DRIP_SECONDS, count=2),
    "token-endpoint-drips": token_endpoint_drips,
}
