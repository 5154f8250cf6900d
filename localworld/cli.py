"""``python -m localworld``: the local world on loopback — the whole stack (``make run``), each sandbox on its
own, the campaign simulator and the queue worker. Operating a deployed stage is ``bridgectl``'s job.

Every command has --help."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from localworld import campaign
from localworld.braze_sandbox import BrazeSandbox
from localworld.braze_sender import BrazeSender, Webhook
from localworld.localstack import LocalStack, Ports, sample_curl
from localworld.queue_worker import serve
from localworld.rokt_sandbox import RoktSandbox
from localworld.seed import LOCAL_WEBHOOK_SECRET
from stage.braze_templates import braze_templates
from stage.names import OpsError
from stage.project import PROJECT_DIR, stage_environment

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


def _cmd_sandbox(args: argparse.Namespace) -> int:
    sandbox = RoktSandbox(host=args.host, port=args.port, token_ttl=args.token_ttl, verbose=args.verbose)
    print(f"Rokt sandbox on {sandbox.url} (token lifetime {args.token_ttl:g} s)", flush=True)
    return _until_stopped(sandbox.serve_forever)


def _until_stopped(run: Callable[[], None]) -> int:
    """Run a long-lived local service until SIGTERM or Ctrl-C, then exit cleanly."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        run()
    return 0


def _cmd_braze_sandbox(args: argparse.Namespace) -> int:
    sandbox = BrazeSandbox(host=args.host, port=args.port, verbose=args.verbose)
    if args.seed:
        seeded = sandbox.state.seed(json.loads(Path(args.seed).read_text()))
        print(f"seeded {seeded} profile(s) from {args.seed}", flush=True)
    print(f"Braze sandbox on {sandbox.url} (REST key: {', '.join(sorted(sandbox.state.api_keys))})", flush=True)
    return _until_stopped(sandbox.serve_forever)


def _cmd_braze_send(args: argparse.Namespace) -> int:
    if args.template == "seed":
        template = campaign.WebhookTemplate.seed()
    elif args.template == "bridge":
        template = campaign.WebhookTemplate.parse(braze_templates(args.bridge_url)["create"])
    else:
        template = campaign.WebhookTemplate.parse(Path(args.template).read_text())
    renderer = campaign.Renderer(template, bridge_url=args.bridge_url, secret=args.secret, event_prefix=args.event_id)
    profiles = requests.get(f"{args.braze_url.rstrip('/')}/_sandbox/users", timeout=10).json()
    webhooks = [renderer.render(profile, dry_run=args.dry_run) for profile in profiles]
    print(f"rendered {len(webhooks)} webhook(s) from {args.braze_url}; sending at {args.rate}/minute", flush=True)
    with tqdm(total=len(webhooks), unit="webhook", desc="braze-send", file=sys.stderr) as bar:

        def advance(_: Webhook) -> None:
            bar.update(1)

        sender = BrazeSender(
            concurrency=args.concurrency,
            rate_per_minute=args.rate,
            time_scale=args.time_scale,
            max_wait=60 * args.time_scale + 1,
            on_done=advance,
        )
        sender.send_all(webhooks)
    rows = campaign.summary(webhooks)
    print(campaign.render_table(rows))
    return 0 if all(w.final and w.final < 300 for w in webhooks) else 1


def _cmd_run(args: argparse.Namespace) -> int:
    stack = LocalStack(
        Ports(moto=args.moto_port, sandbox=args.sandbox_port, bridge=args.port, braze=args.braze_port),
        autoreload=not args.no_autoreload,
        queued=args.queued,
        spill=True,
        sync=True,
        log_dir=PROJECT_DIR / ".run",
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Ctrl-C must stop the stack even when the shell started us with SIGINT ignored (background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack.start()
        print(tour(stack), flush=True)
        while all(p.poll() is None for p in stack.processes):
            time.sleep(0.5)
        print("a local process exited; stopping the stack", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping… (every process the stack started is being stopped)", flush=True)
        return 0
    finally:
        # A second Ctrl-C must not interrupt the cleanup and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()


def tour(stack: LocalStack) -> str:
    """What to try, both directions, with the stack's real ports."""
    rokt, braze, bridge = stack.sandbox_url, stack.braze_url, stack.bridge_url
    subscribe = (
        '{"accountCode": "brazetest", "calendarCode": "sports", "subscriberId": "user42", "tags": ["All Teams"]}'
    )
    send = f"{sys.executable} -m localworld braze-send --bridge-url {bridge} --braze-url {braze}"
    return f"""
The bridge is up, both directions. A short tour:

1. Someone subscribes to the calendar (Rokt sandbox → webhook → bridge → sync queue → Braze):
   curl -s -X POST {rokt}/_sandbox/subscribe -H 'Content-Type: application/json' -d '{subscribe}'
2. Their Braze profile now carries rokt:* attributes and a 'subscribe' event:
   curl -s {braze}/_sandbox/users/user42
3. A campaign renders the Braze template for every profile and sends it through the bridge
   (user42 is delivered; the others have no rokt:* attributes yet: 422 template_defect, before a real send):
   {send}
4. The event is in user42's calendar feed (the subscription id from step 1):
   curl -s {rokt}/_sandbox/calendar/<subscriptionId>.ics

Or send the seed's sample webhook yourself:
{sample_curl(bridge)}

Rokt's webhook deliveries: curl -s {rokt}/_sandbox/webhooks
This run's logs (JSON lines): .run/bridge.log and .run/queue-worker.log; what happened per campaign:
  python -m bridgectl report --log-file .run/bridge.log --log-file .run/queue-worker.log
Ctrl-C stops everything."""


def _cmd_queue_worker(args: argparse.Namespace) -> int:
    environment = stage_environment(args.stage, Path(args.project_dir))
    return _until_stopped(lambda: serve(args.project_dir, args.stage, environment))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localworld", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="serve the local Rokt Calendar API sandbox")
    sandbox.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    sandbox.add_argument("--token-ttl", type=float, default=300.0, help="token lifetime in seconds (default 300)")
    sandbox.add_argument("--verbose", action="store_true", help="log every request")
    sandbox.set_defaults(func=_cmd_sandbox)

    braze = commands.add_parser("braze-sandbox", help="serve the local Braze REST API sandbox (/users/track)")
    braze.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    braze.add_argument("--port", type=int, default=8082, help="port (default 8082)")
    braze.add_argument(
        "--seed", help="JSON file: a list of profiles (external_id, email, time_zone, custom attributes)"
    )
    braze.add_argument("--verbose", action="store_true", help="log every request")
    braze.set_defaults(func=_cmd_braze_sandbox)

    send = commands.add_parser(
        "braze-send", help="render a Braze webhook template for every Braze sandbox profile and send it, as Braze does"
    )
    send.add_argument("--bridge-url", default="http://127.0.0.1:8000", help="the bridge (default: make run's)")
    send.add_argument("--braze-url", default="http://127.0.0.1:8082", help="the Braze sandbox (default: make run's)")
    send.add_argument(
        "--template",
        default="bridge",
        help="'bridge' (what braze-template prints), 'seed' (the partner page's), or a file",
    )
    send.add_argument("--secret", default=LOCAL_WEBHOOK_SECRET, help="the webhook secret (default: make run's)")
    send.add_argument("--event-id", help="event id prefix, replacing the template's Event_0001")
    send.add_argument("--rate", type=int, default=60_000, help="the campaign's rate limit per minute (default 60000)")
    send.add_argument("--concurrency", type=int, default=8, help="webhooks in flight at once (default 8)")
    send.add_argument("--time-scale", type=float, default=0.01, help="compress Braze's waits (default 0.01)")
    send.add_argument("--dry-run", action="store_true", help="add ?dryRun=true: validated, nothing sent to Rokt")
    send.set_defaults(func=_cmd_braze_send)

    run = commands.add_parser(
        "run", help="start moto server, the Rokt and Braze sandboxes, chalice local and the queue worker"
    )
    run.add_argument("--port", type=int, default=8000, help="bridge port (default 8000)")
    run.add_argument("--moto-port", type=int, default=5050, help="AWS emulator port (default 5050)")
    run.add_argument("--sandbox-port", type=int, default=8081, help="Rokt sandbox port (default 8081)")
    run.add_argument("--braze-port", type=int, default=8082, help="Braze sandbox port (default 8082)")
    run.add_argument("--no-autoreload", action="store_true", help="do not restart the bridge on code changes")
    run.add_argument("--queued", action="store_true", help="DELIVERY_MODE=queued, with a local queue worker")
    run.set_defaults(func=_cmd_run)

    worker = commands.add_parser("queue-worker", help="feed the stage's queues to its SQS handlers, as Lambda does")
    worker.add_argument("--project-dir", default=str(PROJECT_DIR), help="project whose config.json to use")
    worker.add_argument("--stage", default="local", help="stage whose environment to use (default local)")
    worker.set_defaults(func=_cmd_queue_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"error: AWS refused or could not be reached: {exc}", file=sys.stderr)
        return 2
    except campaign.TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except requests.RequestException as exc:
        print(f"error: could not reach a local service ({type(exc).__name__}); is `make run` up?", file=sys.stderr)
        return 2
    return result
