"""The recorded calls against the policies, both ways, for every deployed stage.

Each recorded resource is recognised as one of a stage's resources — its table, a queue or DLQ, a
parameter under its prefix, a function, its log group, its dashboard — by the names the code gives
them for every stage in `.chalice/config.json` and for the tests' own stage (``tests/conftest.py``), and
is renamed to the same resource of the stage being checked (``StageNames.of(stage)``: what the
deployed code names it). Region and account are normalised (the policies name neither).

Each function's policy is the one Chalice gives it: ``chalice.config.Config`` resolves
``iam_policy_file`` per stage and per function, exactly as `chalice deploy` does. The operator's is
``docs/operator-policy.json``. moto's IAM evaluator (``moto.iam.access_control.IAMPolicy``) decides; it
honours Allow/Deny, wildcards in actions and resources, and StringEquals conditions — other condition
operators (the KMS statement's StringLike) it ignores, so they are not proven.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chalice.app import SQSEventConfig
from chalice.config import Config
from moto.iam.access_control import IAMPolicy, PermissionResult

from chalicelib.settings import APP_NAME
from stage.dashboard import dashboard_name
from stage.names import QUEUES, StageNames
from stage.project import PROJECT_DIR
from stage.resources import DEPLOYED_STAGES
from tests.iam.calls import DEFAULT_ACCOUNT, UNKNOWN_RESOURCE
from tests.iam.recorder import AMBIGUOUS, API_HANDLER, OPERATOR, OUTSIDE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from chalice.app import Chalice

OPERATOR_POLICY = PROJECT_DIR / "docs" / "operator-policy.json"
REGION = "us-east-1"
LAMBDA_LOGS = "/aws/lambda/"
# Names a test gives a stage's resources its own way (a fictional stage), by role: exact names, and the
# isolated worlds of localworld.localstack (``LocalStack.isolated(name)``: a run id in every name).
ALIASES: dict[str, tuple[str, ...]] = {"table": ("fresh-table", "unused"), "prefix": ("/x", "/unused")}
PATTERNS: dict[str, str] = {"table": r"[a-z]+-[0-9a-f]{8}-idempotency", "prefix": r"/[a-z]+-[0-9a-f]{8}/bridge"}


@dataclass(frozen=True, order=True)
class Call:
    """One recorded authorization, as exported by the recorder."""

    who: str
    action: str
    resource: str
    conditions: tuple[tuple[str, str], ...] = ()
    count: int = 1
    test: str = ""

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Call:
        conditions = tuple((str(k), str(v)) for k, v in row.get("conditions", ()))
        return cls(row["who"], row["action"], row["resource"], conditions, int(row["count"]), str(row["test"]))


# --- a stage's resources by role --------------------------------------------------------------------
def stage_roles(stage: str, names: StageNames | None = None) -> dict[str, str]:
    """Every resource of ``stage`` the bridge or the operator touches, by role → name."""
    names = names or StageNames.of(stage)
    roles = {"table": names.table, "prefix": names.prefix, "dashboard": dashboard_name(stage)}
    for kind in QUEUES:
        roles[f"queue:{kind}"], roles[f"dlq:{kind}"] = names.queues(kind)
    return roles


def config_stages() -> list[str]:
    return list(json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text()).get("stages", {}))


def renamer(test_stages: Mapping[str, StageNames]) -> Renamer:
    return Renamer(recorded_names(test_stages), [*config_stages(), *test_stages])


def recorded_names(test_stages: Mapping[str, StageNames]) -> dict[str, str]:
    """name → role, for every name a recorded call may carry: each stage in config.json, the tests'
    stages, and the ALIASES."""
    known: dict[str, str] = {}
    for stage in config_stages():
        known |= {name: role for role, name in stage_roles(stage).items()}
    for stage, names in test_stages.items():
        known |= {name: role for role, name in stage_roles(stage, names).items()}
    for role, aliases in ALIASES.items():
        known |= dict.fromkeys(aliases, role)
    return known


_ARN = re.compile(r"^arn:aws:(?P<service>[^:]+):(?P<region>[^:]*):(?P<account>[^:]*):(?P<rest>.*)$")


class Renamer:
    """A recorded ARN → the same resource's ARN in a deployed stage; None if it is none of a stage's."""

    def __init__(self, known: Mapping[str, str], stages: Iterable[str]) -> None:
        self._role = dict(known)
        alternatives = "|".join(re.escape(stage) for stage in sorted(stages, key=len, reverse=True))
        self._functions = re.compile(rf"^{re.escape(APP_NAME)}-(?:{alternatives})(?P<handler>-[A-Za-z0-9_]+)?$")
        self._prefixes = sorted(
            ((name, role) for name, role in known.items() if role == "prefix"), key=lambda p: -len(p[0])
        )

    def rename(self, resource: str, stage: str) -> str | None:
        if resource == "*":
            return resource
        match = _ARN.match(resource)
        if match is None:
            return None
        service, rest = match["service"], match["rest"]
        target = stage_roles(stage)
        renamed = self._rest(service, rest, target, stage)
        if renamed is None:
            return None
        region = "" if service == "cloudwatch" and rest.startswith("dashboard/") else REGION
        return f"arn:aws:{service}:{region}:{DEFAULT_ACCOUNT}:{renamed}"

    def _name(self, name: str, target: Mapping[str, str], *roles: str) -> str | None:
        role = self._role.get(name) or next((r for r, p in PATTERNS.items() if re.fullmatch(p, name)), None)
        if role is None or not role.startswith(roles):
            return None
        return target[role]

    def _function(self, name: str, stage: str) -> str | None:
        """``rokt-calendar-bridge-<stage>[-<handler>]``, as Chalice names a stage's functions (any handler)."""
        match = self._functions.match(name)
        return None if match is None else f"{APP_NAME}-{stage}{match['handler'] or ''}"

    def _rest(self, service: str, rest: str, target: Mapping[str, str], stage: str) -> str | None:
        kind, _, name = rest.partition("/") if service in {"dynamodb", "cloudwatch"} else rest.partition(":")
        if service == "dynamodb" and kind == "table":
            table, slash, index = name.partition("/")
            renamed = self._name(table, target, "table")
            return None if renamed is None else f"table/{renamed}{slash}{index}"
        if service == "sqs":
            return self._name(rest, target, "queue:", "dlq:")
        if service == "ssm" and rest.startswith("parameter/"):
            return self._parameter(rest.removeprefix("parameter"), target)
        if service == "lambda" and kind == "function":
            renamed = self._function(name, stage)
            return None if renamed is None else f"function:{renamed}"
        if service == "logs" and kind == "log-group" and name.startswith(LAMBDA_LOGS):
            function, colon, stream = name.removeprefix(LAMBDA_LOGS).partition(":")
            renamed = self._function(function, stage)
            return None if renamed is None else f"log-group:{LAMBDA_LOGS}{renamed}{colon}{stream}"
        if service == "cloudwatch" and kind == "dashboard":
            renamed = self._name(name, target, "dashboard")
            return None if renamed is None else f"dashboard/{renamed}"
        if (service == "lambda" and kind == "event-source-mapping") or service == "kms":
            return rest  # nothing of the stage in it
        return None

    def _parameter(self, name: str, target: Mapping[str, str]) -> str | None:
        for prefix, _ in self._prefixes:
            if name.startswith(prefix + "/"):
                return "parameter" + target["prefix"] + name[len(prefix) :]
        isolated = re.match(PATTERNS["prefix"] + "/", name)
        if isolated:
            return "parameter" + target["prefix"] + name[isolated.end() - 1 :]
        return None


# --- whose policy -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    path: Path
    document: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.path.relative_to(PROJECT_DIR))

    def allows(self, action: str, resource: str, conditions: Iterable[tuple[str, str]] = ()) -> bool:
        return _permits(self.document, action, resource, conditions)


def _permits(document: Mapping[str, Any], action: str, resource: str, conditions: Iterable[tuple[str, str]]) -> bool:
    result = IAMPolicy(json.dumps(document)).is_action_permitted(
        action, resource, incoming_condition_values=dict(conditions) or None
    )
    return bool(result == PermissionResult.PERMITTED)


class Unverifiable(Exception):
    """A function whose permissions are not in a policy file this proof can read."""


def function_policy(stage: str, function: str, project_dir: Path = PROJECT_DIR) -> Policy:
    """The policy Chalice attaches to ``function``'s role in ``stage``."""
    if function == OPERATOR:
        return Policy(OPERATOR_POLICY, json.loads(OPERATOR_POLICY.read_text()))
    chalice_dir = project_dir / ".chalice"
    disk = json.loads((chalice_dir / "config.json").read_text())
    config = Config(chalice_stage=stage, function_name=function, config_from_disk=disk)
    if not config.manage_iam_role:
        raise Unverifiable(f"{function} in {stage} runs with a role given by ARN ({config.iam_role_arn})")
    if config.autogen_policy:
        raise Unverifiable(f"{function} in {stage} has an autogenerated policy (autogen_policy): set a policy file")
    path = chalice_dir / (config.iam_policy_file or f"policy-{stage}.json")
    return Policy(path, json.loads(path.read_text()))


# --- what AWS itself does with a function's role ---------------------------------------------------
PLATFORM = "(AWS, with the function's role)"


def _chalice_config(stage: str, function: str) -> Config:
    disk = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    return Config(chalice_stage=stage, function_name=function, config_from_disk=disk)


def platform_calls(app: Chalice, functions: Iterable[str], stage: str) -> list[Call]:
    """The calls no botocore client of ours makes but the function's role must allow: Lambda writing the
    function's logs, X-Ray segments where the stage turns tracing on, and each SQS event source mapping
    receiving, deleting and reading the attributes of its queue (the app's own declarations)."""
    calls = []
    for function in functions:
        name = f"{APP_NAME}-{stage}" if function == API_HANDLER else f"{APP_NAME}-{stage}-{function}"
        group = f"arn:aws:logs:{REGION}:{DEFAULT_ACCOUNT}:log-group:{LAMBDA_LOGS}{name}"
        calls += [
            Call(function, "logs:CreateLogGroup", f"{group}:*", test=PLATFORM),
            Call(function, "logs:CreateLogStream", f"{group}:log-stream:*", test=PLATFORM),
            Call(function, "logs:PutLogEvents", f"{group}:log-stream:*", test=PLATFORM),
        ]
        if _chalice_config(stage, function).xray_enabled:
            calls += [Call(function, f"xray:{action}", "*", test=PLATFORM) for action in XRAY_WRITES]
    for source in app.event_sources:
        if isinstance(source, SQSEventConfig) and source.queue:
            queue = f"arn:aws:sqs:{REGION}:{DEFAULT_ACCOUNT}:{source.queue}"
            calls += [Call(source.name, action, queue, test=PLATFORM) for action in SQS_POLLING]
    return calls


XRAY_WRITES = ("PutTraceSegments", "PutTelemetryRecords")
SQS_POLLING = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


# --- the verdict ------------------------------------------------------------------------------------
@dataclass
class Verdict:
    refused: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)  # functions no recorded call came from
    unverifiable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def problems(self) -> list[str]:
        return self.refused + self.unused + self.unmapped + self.silent + self.unverifiable

    def report(self) -> list[str]:
        lines = [f"IAM proof: {self.checked} recorded (caller, action, resource) checked against dev and prod"]
        for title, found in (
            ("not allowed by the policy the caller runs with", self.refused),
            ("granted, but no recorded call uses it", self.unused),
            ("a resource the proof cannot place in a stage", self.unmapped),
            ("a caller with no recorded call", self.silent),
            ("a caller whose permissions cannot be checked", self.unverifiable),
        ):
            if found:
                lines.append(f"{len(found)} {title}:")
                lines.extend(f"  {line}" for line in found)
        lines.extend(self.notes)
        return lines


def callers_of(call: Call) -> list[str]:
    return call.who.split(AMBIGUOUS)


Used = tuple[str, str, tuple[tuple[str, str], ...]]  # action, resource in the stage, conditions


def judge(
    calls: Iterable[Call],
    functions: Iterable[str],
    test_stages: Mapping[str, StageNames],
    *,
    complete: bool,
    stages: Iterable[str] = DEPLOYED_STAGES,
    policy_of: Callable[[str, str], Policy] = function_policy,
    platform: Callable[[str], list[Call]] = lambda stage: [],
) -> Verdict:
    """Every call against its caller's policy in every stage; with a ``complete`` run, also every grant
    against the calls (least privilege) and every caller against having made a call at all."""
    calls = sorted(calls)
    callers = [*functions, OPERATOR]
    judged = [c for c in calls if c.who != OUTSIDE]
    verdict = Verdict(checked=len({(c.who, c.action, c.resource) for c in judged}))
    names = renamer(test_stages)
    for stage in stages:
        for name, (policy, users) in _policies(stage, callers, policy_of, verdict).items():
            mine = [c for c in [*judged, *platform(stage)] if set(callers_of(c)) & set(users)]
            used = _check_calls(stage, name, policy, mine, names, verdict)
            if complete:
                verdict.unused.extend(
                    f"{stage}  {name} [{sid}]  {action} on {resource}  — callers: {', '.join(users)}"
                    for sid, action, resource in unused_grants(policy.document, used)
                )
    if complete:
        made = {who for call in judged for who in callers_of(call)}
        verdict.silent.extend(
            f"{caller}: its code never ran through its entry point with AWS calls"
            for caller in callers
            if caller not in made
        )
    verdict.unmapped = sorted(set(verdict.unmapped))
    verdict.notes.extend(_not_judged(calls, judged, complete=complete))
    return verdict


def _policies(
    stage: str, callers: Iterable[str], policy_of: Callable[[str, str], Policy], verdict: Verdict
) -> dict[str, tuple[Policy, list[str]]]:
    """Each policy file of ``stage`` with the callers that run with it."""
    policies: dict[str, tuple[Policy, list[str]]] = {}
    for caller in callers:
        try:
            policy = policy_of(stage, caller)
        except (Unverifiable, FileNotFoundError) as exc:
            verdict.unverifiable.append(f"{stage}  {caller}: {exc}")
            continue
        policies.setdefault(policy.name, (policy, []))[1].append(caller)
    return policies


def _check_calls(
    stage: str, name: str, policy: Policy, calls: Iterable[Call], names: Renamer, verdict: Verdict
) -> list[Used]:
    """Refused and unplaceable calls into ``verdict``; returns what the calls use in ``stage``."""
    used: list[Used] = []
    for call in calls:
        resource = None if call.resource == UNKNOWN_RESOURCE else names.rename(call.resource, stage)
        if resource is None:
            verdict.unmapped.append(f"{stage}  {call.who}  {call.action}  {call.resource}  (in {call.test})")
            continue
        used.append((call.action, resource, call.conditions))
        if not policy.allows(call.action, resource, call.conditions):
            verdict.refused.append(f"{stage}  {call.who}  {call.action}  {resource}  — {name}; first in {call.test}")
    return used


def _not_judged(calls: Iterable[Call], judged: Iterable[Call], *, complete: bool) -> list[str]:
    notes = []
    outside = {(c.action, c.resource) for c in calls if c.who == OUTSIDE} - {(c.action, c.resource) for c in judged}
    if outside:
        notes.append(
            f"not judged: {len(outside)} (action, resource) made only by the bridge's code called directly by a "
            "test, outside any entry point:"
        )
        notes.extend(f"  {action}  {resource}" for action, resource in sorted(outside))
    if not complete:
        notes.append("least privilege not judged: a partial run (selected tests, or a test failed)")
    return notes


def unused_grants(
    document: Mapping[str, Any], used: Iterable[tuple[str, str, tuple[tuple[str, str], ...]]]
) -> list[tuple[str, str, str]]:
    """Each (statement, action, resource) an Allow grants that none of ``used`` needs."""
    used = list(used)
    unused = []
    statements = document["Statement"]
    for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
        if statement.get("Effect") != "Allow":
            continue
        sid = statement.get("Sid", f"#{index}")
        for action in _listed(statement["Action"]):
            for resource in _listed(statement["Resource"]):
                alone = {"Version": "2012-10-17", "Statement": [{**statement, "Action": action, "Resource": resource}]}
                if not any(_permits(alone, a, r, c) for a, r, c in used):
                    unused.append((sid, action, resource))
    return unused


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


__all__ = ["API_HANDLER", "OPERATOR", "Call", "Verdict", "function_policy", "judge"]
