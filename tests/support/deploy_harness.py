"""What the deploy e2e (tests/e2e/test_deploy.py) needs around the real `chalice deploy`: a copy of the
project to deploy from, the documented commands in one table, an environment that can reach loopback
only, the requirements as a wheelhouse packed from this environment (Chalice's packager runs
``pip download``; here it never needs an index), and the two shims moto server needs.

The first: moto's ``ImportRestApi``/``PutRestApi`` take only OpenAPI 3 and read ``info.description``;
Chalice sends Swagger 2 without one. :func:`patch_moto_rest_api_import` converts the document inside the
in-process moto server before moto sees it (:func:`swagger2_to_openapi3`), and has moto validate the
result as OpenAPI 3. It covers the version tag, ``info.description``, ``definitions`` and
``securityDefinitions`` (moved under ``components`` with their ``$ref``\\ s), and per operation
``consumes``/``produces``, response ``schema`` and path parameters' inline types; moto then builds the
resources, methods and Lambda proxy integrations from the paths as it would for any OpenAPI 3 import.
A second, smaller one: moto filters ``ListEventSourceMappings(FunctionName=...)`` by the exact string
the mapping was created with, and Chalice creates mappings with the function's ARN, so asking by name
(as the operator CLI does, and AWS allows) finds nothing; :func:`patch_moto_event_source_lookup` makes
moto match a name or an ARN to the function, as AWS does.

What only a real account shows: that API Gateway accepts Chalice's Swagger 2 as sent, that a request
through the API reaches the function (moto does not run Lambda code here: the e2e's dry-run webhook
goes to the same code under `chalice local`), that the Lambda runtime imports the package, that IAM
grants are enough (moto does not enforce them), X-Ray, and that the event sources poll and honour
``ReportBatchItemFailures``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import Requirement

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import pytest

BIN = Path(sys.executable).parent

# The documented deploy (docs/deploy.md, path A), one line per command: renaming a command is a
# one-line change here. The operator CLI takes the stage before the command (see ``operator``).
OPERATOR_CLI = [sys.executable, "-m", "bridgectl"]  # the same as the `bridgectl` console script
CHALICE = [str(BIN / "chalice")]
BOOTSTRAP = ("stage", "bootstrap")
SET_ROKT_CREDENTIALS = ("secrets", "set", "rokt-credentials")  # client id, secret on stdin
ADD_WEBHOOK_SECRET = ("secrets", "add", "webhook-secret")  # the secret on stdin
DEPLOY = [*CHALICE, "deploy"]
AFTER_DEPLOY = (("stage", "enable-partial-batch"), ("stage", "put-dashboard"))
DOCTOR = ("stage", "doctor")
DELETE = [*CHALICE, "delete"]
CHALICE_LOCAL = [*CHALICE, "local", "--no-autoreload"]

# What a deploy is made from: the runtime, its stage definition, and the operator CLI, which reads the
# stage definition of the project it lives in (so it is copied along with it).
PROJECT_PARTS = ("app.py", "chalicelib", ".chalice", "requirements.txt", "stage", "bridgectl")
CHALICE_STATE = ("deployed", "deployments", "venv")  # what chalice writes under .chalice/: never copied


def operator(stage: str, *command: str) -> list[str]:
    """``bridgectl --stage <stage> <command...>``, as the deploy page shows it."""
    return [*OPERATOR_CLI, "--stage", stage, *command]


def copy_project(source: Path, target: Path, stage: str, overrides: Mapping[str, str]) -> Path:
    """``target`` holds the parts of ``source`` a deploy uses, with ``overrides`` applied to ``stage``'s
    environment variables, so `chalice deploy` writes its records there and the checkout stays clean."""
    target.mkdir(parents=True, exist_ok=True)
    for part in PROJECT_PARTS:
        origin = source / part
        if origin.is_dir():
            shutil.copytree(origin, target / part, ignore=shutil.ignore_patterns("__pycache__", *CHALICE_STATE))
        else:
            shutil.copy2(origin, target / part)
    config_file = target / ".chalice" / "config.json"
    config = json.loads(config_file.read_text())
    variables = config["stages"][stage].setdefault("environment_variables", {})
    variables.update(overrides)
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    return target


def loopback_only_environment(moto_url: str, wheelhouse: Path, closed_port: int) -> dict[str, str]:
    """Our environment with AWS pointed at moto (every service, through ``AWS_ENDPOINT_URL``, which
    botocore honours from 1.31), made-up credentials and no profile or config files, any other host
    sent to a closed loopback port through the proxy variables (a request leaving the machine fails at
    once), and pip resolving the requirements from ``wheelhouse`` alone."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "PIP_")) and name.lower() not in ("http_proxy", "https_proxy", "no_proxy")
    }
    proxy = f"http://127.0.0.1:{closed_port}"
    env.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "deploy-e2e",
            "AWS_SECRET_ACCESS_KEY": "deploy-e2e",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "HTTP_PROXY": proxy,
            "HTTPS_PROXY": proxy,
            "NO_PROXY": "127.0.0.1,localhost",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(wheelhouse),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    return env


def wheelhouse(requirements: Path, target: Path) -> Path:
    """Wheels of ``requirements`` and their dependencies, packed from the distributions installed in
    this environment (the dev requirements include the runtime's, at the same pins), so Chalice's
    ``pip download`` resolves them without an index. Returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    pending = [Requirement(line) for line in _requirement_lines(requirements)]
    packed: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = _normalized(requirement.name)
        if name in packed:
            continue
        packed.add(name)
        found = distribution(requirement.name)
        if not requirement.specifier.contains(found.version, prereleases=True):
            raise RuntimeError(f"{requirement} is wanted but {found.version} is installed: run `make install`")
        _pack(found, target)
        for line in found.requires or []:
            needed = Requirement(line)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                pending.append(needed)
    return target


def _requirement_lines(requirements: Path) -> Iterator[str]:
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            yield line


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _pack(found: Any, target: Path) -> Path:
    """One installed distribution back into a wheel: its own files (not scripts or bytecode), its
    metadata, and a RECORD listing just those."""
    tag = next(
        line.split(":", 1)[1].strip() for line in found.read_text("WHEEL").splitlines() if line.startswith("Tag:")
    )
    if not tag.endswith("-any") and "linux" not in tag:
        raise RuntimeError(f"{found.metadata['Name']} is installed for {tag}, not Lambda's Linux: run this on Linux")
    wheel = target / f"{_normalized(found.metadata['Name'])}-{found.version}-{tag}.whl"
    files = [f for f in found.files if not str(f).startswith("..") and "__pycache__" not in f.parts]
    record = next(f for f in files if f.name == "RECORD" and f.parent.name.endswith(".dist-info"))
    kept = {str(f) for f in files}
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            if file != record:
                archive.write(found.locate_file(file), str(file))
        lines = [line for line in found.read_text("RECORD").splitlines() if line.split(",", 1)[0] in kept]
        archive.writestr(str(record), "\n".join(lines) + "\n")
    return wheel


SCHEMA_KEYS = ("type", "format", "items", "enum", "default", "pattern")  # a Swagger 2 parameter's schema, inline


def swagger2_to_openapi3(document: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3 form of the Swagger 2 document Chalice builds, as far as that document goes."""
    converted: dict[str, Any] = _refs_to_components(copy.deepcopy(dict(document)))
    converted.pop("swagger", None)
    converted.pop("schemes", None)
    converted["openapi"] = "3.0.1"
    converted["info"] = {"description": "", **converted.get("info", {})}
    components = {
        "schemas": converted.pop("definitions", {}),
        "securitySchemes": converted.pop("securityDefinitions", {}),
    }
    converted["components"] = {key: value for key, value in components.items() if value}
    for operations in converted.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            produces = operation.pop("produces", ["application/json"])
            operation.pop("consumes", None)
            for parameter in operation.get("parameters", []):
                parameter["schema"] = {key: parameter.pop(key) for key in SCHEMA_KEYS if key in parameter}
            for response in operation.get("responses", {}).values():
                if "schema" in response:
                    schema = response.pop("schema")
                    response["content"] = {media: {"schema": schema} for media in produces}
    return converted


def _refs_to_components(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace("#/definitions/", "#/components/schemas/")
            if key == "$ref" and isinstance(value, str)
            else _refs_to_components(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_refs_to_components(item) for item in node]
    return node


def patch_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both shims (see the module docstring), on the moto server running in this process."""
    patch_moto_rest_api_import(monkeypatch)
    patch_moto_event_source_lookup(monkeypatch)


def patch_moto_event_source_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ListEventSourceMappings(FunctionName=name or ARN)`` finds the function's mappings however they
    were created."""
    from moto.awslambda.exceptions import UnknownFunctionException
    from moto.awslambda.models import LambdaBackend

    original = LambdaBackend.list_event_source_mappings

    def listing(self: Any, event_source_arn: str, function_name: str) -> Any:
        if not function_name:
            return original(self, event_source_arn, function_name)
        try:
            function_arn = self.get_function(function_name).function_arn
        except UnknownFunctionException:
            return original(self, event_source_arn, function_name)
        return [m for m in original(self, event_source_arn, "") if m.function_arn == function_arn]

    monkeypatch.setattr(LambdaBackend, "list_event_source_mappings", listing)


def patch_moto_rest_api_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the in-process moto server take Chalice's Swagger 2 on import and put (see the module),
    and validate what the conversion made as OpenAPI 3 (moto's ``failonwarnings``), so a conversion
    that hides a broken document fails the deploy."""
    from moto.apigateway.models import APIGatewayBackend

    original_import, original_put = APIGatewayBackend.import_rest_api, APIGatewayBackend.put_rest_api

    def importing(self: Any, api_doc: dict[str, Any], fail_on_warnings: bool) -> Any:
        if api_doc.get("swagger"):
            return original_import(self, swagger2_to_openapi3(api_doc), True)
        return original_import(self, api_doc, fail_on_warnings)

    def putting(
        self: Any, function_id: str, api_doc: dict[str, Any], fail_on_warnings: bool, mode: str = "merge"
    ) -> Any:
        if api_doc.get("swagger"):
            return original_put(self, function_id, swagger2_to_openapi3(api_doc), True, mode)
        return original_put(self, function_id, api_doc, fail_on_warnings, mode)

    monkeypatch.setattr(APIGatewayBackend, "import_rest_api", importing)
    monkeypatch.setattr(APIGatewayBackend, "put_rest_api", putting)
