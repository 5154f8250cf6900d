"""Command line for developers and operators: the local stack, the Rokt sandbox, and stage operations.

Every command has --help."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import requests
from botocore.exceptions import BotoCoreError, ClientError
from tqdm import tqdm

from bridgectl import backfill, capacity, ops, report
from chalicelib.sync.envelope import Account
from localworld import campaign
from localworld.braze_sandbox import BrazeSandbox
from localworld.braze_sender import BrazeSender, Webhook
from localworld.localstack import LocalStack, Ports, sample_curl
from localworld.queue_worker import serve
from localworld.rokt_sandbox import RoktSandbox
from stage import resources
from stage.project import LOCAL_WEBHOOK_SECRET, PROJECT_DIR, stage_environment

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
        template = campaign.WebhookTemplate.parse(ops.braze_templates(args.bridge_url)["create"])
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
  python -m localworld report --log-file .run/bridge.log --log-file .run/queue-worker.log
Ctrl-C stops everything."""


def _read_secret(prompt: str) -> str:
    """From a no-echo prompt on a terminal, else one line of stdin; never from the command line."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().strip()


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    ops.bootstrap(ops.StageNames.of(args.stage), boto3.client("dynamodb"), boto3.client("sqs"))
    print(
        f"next: set the Rokt credentials and a webhook secret for stage {args.stage}; for Rokt → Braze also "
        "the Braze key and a Rokt webhook token (see `secrets --help`)"
    )
    return 0


def _cmd_secrets(args: argparse.Namespace) -> int:
    names = ops.StageNames.of(args.stage)
    ssm = boto3.client("ssm")
    if args.action == "set-rokt-credentials":
        client_id = _read_secret("Rokt client id: ")
        client_secret = _read_secret("Rokt client secret: ")
        ops.set_rokt_credentials(names, ssm, client_id, client_secret)
    elif args.action == "set-braze-key":
        ops.set_braze_key(names, ssm, _read_secret("Braze REST API key (users.track): "))
    elif args.action == "add-webhook-secret":
        given = None if args.generate else _read_secret("new webhook secret: ")
        value = ops.add_webhook_secret(names, ssm, given)
        if args.generate:
            print(f"Put this in Braze's Authorization header: Bearer {value}")
    elif args.action == "remove-webhook-secret":
        ops.remove_webhook_secret(names, ssm, _read_secret("webhook secret to remove: "), args.allow_none_left)
    elif args.action == "add-rokt-webhook-token":
        token = ops.ROKT_TOKEN_LIST.add(names, ssm, None if args.generate else _read_secret("new Rokt webhook token: "))
        api_url = (
            args.api_url
            or ops.deployed_api_url(args.stage)
            or "https://<api-id>.execute-api.<region>.amazonaws.com/api"
        )
        print(
            f"Paste this URL in Rokt's dashboard (Webhooks → Add Webhook, v2): {ops.rokt_webhook_url(api_url, token)}"
        )
    else:
        token = _read_secret("Rokt webhook token to remove: ")
        ops.ROKT_TOKEN_LIST.remove(names, ssm, token, args.allow_none_left)
    return 0


def _cmd_braze_template(args: argparse.Namespace) -> int:
    names = ops.StageNames.of(args.stage)
    api_url = args.api_url or ops.deployed_api_url(args.stage)
    if not api_url:
        raise ops.OpsError(f"stage {args.stage} has no deployed API here; pass --api-url (see `chalice url`)")
    for text in ops.braze_templates(api_url.rstrip("/"), names.signature_required).values():
        print(text)
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    names = ops.StageNames.of(args.stage)
    api_url = args.api_url or ops.deployed_api_url(args.stage)
    print(f"checking stage {names.stage} (parameters under {names.prefix}, table {names.table})", flush=True)
    checks = ops.doctor(
        names, boto3.client("ssm"), boto3.client("dynamodb"), api_url=api_url, lambda_client=boto3.client("lambda")
    )
    for check in checks:
        print(f"  {'ok ' if check.ok else 'FAIL'}  {check.name}: {check.detail}", flush=True)
    failed = [c for c in checks if not c.ok]
    print(f"{len(failed)} problem(s)" if failed else "all good")
    return 1 if failed else 0


def _cmd_policies(args: argparse.Namespace) -> int:
    for path in resources.write_policies():
        print(f"wrote {path}")
    return 0


def _cmd_merge_template(args: argparse.Namespace) -> int:
    print(json.dumps(resources.merge_template(args.stage), indent=2))
    return 0


def _cmd_queue_worker(args: argparse.Namespace) -> int:
    environment = stage_environment(args.stage, Path(args.project_dir))
    return _until_stopped(lambda: serve(args.project_dir, args.stage, environment))


def _seconds(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"want a duration like 90s, 30m, 2h or 1d, not {text!r}") from None


def _cmd_report(args: argparse.Namespace) -> int:
    if args.log_file:
        records = [r for name in args.log_file for r in report.read_log_file(Path(name).read_text(errors="replace"))]
        result = report.from_records(records, args.campaign)
        print(f"{len(records):,} log records read from {', '.join(args.log_file)}", file=sys.stderr)
    else:
        if not args.stage:
            raise ops.OpsError("--stage (CloudWatch Logs) or --log-file is required")
        ops.StageNames.of(args.stage)
        groups = args.log_group or report.log_groups(args.stage)
        print(f"Logs Insights over {', '.join(groups)}, last {args.since / 3600:g} h:", file=sys.stderr)
        result = report.from_cloudwatch(
            boto3.client("logs"),
            groups,
            args.since,
            args.campaign,
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
    print(report.render(result, args.format))
    return 0


def _cmd_put_dashboard(args: argparse.Namespace) -> int:
    ops.StageNames.of(args.stage)
    cloudwatch = boto3.client("cloudwatch")
    ops.put_dashboard(cloudwatch, args.stage, cloudwatch.meta.region_name)
    return 0


def _cmd_enable_partial_batch(args: argparse.Namespace) -> int:
    ops.StageNames.of(args.stage)
    ops.enable_partial_batch(boto3.client("lambda"), args.stage)
    return 0


def _cmd_replay_dlq(args: argparse.Namespace) -> int:
    ops.replay_dlq(
        boto3.client("sqs"),
        ops.StageNames.of(args.stage),
        queue=args.queue,
        account_code=args.account_code,
        event_id=args.event_id,
        dry_run=args.dry_run,
        force=args.force,
    )
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    names = ops.StageNames.of(args.stage)
    source = Path(args.file).read_text().splitlines() if args.file and args.file != "-" else sys.stdin
    ids = backfill.read_ids(source)
    if not ids:
        raise ops.OpsError("no subscription ids given (one per line, in --file or on stdin)")
    sqs = boto3.client("sqs")
    queue_url = (
        stage_environment(names.stage).get("SYNC_QUEUE_URL")
        or sqs.get_queue_url(QueueName=names.queues("sync")[0])["QueueUrl"]
    )
    account = Account(args.account_code, args.account_id, args.account_name)
    state = Path(args.state_file or f".backfill-{names.stage}-{args.run}.json")
    queued = backfill.backfill(sqs, queue_url, ids, account, run=args.run, state_file=state)
    print(
        f"{queued} subscription(s) queued now, {len(ids)} in all (progress in {state}). The sync consumer "
        "reads each from Rokt and writes Braze; unknown ids land in the sync DLQ with the reason."
    )
    return 0


def _cmd_capacity(args: argparse.Namespace) -> int:
    send = capacity.Send(
        audience=args.audience,
        braze_rate_per_minute=args.braze_rate,
        upstream_ms=args.upstream_ms,
        rokt_rate_per_second=args.rokt_rate,
        aws_call_ms=args.aws_call_ms,
    )
    try:
        measured = capacity.Measured.load(Path(args.results))
    except FileNotFoundError as exc:
        raise ops.OpsError(str(exc)) from exc
    print(capacity.render(send, capacity.plan(send, measured)))
    return 0


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

    _add_operator_commands(commands)
    return parser


def _add_queue_commands(commands: Any, aws_note: str) -> None:
    """What operators do with queues: replay dead letters, set partial batches, backfill Rokt → Braze."""
    replay = commands.add_parser(
        "replay-dlq", help="move dead letters back to their queue (deliveries or Rokt webhooks)", epilog=aws_note
    )
    replay.add_argument("--stage", required=True, help="stage in .chalice/config.json")
    replay.add_argument(
        "--queue", choices=sorted(ops.QUEUES), default="delivery", help="which dead letters (default delivery)"
    )
    replay.add_argument("--account-code", help="only messages for this account code")
    replay.add_argument("--event-id", help="only messages for this event id")
    replay.add_argument("--dry-run", action="store_true", help="list and count, move nothing")
    replay.add_argument(
        "--force",
        action="store_true",
        help="also replay deliveries received longer ago than IDEMPOTENCY_TTL_SECONDS (refused by default: "
        "a newer intent's record may be gone, and the older one would undo it)",
    )
    replay.set_defaults(func=_cmd_replay_dlq)

    for name, what, func in (
        ("enable-partial-batch", "set ReportBatchItemFailures on the queue consumer", _cmd_enable_partial_batch),
        ("put-dashboard", "put the stage's CloudWatch dashboard (the template path has it)", _cmd_put_dashboard),
    ):
        after_deploy = commands.add_parser(name, help=f"after `chalice deploy`: {what}", epilog=aws_note)
        after_deploy.add_argument("--stage", required=True, help="stage in .chalice/config.json")
        after_deploy.set_defaults(func=func)

    summary = commands.add_parser(
        "report",
        help="per campaign and route: received, delivered, duplicates, queued, errors with examples, latency",
        description="Runs Logs Insights on the stage's log groups, or the same queries on a file of the "
        "bridge's JSON log lines (--log-file). A campaign is the eventId without its trailing _<user id>.",
        epilog=aws_note,
    )
    summary.add_argument("--stage", help="stage in .chalice/config.json (CloudWatch Logs)")
    summary.add_argument("--since", type=_seconds, default=_seconds("2h"), help="window, e.g. 30m, 2h, 1d (default 2h)")
    summary.add_argument("--campaign", help="only campaigns starting with this prefix")
    summary.add_argument("--format", choices=("table", "csv", "json"), default="table")
    summary.add_argument(
        "--log-file", action="append", help="a file of the bridge's JSON log lines instead of CloudWatch (repeatable)"
    )
    summary.add_argument("--log-group", action="append", help="log group(s) to query (default: the stage's functions)")
    summary.set_defaults(func=_cmd_report)

    fill = commands.add_parser(
        "backfill", help="put existing Rokt subscriptions through Rokt → Braze once (resumable)", epilog=aws_note
    )
    fill.add_argument("--stage", required=True, help="stage in .chalice/config.json")
    fill.add_argument("--file", help="subscription ids, one per line (default: stdin)")
    fill.add_argument("--account-code", required=True, help="the Rokt account code these subscriptions belong to")
    fill.add_argument(
        "--account-id", help="the Rokt account id, for rokt:account_id (optional: without it, what was written stays)"
    )
    fill.add_argument(
        "--account-name",
        help="the Rokt account name, for rokt:account_name (optional: without it, what was written stays)",
    )
    fill.add_argument("--run", default="backfill-1", help="name of this backfill; the same name never writes twice")
    fill.add_argument("--state-file", help="where progress is kept (default .backfill-<stage>-<run>.json)")
    fill.set_defaults(func=_cmd_backfill)


def _add_operator_commands(commands: Any) -> None:
    """Stage operations: bootstrap, secrets, templates, diagnosis, dead letters, capacity, infra."""
    aws_note = "Uses the AWS credentials, region and AWS_ENDPOINT_URL of the environment."
    _add_queue_commands(commands, aws_note)
    bootstrap = commands.add_parser("bootstrap", help="create the stage's DynamoDB table (idempotent)", epilog=aws_note)
    bootstrap.add_argument("--stage", required=True, help="stage in .chalice/config.json")
    bootstrap.set_defaults(func=_cmd_bootstrap)

    secrets_cmd = commands.add_parser(
        "secrets", help="write the stage's SecureStrings (values from a prompt or stdin)", epilog=aws_note
    )
    secrets_cmd.add_argument(
        "action",
        choices=[
            "set-rokt-credentials",
            "set-braze-key",
            "add-webhook-secret",
            "remove-webhook-secret",
            "add-rokt-webhook-token",
            "remove-rokt-webhook-token",
        ],
    )
    secrets_cmd.add_argument("--stage", required=True, help="stage in .chalice/config.json")
    secrets_cmd.add_argument("--generate", action="store_true", help="add-…: generate a random secret or token")
    secrets_cmd.add_argument(
        "--api-url", help="add-rokt-webhook-token: the bridge's URL, to print the full webhook URL"
    )
    secrets_cmd.add_argument(
        "--allow-none-left", action="store_true", help="remove-webhook-secret: allow removing the last one"
    )
    secrets_cmd.set_defaults(func=_cmd_secrets)

    template = commands.add_parser("braze-template", help="print the Braze webhook templates for a stage")
    template.add_argument("--stage", required=True, help="stage in .chalice/config.json")
    template.add_argument("--api-url", help="the bridge's URL (default: the one `chalice deploy` recorded)")
    template.set_defaults(func=_cmd_braze_template)

    doctor = commands.add_parser(
        "doctor", help="check a stage's parameters, table, Rokt token and API", epilog=aws_note
    )
    doctor.add_argument("--stage", required=True, help="stage in .chalice/config.json")
    doctor.add_argument("--api-url", help="the bridge's URL, for a dry-run webhook")
    doctor.set_defaults(func=_cmd_doctor)

    worker = commands.add_parser("queue-worker", help="(local) feed the delivery queue to the SQS handler")
    worker.add_argument("--project-dir", default=str(PROJECT_DIR), help="project whose config.json to use")
    worker.add_argument("--stage", default="local", help="stage whose environment to use (default local)")
    worker.set_defaults(func=_cmd_queue_worker)

    cap = commands.add_parser("capacity", help="what a Braze send needs from AWS and Rokt (from bench/results.json)")
    cap.add_argument("--audience", type=int, required=True, help="users in the send")
    cap.add_argument("--braze-rate", type=int, required=True, help="Braze rate limit, webhooks per minute")
    cap.add_argument("--upstream-ms", type=float, default=300.0, help="average Rokt call latency (default 300)")
    cap.add_argument("--rokt-rate", type=float, required=True, help="calls per second Rokt allows")
    cap.add_argument("--aws-call-ms", type=float, default=8.0, help="average DynamoDB call latency (default 8)")
    cap.add_argument("--results", default=str(capacity.RESULTS), help="bench results to use")
    cap.set_defaults(func=_cmd_capacity)

    policies = commands.add_parser("policies", help="regenerate .chalice/policy-<stage>.json from config.json")
    policies.set_defaults(func=_cmd_policies)

    merge = commands.add_parser("merge-template", help="print CloudFormation resources for chalice package")
    merge.add_argument("--stage", required=True, choices=resources.DEPLOYED_STAGES)
    merge.set_defaults(func=_cmd_merge_template)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ops.OpsError as exc:
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
