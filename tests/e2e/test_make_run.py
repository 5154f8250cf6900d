"""`make run`'s command: the whole stack comes up, answers, and Ctrl-C stops every process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from localworld.localstack import free_port
from stage.project import PROJECT_DIR

pytestmark = pytest.mark.e2e


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
    except requests.RequestException:
        return False
    return True


def test_run_starts_everything_and_ctrl_c_stops_everything():  # even pressed twice
    bridge, moto, sandbox, braze = free_port(), free_port(), free_port(), free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "localworld", "run", "--no-autoreload", "--port", str(bridge),
         "--moto-port", str(moto), "--sandbox-port", str(sandbox), "--braze-port", str(braze)],
        cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # as a shell's background job starts it: with SIGINT ignored, which Ctrl-C handling must survive
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )  # fmt: skip
    urls = [
        f"http://127.0.0.1:{bridge}/health",
        f"http://127.0.0.1:{moto}/",
        f"http://127.0.0.1:{sandbox}/_sandbox/health",
        f"http://127.0.0.1:{braze}/_sandbox/health",
    ]
    try:
        printed = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = run.stdout.readline() if run.stdout else ""
            printed.append(line)
            if "Ctrl-C stops everything." in line or (not line and run.poll() is not None):
                break
        assert any("curl -sS -X POST" in line for line in printed), "".join(printed)
        assert any("/_sandbox/subscribe" in line for line in printed), "".join(printed)
        assert any("localworld braze-send" in line for line in printed), "".join(printed)
        assert all(answers(url) for url in urls)

        os.kill(run.pid, signal.SIGINT)
        time.sleep(0.05)  # an impatient second Ctrl-C, while the stack is stopping
        with contextlib.suppress(ProcessLookupError):
            os.kill(run.pid, signal.SIGINT)
        run.wait(timeout=30)
        time.sleep(0.5)

        assert [url for url in urls if answers(url)] == []
    finally:
        if run.poll() is None:  # SIGTERM still runs the stack's own cleanup; SIGKILL would orphan it
            run.terminate()
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=10)
        if run.stdout is not None:
            run.stdout.close()
