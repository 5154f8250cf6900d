"""Records every AWS call the bridge's Lambda functions and the operator CLI make while the tests run.

Who made a call:

- **a Lambda function**: the app's own entry points are tagged — a Chalice middleware first in line for
  the API handler (every route is one function, ``api_handler``), and one first in each event source
  handler's chain (``deliver_queued``, ``sync_subscribers``, and any handler app.py adds, such as a
  schedule) — which set a context variable for the invocation. A call made on another thread (the sync
  consumer reads Rokt on a pool) belongs to the one function being invoked if that thread runs the
  bridge's code (chalicelib/ or app.py on its stack); with two functions in flight it is recorded for
  both, marked ambiguous.
- **the operator**: bridgectl's code on the calling thread's stack (``cli.main`` or a command's module
  called by a test).
- **the bridge's code called directly by a test**, outside any entry point (``bridge.sync_consumer()
  .handle(...)``): recorded as ``OUTSIDE``, reported, not judged.
- anything else — the tests' own setup, moto, the harnesses — is not recorded.

The hook is botocore's ``before-parameter-build`` event, added to ``botocore.handlers.BUILTIN_HANDLERS``
so that every botocore session created afterwards (boto3's default session, the tests' sessions)
registers it, as it registers botocore's own handlers; the parameters it sees are the call's own.
"""

from __future__ import annotations

import contextvars
import itertools
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.handlers
from chalice.app import EventSourceHandler

from tests.iam.calls import DEFAULT_ACCOUNT, IamCall, iam_calls

if TYPE_CHECKING:
    from collections.abc import Callable

    from botocore.model import OperationModel
    from chalice.app import Chalice

PROJECT_DIR = Path(__file__).resolve().parents[2]
API_HANDLER = "api_handler"  # Chalice's name for the function serving every route
OPERATOR = "operator"
OUTSIDE = "outside-any-handler"
AMBIGUOUS = "+"  # joins the functions in flight when a pool thread's call cannot be told apart
EVENT = "before-parameter-build"

_BRIDGE_CODE = (str(PROJECT_DIR / "chalicelib") + "/", str(PROJECT_DIR / "app.py"))
_OPERATOR_CODE = (str(PROJECT_DIR / "bridgectl") + "/",)

Key = tuple[str, str, str, tuple[tuple[str, str], ...]]  # who, action, resource, conditions


class Recorder:
    """Every (who, IAM call) seen, with how often and the first test that made it."""

    def __init__(self) -> None:
        self.current: contextvars.ContextVar[str | None] = contextvars.ContextVar("iam_function", default=None)
        self.calls: Counter[Key] = Counter()
        self.first_seen: dict[Key, str] = {}
        self.test = ""  # the test running now (set by the plugin)
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    # --- who is calling ---------------------------------------------------------------------------
    def invocation(self, function: str) -> Callable[[Any, Callable[[Any], Any]], Any]:
        """A Chalice middleware marking everything its handler does as ``function``'s."""

        def middleware(event: Any, get_response: Callable[[Any], Any]) -> Any:
            token = self.current.set(function)
            with self._lock:
                self._in_flight[function] += 1
            try:
                return get_response(event)
            finally:
                with self._lock:
                    self._in_flight[function] -= 1
                self.current.reset(token)

        return middleware

    def who(self) -> str | None:
        function = self.current.get()
        if function is not None:
            return function
        code = _stack_files()
        if any(name.startswith(_OPERATOR_CODE) for name in code):
            return OPERATOR
        if not any(name.startswith(_BRIDGE_CODE) for name in code):
            return None
        with self._lock:
            in_flight = sorted(name for name, count in self._in_flight.items() if count > 0)
        return AMBIGUOUS.join(in_flight) if in_flight else OUTSIDE

    # --- the botocore hook ------------------------------------------------------------------------
    def before_parameter_build(self, params: dict[str, Any], model: OperationModel, context: Any, **_: Any) -> None:
        who = self.who()
        if who is None:
            return
        region = (context or {}).get("client_region") or "us-east-1"
        for call in iam_calls(model.service_model.service_name, model.name, params, region):
            self.add(who, call)

    def add(self, who: str, call: IamCall, count: int = 1, test: str | None = None) -> None:
        key = (who, call.action, call.resource, call.conditions)
        with self._lock:
            self.calls[key] += count
            self.first_seen.setdefault(key, test if test is not None else self.test)

    # --- across processes -------------------------------------------------------------------------
    def export(self) -> list[dict[str, Any]]:
        return [
            {
                "who": who,
                "action": action,
                "resource": resource,
                "conditions": [list(pair) for pair in conditions],
                "count": count,
                "test": self.first_seen[(who, action, resource, conditions)],
            }
            for (who, action, resource, conditions), count in sorted(self.calls.items())
        ]

    def merge(self, exported: list[dict[str, Any]]) -> None:
        for row in exported:
            conditions = tuple((str(k), str(v)) for k, v in row["conditions"])
            self.add(row["who"], IamCall(row["action"], row["resource"], conditions), row["count"], row["test"])


def _stack_files() -> list[str]:
    frame = sys._getframe(2)
    files = []
    while frame is not None:
        files.append(frame.f_code.co_filename)
        frame = frame.f_back  # type: ignore[assignment]
    return files


def install(recorder: Recorder, app: Chalice) -> Callable[[], None]:
    """Start recording: the botocore hook for sessions created from now on, and the app's entry points
    tagged. Returns what undoes it."""
    handler = (EVENT, recorder.before_parameter_build)
    botocore.handlers.BUILTIN_HANDLERS.append(handler)
    api = (recorder.invocation(API_HANDLER), "http")
    app.middleware_handlers.insert(0, api)  # outermost: the app's own middleware runs inside it
    for name, entry in app.handler_map.items():
        if isinstance(entry, EventSourceHandler):
            if entry.handler is not None:
                raise RuntimeError(f"{name} was invoked before the IAM recorder was installed")
            # Chalice builds a handler's chain on its first invocation, from this (lazy) sequence.
            entry.middleware_handlers = itertools.chain([recorder.invocation(name)], entry.middleware_handlers)  # type: ignore[assignment]

    def uninstall() -> None:
        """The event source tags stay: outside a test run they only set a context variable."""
        botocore.handlers.BUILTIN_HANDLERS.remove(handler)
        app.middleware_handlers.remove(api)

    return uninstall


def lambda_functions(app: Chalice) -> list[str]:
    """The Lambda functions `chalice deploy` makes from ``app``, by Chalice's names for them."""
    names = [API_HANDLER] if app.routes else []
    return names + sorted(name for name, entry in app.handler_map.items() if isinstance(entry, EventSourceHandler))


__all__ = ["DEFAULT_ACCOUNT", "OPERATOR", "OUTSIDE", "Recorder", "install", "lambda_functions"]
