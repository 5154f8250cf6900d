"""``bridgectl``: the operator's command line for deployed stages, grouped by what an operator does.

``--stage`` is given once, before the command (``bridgectl --stage prod stage doctor``). Every command
uses the AWS credentials, region and ``AWS_ENDPOINT_URL`` of the environment, and needs only what
``pyproject.toml`` declares (no dev requirements, no local world)."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import click
import requests
from botocore.exceptions import BotoCoreError, ClientError

from bridgectl import backfill, capacity, dead_letters, deployment, doctor, reconcile, report
from chalicelib.sync.envelope import Account
from stage import resources, secrets
from stage.bootstrap import bootstrap
from stage.braze_templates import braze_templates
from stage.names import QUEUES, OpsError, StageError, StageNames
from stage.project import stage_environment

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

PROG = "bridgectl"
SECRET_LISTS = {"webhook-secret": secrets.WEBHOOK_SECRET_LIST, "rokt-webhook-token": secrets.ROKT_TOKEN_LIST}
UNDEPLOYED_URL = "https://<api-id>.execute-api.<region>.amazonaws.com/api"


@dataclass
class Target:
    """The stage the command acts on, from the one ``--stage`` option."""

    stage: str | None

    def names(self) -> StageNames:
        if not self.stage:
            raise click.UsageError(f"this command needs --stage, given before it: {PROG} --stage <stage> ...")
        return StageNames.of(self.stage)


pass_target = click.make_pass_decorator(Target)


def _read_secret(prompt: str) -> str:
    """From a no-echo prompt on a terminal, else one line of stdin; never from the command line."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().strip()


def _seconds(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"want a duration like 90s, 30m, 2h or 1d, not {text!r}") from None


def _api_url(target: Target, given: str | None) -> str | None:
    return given or (deployment.deployed_api_url(target.stage) if target.stage else None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stage", envvar="BRIDGECTL_STAGE", help="stage in .chalice/config.json (or $BRIDGECTL_STAGE)")
@click.pass_context
def bridgectl(ctx: click.Context, stage: str | None) -> None:
    """Operate a deployed stage of the bridge: its AWS resources, secrets, dead letters and sends."""
    ctx.obj = Target(stage)


# ── stage: what the stage is in AWS ─────────────────────────────────────────────────────────────────


@bridgectl.group("stage")
def stage_group() -> None:
    """Create, check and finish a stage: bootstrap before `chalice deploy`, the rest after it."""


@stage_group.command("bootstrap")
@pass_target
def stage_bootstrap(target: Target) -> int:
    """Create the stage's table, queues and dead-letter queues (idempotent)."""
    bootstrap(target.names(), boto3.client("dynamodb"), boto3.client("sqs"))
    click.echo(
        f"next: set the Rokt credentials and a webhook secret for stage {target.stage}; for Rokt → Braze also "
        "the Braze key and a Rokt webhook token (see `secrets --help`)"
    )
    return 0


@stage_group.command("doctor")
@click.option("--api-url", help="the bridge's URL, for a dry-run webhook (default: what `chalice deploy` recorded)")
@pass_target
def stage_doctor(target: Target, api_url: str | None) -> int:
    """Check the stage's parameters, table, Rokt token, Braze key, queue consumers and API."""
    names = target.names()
    click.echo(f"checking stage {names.stage} (parameters under {names.prefix}, table {names.table})")
    checks = doctor.doctor(
        names,
        boto3.client("ssm"),
        boto3.client("dynamodb"),
        api_url=_api_url(target, api_url),
        lambda_client=boto3.client("lambda"),
    )
    for check in checks:
        click.echo(f"  {'ok ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    failed = [c for c in checks if not c.ok]
    click.echo(f"{len(failed)} problem(s)" if failed else "all good")
    return 1 if failed else 0


@stage_group.command("enable-partial-batch")
@pass_target
def stage_enable_partial_batch(target: Target) -> int:
    """After `chalice deploy`: set ReportBatchItemFailures on both queue consumers (delivery and sync)."""
    deployment.enable_partial_batch(boto3.client("lambda"), target.names().stage)
    return 0


@stage_group.command("put-dashboard")
@pass_target
def stage_put_dashboard(target: Target) -> int:
    """After `chalice deploy`: put the stage's CloudWatch dashboard (the template path has it)."""
    names = target.names()
    cloudwatch = boto3.client("cloudwatch")
    deployment.put_dashboard(cloudwatch, names.stage, cloudwatch.meta.region_name)
    return 0


@stage_group.command("merge-template")
@pass_target
def stage_merge_template(target: Target) -> int:
    """Print the CloudFormation resources `chalice package --merge-template` adds."""
    stage = target.names().stage
    if stage not in resources.DEPLOYED_STAGES:
        raise click.UsageError(f"merge-template is for the deployed stages: {', '.join(resources.DEPLOYED_STAGES)}")
    click.echo(json.dumps(resources.merge_template(stage), indent=2))
    return 0


@stage_group.command("policies")
def stage_policies() -> int:
    """Regenerate .chalice/policy-<stage>.json for every deployed stage."""
    for path in resources.write_policies():
        click.echo(f"wrote {path}")
    return 0


# ── secrets ──────────────────────────────────────────────────────────────────────────────────────────


@bridgectl.group("secrets")
def secrets_group() -> None:
    """Write the stage's SecureStrings; values come from a no-echo prompt or stdin, never the command line."""


@secrets_group.group("set")
def secrets_set() -> None:
    """Set a single-valued secret."""


@secrets_set.command("rokt-credentials")
@pass_target
def set_rokt_credentials(target: Target) -> int:
    """The Rokt API client id and secret (Braze → Rokt)."""
    names = target.names()
    client_id = _read_secret("Rokt client id: ")
    client_secret = _read_secret("Rokt client secret: ")
    secrets.set_rokt_credentials(names, boto3.client("ssm"), client_id, client_secret)
    return 0


@secrets_set.command("braze-key")
@pass_target
def set_braze_key(target: Target) -> int:
    """The Braze REST API key with the users.track permission (Rokt → Braze)."""
    names = target.names()
    secrets.set_braze_key(names, boto3.client("ssm"), _read_secret("Braze REST API key (users.track): "))
    return 0


KIND = click.Choice(sorted(SECRET_LISTS))


def _announce(target: Target, kind: str, value: str, api_url: str | None) -> None:
    """Where the new secret goes: Braze's Authorization header, or the URL pasted in Rokt's dashboard."""
    if kind == "webhook-secret":
        click.echo(f"Put this in Braze's Authorization header: Bearer {value}")
        return
    url = _api_url(target, api_url) or UNDEPLOYED_URL
    click.echo(
        f"Paste this URL in Rokt's dashboard (Webhooks → Add Webhook, v2): {secrets.rokt_webhook_url(url, value)}"
    )


@secrets_group.command("add")
@click.argument("kind", type=KIND)
@click.option("--generate", is_flag=True, help="generate a random one (printed once) instead of reading it")
@click.option("--api-url", help="rokt-webhook-token: the bridge's URL, to print the full webhook URL")
@pass_target
def secrets_add(target: Target, kind: str, generate: bool, api_url: str | None) -> int:
    """Accept one more webhook secret or Rokt webhook token (the old ones stay accepted)."""
    names = target.names()
    given = None if generate else _read_secret(f"new {SECRET_LISTS[kind].what}: ")
    value = SECRET_LISTS[kind].add(names, boto3.client("ssm"), given)
    if generate:
        _announce(target, kind, value, api_url)
    return 0


@secrets_group.command("remove")
@click.argument("kind", type=KIND)
@click.option("--allow-none-left", is_flag=True, help="allow removing the last one (every call is then refused)")
@pass_target
def secrets_remove(target: Target, kind: str, allow_none_left: bool) -> int:
    """Stop accepting a webhook secret or Rokt webhook token (read from the prompt or stdin)."""
    names = target.names()
    secret = _read_secret(f"{SECRET_LISTS[kind].what} to remove: ")
    SECRET_LISTS[kind].remove(names, boto3.client("ssm"), secret, allow_none_left)
    return 0


@secrets_group.command("rotate")
@click.argument("kind", type=KIND)
@click.option("--api-url", help="rokt-webhook-token: the bridge's URL, to print the full webhook URL")
@pass_target
def secrets_rotate(target: Target, kind: str, api_url: str | None) -> int:
    """First step of a rotation: generate and accept a new one beside the old, and say what to do next."""
    names = target.names()
    value = SECRET_LISTS[kind].add(names, boto3.client("ssm"), None)
    _announce(target, kind, value, api_url)
    click.echo(
        f"then, once every sender uses it: {PROG} --stage {names.stage} secrets remove {kind} (the old value on stdin)"
    )
    return 0


# ── dead letters ─────────────────────────────────────────────────────────────────────────────────────


@bridgectl.group("dlq")
def dlq_group() -> None:
    """Dead letters of the delivery queue (Braze → Rokt) or the sync queue (Rokt → Braze)."""


def _dlq_options(command: Any) -> Any:
    command = click.option("--event-id", help="only messages for this event id")(command)
    command = click.option("--account-code", help="only messages for this account code")(command)
    return click.option(
        "--queue",
        type=click.Choice(sorted(QUEUES)),
        default="delivery",
        show_default=True,
        help="whose dead letters",
    )(command)


@dlq_group.command("show")
@_dlq_options
@pass_target
def dlq_show(target: Target, queue: str, account_code: str | None, event_id: str | None) -> int:
    """List dead letters, with the reason each was dead-lettered; moves nothing."""
    dead_letters.replay_dlq(
        boto3.client("sqs"), target.names(), queue=queue, account_code=account_code, event_id=event_id, dry_run=True
    )
    return 0


@dlq_group.command("replay")
@_dlq_options
@click.option("--dry-run", is_flag=True, help="list and count, move nothing (same as `dlq show`)")
@click.option(
    "--force",
    is_flag=True,
    help="also replay deliveries received longer ago than IDEMPOTENCY_TTL_SECONDS (refused by default: "
    "a newer intent's record may be gone, and the older one would undo it)",
)
@pass_target
def dlq_replay(
    target: Target, *, queue: str, account_code: str | None, event_id: str | None, dry_run: bool, force: bool
) -> int:
    """Move dead letters (all, or the matching ones) back to their queue; a delivery too old to replay
    safely stays, saying why, unless --force."""
    dead_letters.replay_dlq(
        boto3.client("sqs"),
        target.names(),
        queue=queue,
        account_code=account_code,
        event_id=event_id,
        dry_run=dry_run,
        force=force,
    )
    return 0


# ── what happened, what to expect ───────────────────────────────────────────────────────────────────


@bridgectl.command("report")
@click.option("--since", default="2h", show_default=True, help="window, e.g. 30m, 2h, 1d")
@click.option("--campaign", help="only campaigns starting with this prefix")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--log-file", multiple=True, help="a file of the bridge's JSON log lines instead of CloudWatch")
@click.option("--log-group", multiple=True, help="log group(s) to query (default: the stage's functions)")
@pass_target
def report_command(
    target: Target,
    *,
    since: str,
    campaign: str | None,
    fmt: str,
    log_file: tuple[str, ...],
    log_group: tuple[str, ...],
) -> int:
    """Per campaign and route: received, delivered, duplicates, queued, errors with examples, latency.

    Runs Logs Insights on the stage's log groups, or the same queries on files of the bridge's JSON log
    lines (--log-file, no --stage needed). A campaign is the eventId without its trailing _<user id>."""
    if log_file:
        records = [r for name in log_file for r in report.read_log_file(Path(name).read_text(errors="replace"))]
        result = report.from_records(records, campaign)
        click.echo(f"{len(records):,} log records read from {', '.join(log_file)}", err=True)
    else:
        stage = target.names().stage
        groups = list(log_group) or report.log_groups(stage)
        window = _seconds(since)
        click.echo(f"Logs Insights over {', '.join(groups)}, last {window / 3600:g} h:", err=True)
        result = report.from_cloudwatch(
            boto3.client("logs"), groups, window, campaign, progress=lambda message: click.echo(message, err=True)
        )
    click.echo(report.render(result, fmt))
    return 0


@bridgectl.command("backfill")
@click.option("--file", "source", help="subscription ids, one per line (default: stdin)")
@click.option("--account-code", required=True, help="the Rokt account code these subscriptions belong to")
@click.option(
    "--account-id", help="the Rokt account id, for rokt:account_id (optional: without it, what was written stays)"
)
@click.option(
    "--account-name",
    help="the Rokt account name, for rokt:account_name (optional: without it, what was written stays)",
)
@click.option("--run", "run_name", default="backfill-1", show_default=True, help="the same name never writes twice")
@click.option("--state-file", help="where progress is kept (default .backfill-<stage>-<run>.json)")
@pass_target
def backfill_command(
    target: Target,
    *,
    source: str | None,
    account_code: str,
    account_id: str | None,
    account_name: str | None,
    run_name: str,
    state_file: str | None,
) -> int:
    """Put existing Rokt subscriptions through Rokt → Braze once (resumable)."""
    names = target.names()
    lines = Path(source).read_text().splitlines() if source and source != "-" else sys.stdin
    ids = backfill.read_ids(lines)
    if not ids:
        raise OpsError("no subscription ids given (one per line, in --file or on stdin)")
    sqs = boto3.client("sqs")
    queue_url = (
        stage_environment(names.stage).get("SYNC_QUEUE_URL")
        or sqs.get_queue_url(QueueName=names.queues("sync")[0])["QueueUrl"]
    )
    state = Path(state_file or f".backfill-{names.stage}-{run_name}.json")
    account = Account(account_code, account_id, account_name)
    queued = backfill.backfill(sqs, queue_url, ids, account, run=run_name, state_file=state)
    click.echo(
        f"{queued} subscription(s) queued now, {len(ids)} in all (progress in {state}). The sync consumer "
        "reads each from Rokt and writes Braze; unknown ids land in the sync DLQ with the reason."
    )
    return 0


@bridgectl.command("reconcile")
@click.option("--subscription", "subscriptions", multiple=True, help="a subscription id (repeatable)")
@click.option("--all", "everything", is_flag=True, help="every subscription the ledger knows")
@click.option("--dry-run", is_flag=True, help="show what would change, write nothing")
@click.option("--yes", is_flag=True, help="write without asking, after showing the table")
@pass_target
def reconcile_command(
    target: Target, subscriptions: tuple[str, ...], everything: bool, dry_run: bool, yes: bool
) -> int:
    """Compare subscriptions in Rokt with what Braze holds (the ledger) and heal what drifted, as the
    scheduled reconciliation does: a table of what would change first."""
    names = target.names()
    if bool(subscriptions) == everything:
        raise click.UsageError("give --subscription ID (one or more) or --all")
    found = reconcile.reconciler(names.stage)

    def pages() -> Iterable[list[str]]:
        return found.everything() if everything else [list(subscriptions)]

    def progress(report: Any) -> None:
        click.echo(
            f"… {report.read + report.busy + report.failed} subscription(s) so far: {reconcile.summary(report)}",
            err=True,
        )

    looked = reconcile.check(found, pages(), dry_run=True, progress=progress)
    click.echo(reconcile.table(looked.drifts) if looked.drifts else "nothing drifted")
    click.echo(reconcile.summary(looked))
    if dry_run or not looked.drifts:
        return 0
    if not yes:
        click.confirm("write these changes to Braze?", abort=True)
    written = reconcile.check(found, pages(), dry_run=False, progress=progress)
    click.echo(reconcile.summary(written))
    return 0


@bridgectl.command("capacity")
@click.option("--audience", type=int, help="users in the send")
@click.option("--braze-rate", type=int, help="Braze rate limit, webhooks per minute")
@click.option("--rokt-rate", type=float, help="calls per second Rokt allows")
@click.option("--upstream-ms", type=float, default=300.0, show_default=True, help="average Rokt call latency")
@click.option("--aws-call-ms", type=float, default=8.0, show_default=True, help="average DynamoDB call latency")
@click.option("--results", default=str(capacity.RESULTS), help="bench results to use")
@click.option("--subscriptions", type=int, help="price the reconciliation of this many subscriptions instead")
@click.option("--reads-per-second", type=float, default=10.0, show_default=True, help="RECONCILE_READS_PER_SECOND")
@click.option("--period", default="1d", show_default=True, help="RECONCILE_PERIOD_SECONDS, as 24h, 1d…")
@click.option("--drift", type=float, default=0.01, show_default=True, help="share of subscriptions drifted per pass")
def capacity_command(
    *,
    audience: int | None,
    braze_rate: int | None,
    rokt_rate: float | None,
    upstream_ms: float,
    aws_call_ms: float,
    results: str,
    subscriptions: int | None,
    reads_per_second: float,
    period: str,
    drift: float,
) -> int:
    """What a Braze send needs from AWS and Rokt (from the measured costs in bench/results.json); with
    --subscriptions, what reconciling that many subscriptions costs a day."""
    if subscriptions is not None:
        ledger = capacity.Ledger(subscriptions, reads_per_second, _seconds(period), drift, aws_call_ms=aws_call_ms)
        click.echo(capacity.render_reconciliation(ledger, capacity.reconciliation(ledger)))
        return 0
    if audience is None or braze_rate is None or rokt_rate is None:
        raise click.UsageError("a send needs --audience, --braze-rate and --rokt-rate (or give --subscriptions)")
    send = capacity.Send(
        audience=audience,
        braze_rate_per_minute=braze_rate,
        upstream_ms=upstream_ms,
        rokt_rate_per_second=rokt_rate,
        aws_call_ms=aws_call_ms,
    )
    try:
        measured = capacity.Measured.load(Path(results))
    except FileNotFoundError as exc:
        raise OpsError(str(exc)) from exc
    click.echo(capacity.render(send, capacity.plan(send, measured)))
    return 0


@bridgectl.command("braze-template")
@click.option("--api-url", help="the bridge's URL (default: the one `chalice deploy` recorded)")
@pass_target
def braze_template(target: Target, api_url: str | None) -> int:
    """Print the stage's Braze webhook templates (create, update, delete), ready to paste."""
    names = target.names()
    url = _api_url(target, api_url)
    if not url:
        raise OpsError(f"stage {names.stage} has no deployed API here; pass --api-url (see `chalice url`)")
    for text in braze_templates(url.rstrip("/"), names.signature_required).values():
        click.echo(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: click's parsing, and every operator error as one ``error:`` line, exit 2."""
    try:
        result = bridgectl.main(args=list(argv) if argv is not None else None, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (OpsError, StageError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except (BotoCoreError, ClientError) as exc:
        click.echo(f"error: AWS refused or could not be reached: {exc}", err=True)
        return 2
    except requests.RequestException as exc:
        click.echo(f"error: could not reach {type(exc).__name__}: {exc}", err=True)
        return 2
    return int(result or 0)
