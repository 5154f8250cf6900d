"""The IAM proof as a pytest plugin (registered by tests/conftest.py): it records while the whole suite
runs, and judges once every test has run — so the proof covers every path any test drives, and cannot
run before the tests that feed it.

With pytest-xdist each worker records its own tests and hands its calls to the controller through
``workeroutput``; the controller merges them (``pytest_testnodedown``) and judges at session finish.
Without xdist the one process does both. The merged calls and the verdict are written to
``.pytest_cache/d/iam-proof/`` (``calls.json``, ``verdict.txt``). Any call refused by its caller's policy
fails the session, whatever tests ran; the other direction — a grant no call uses, a function no call
came from — is judged only when the run is complete: the whole of tests/, nothing deselected, no test
failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import app as bridge_app
from stage.names import StageNames
from tests.iam.proof import Call, judge, platform_calls
from tests.iam.recorder import PROJECT_DIR, Recorder, install, lambda_functions

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.iam.proof import Verdict

WORKER_KEY = "iam_proof"
RECORDER = Recorder()
_state: dict[str, Any] = {"deselected": 0, "workers_partial": False, "verdict": None}


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_controller(config: pytest.Config) -> bool:
    """The xdist controller runs no test: it only merges and judges."""
    return not _is_worker(config) and bool(getattr(config.option, "numprocesses", None))


def pytest_configure(config: pytest.Config) -> None:
    if not _is_controller(config):
        config.add_cleanup(install(RECORDER, bridge_app.app))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    RECORDER.test = item.nodeid
    try:
        return (yield)
    finally:
        RECORDER.test = ""


def pytest_deselected(items: list[pytest.Item]) -> None:
    _state["deselected"] += len(items)


def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {}).get(WORKER_KEY)
    if output is None:
        _state["workers_partial"] = True  # a worker that died took its calls with it
        return
    exported = json.loads(output)
    RECORDER.merge(exported["calls"])
    _state["deselected"] += exported["deselected"]


def _complete(session: pytest.Session) -> bool:
    config = session.config
    tests_dir = (PROJECT_DIR / "tests").resolve()
    roots = {Path(str(arg)).resolve() for arg in config.args}
    whole = roots <= {tests_dir, PROJECT_DIR.resolve()} and all("::" not in str(arg) for arg in config.args)
    return (
        whole
        and not _state["deselected"]
        and not _state["workers_partial"]
        and session.testsfailed == 0
        and not session.shouldfail
        and not session.shouldstop
    )


TEST_STAGE = "test"  # tests/conftest.py: the Settings every functional test builds the bridge from


def _test_stages() -> dict[str, StageNames]:
    from tests.conftest import PREFIX, TABLE

    return {TEST_STAGE: StageNames(TEST_STAGE, PREFIX, TABLE, "http://127.0.0.1", False, queue_stage=TEST_STAGE)}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config):
        calls = RECORDER.export()
        config.workeroutput[WORKER_KEY] = json.dumps(  # type: ignore[attr-defined]
            {"calls": calls, "deselected": _state["deselected"]}
        )
        return
    if exitstatus in {pytest.ExitCode.INTERRUPTED, pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR}:
        return
    recorded = [Call.of(row) for row in RECORDER.export()]
    if not recorded and not _complete(session):
        return  # nothing here touched AWS through the bridge or the operator: nothing to judge
    functions = lambda_functions(bridge_app.app)
    verdict = judge(
        recorded,
        functions,
        _test_stages(),
        complete=_complete(session),
        platform=lambda stage: platform_calls(bridge_app.app, functions, stage),
    )
    _state["verdict"] = verdict
    if getattr(config, "cache", None) is not None:
        out = config.cache.mkdir("iam-proof")
        (out / "calls.json").write_text(json.dumps(RECORDER.export(), indent=1) + "\n")
        (out / "verdict.txt").write_text("\n".join(verdict.report()) + "\n")
        _state["out"] = out
    if verdict.problems:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    verdict: Verdict | None = _state["verdict"]
    if verdict is None:
        return
    failed = bool(verdict.problems)
    terminalreporter.section("IAM proof (tests/iam)", sep="=", red=failed, green=not failed, bold=True)
    for line in verdict.report():
        terminalreporter.write_line(line)
    if "out" in _state:
        terminalreporter.write_line(f"calls and verdict: {_state['out']}")
