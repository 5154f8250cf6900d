"""Lambda's bootstrap in miniature: runs as a script in a fresh interpreter (``python -I -S -B``) whose
path holds only the unzipped deployment package (``/var/task``) and the Lambda runtime's own
libraries (boto3/botocore), then the standard library. Imports nothing but the standard library
before it imports the handler's module.

    python -I -S -B lambda_bootstrap.py <task root> <runtime dir> [--no-audit]

As Lambda does: the handler is ``$_HANDLER`` (``app.app``, ``app.deliver_queued``, ...); its module is
imported once (the init phase), then each invocation calls ``handler(event, context)`` with a context
object shaped like Lambda's. Invocations arrive one JSON line at a time on stdin; each answer is one
JSON line on stdout. The function's own output (its log lines and EMF metrics, which Lambda sends to
CloudWatch) goes to stderr, so it never mixes with the answers.

Reported to the caller: the init (import seconds, or the error that stopped it), each invocation's
result or error (Lambda's ``errorType``/``errorMessage``/``stackTrace``), its seconds, the seconds
since this interpreter started and the process's CPU seconds so far; and on request
(``{"command": "report"}``) where every loaded module came from, every module looked up (found or
not) and by which file, what the init did that is IO (network, processes, sleeps, files written or
opened outside the package, the runtime and the standard library), every address the process
connected to, and every file of the package compiled from source (the ``compile`` audit event, with
the phase: none when the package's bytecode was used). ``--no-audit`` leaves the audit hook out (for
timing only: the hook costs a little on every import).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:
    from types import FrameType

# Audit events that are IO no import may do (Lambda's init has 10 s and no request to serve yet).
NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.sendto",
        "socket.sendmsg",
        "http.client.connect",
        "urllib.Request",
    }
)
PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.fork", "os.spawn"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
IMPORTLIB_DIR = os.path.dirname(importlib.__file__) + os.sep


class Recorder:
    """An audit hook for the IO done while ``phase`` is "init" and every address connected to; and a
    meta path finder (first on ``sys.meta_path``, finding nothing itself) that notes every module
    looked up, found or not, and the file whose code asked for it."""

    def __init__(self, allowed_roots: list[str], task_root: str) -> None:
        self.allowed_roots = tuple(os.path.realpath(root) + os.sep for root in allowed_roots)
        self.task_root = os.path.realpath(task_root) + os.sep
        self.phase = "start"
        self.lookups: list[list[str]] = []
        self.init_io: list[str] = []
        self.connects: list[str] = []
        self.compiled: list[list[str]] = []  # [phase, path in the package] of each source compiled

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.connect":
            self.connects.append(repr(args[1]))
        if event == "compile" and isinstance(args[1], str) and os.path.isabs(args[1]):  # not "<string>"
            path = os.path.realpath(args[1])
            if path.startswith(self.task_root):
                self.compiled.append([self.phase, os.path.relpath(path, self.task_root)])
        if self.phase != "init":
            return
        if event in NETWORK_EVENTS or event in PROCESS_EVENTS or event == "time.sleep":
            self.init_io.append(f"{event} {_short(args)}")
        elif event == "open":
            self._opened(args)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib") or
                                     frame.f_code.co_filename.startswith(IMPORTLIB_DIR)):  # fmt: skip
            frame = frame.f_back
        self.lookups.append([fullname, frame.f_code.co_filename if frame is not None else ""])

    def _opened(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = args[0], args[1], args[2]
        if not isinstance(path, str):
            return  # a file descriptor
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
        outside = not os.path.realpath(path).startswith(self.allowed_roots)
        if writing or outside:
            self.init_io.append(f"open {path!r} mode={mode!r} flags={flags!r}")


def _short(args: tuple[Any, ...]) -> str:
    text = repr(args)
    return text if len(text) <= 200 else text[:200] + "…"


class LambdaContext:
    """The context object Lambda's Python runtime passes to a handler."""

    def __init__(self, remaining_ms: int, request_id: str) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        region = os.environ["AWS_REGION"]
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        self.aws_request_id = request_id
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def _error(exc: BaseException) -> dict[str, Any]:
    """Lambda's answer for a handler that raised."""
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _origins() -> dict[str, str]:
    return {
        name: str(getattr(module, "__file__", None) or "")
        for name, module in sorted(sys.modules.items())
        if module is not None and getattr(module, "__file__", None)
    }


def main() -> int:
    task_root, runtime_dir = sys.argv[1], sys.argv[2]
    answers, sys.stdout = sys.stdout, sys.stderr  # the function's output is not the protocol's
    initial_path = list(sys.path)
    sys.path[:0] = [task_root, runtime_dir]
    recorder = Recorder([task_root, runtime_dir, sys.base_prefix, sys.prefix], task_root)
    if "--no-audit" not in sys.argv[3:]:
        sys.addaudithook(recorder)
        sys.meta_path.insert(0, recorder)

    def say(message: dict[str, Any]) -> None:
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    module_name, _, handler_name = os.environ["_HANDLER"].rpartition(".")
    recorder.phase = "init"
    started = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), handler_name)
    except BaseException as exc:  # Runtime.ImportModuleError / Runtime.HandlerNotFound, as Lambda reports it
        recorder.phase = "invoke"
        say({"init": {"error": _error(exc), "io": recorder.init_io}})
        return 1
    recorder.phase = "invoke"
    say(
        {
            "init": {
                "seconds": time.perf_counter() - started,
                "sinceStart": time.perf_counter() - STARTED,
                "io": recorder.init_io,
                "initialPath": initial_path,
                "flags": {"isolated": sys.flags.isolated, "no_site": sys.flags.no_site},
                "python": f"python{sys.version_info.major}.{sys.version_info.minor}",
            }
        }
    )
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("command") == "report":
            say({"report": {"modules": _origins(), "loaded": sorted(sys.modules), "lookups": recorder.lookups,
                            "connects": recorder.connects, "compiled": recorder.compiled}})  # fmt: skip
            continue
        context = LambdaContext(int(request.get("remainingMs", 30_000)), str(request.get("requestId") or uuid.uuid4()))
        began = time.perf_counter()
        try:
            result = handler(request["event"], context)
        except Exception as exc:
            say({"error": _error(exc), "seconds": time.perf_counter() - began})
            continue
        seconds, since_start, cpu = time.perf_counter() - began, time.perf_counter() - STARTED, time.process_time()
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:  # Lambda cannot serialise the answer either
            say({"error": {**_error(exc), "errorType": "Runtime.MarshalError"}, "seconds": seconds})
            continue
        say({"result": result, "seconds": seconds, "sinceStart": since_start, "cpuSeconds": cpu})
    return 0


if __name__ == "__main__":
    sys.exit(main())
