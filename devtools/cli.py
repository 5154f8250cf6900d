"""Command line for developers and operators. Every command has ``--help``."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import TYPE_CHECKING

from devtools.localstack import LocalStack, Ports, sample_curl
from devtools.rokt_sandbox import RoktSandbox

if TYPE_CHECKING:
    from collections.abc import Sequence


def _cmd_sandbox(args: argparse.Namespace) -> int:
    sandbox = RoktSandbox(host=args.host, port=args.port, token_ttl=args.token_ttl, verbose=args.verbose)
    print(f"Rokt sandbox on {sandbox.url} (token lifetime {args.token_ttl:g} s)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        sandbox.serve_forever()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    stack = LocalStack(
        Ports(moto=args.moto_port, sandbox=args.sandbox_port, bridge=args.port), autoreload=not args.no_autoreload
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        print("\nThe bridge is up. Send the seed's sample webhook:\n", flush=True)
        print(sample_curl(stack.bridge_url), "\n", flush=True)
        print(f"Stored events:   curl -s {stack.sandbox_url}/_sandbox/events", flush=True)
        print(
            f"Calendar feed:   curl -s {stack.sandbox_url}/_sandbox/calendar/06423672-b6ba-4536-aa36-70788a7a0a36.ics",
            flush=True,
        )
        print("Ctrl-C stops everything.", flush=True)
        while all(p.poll() is None for p in stack.processes):
            time.sleep(0.5)
        print("a local process exited; stopping the stack", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        stack.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser("sandbox", help="serve the local Rokt Calendar API sandbox")
    sandbox.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    sandbox.add_argument("--token-ttl", type=float, default=300.0, help="token lifetime in seconds (default 300)")
    sandbox.add_argument("--verbose", action="store_true", help="log every request")
    sandbox.set_defaults(func=_cmd_sandbox)

    run = commands.add_parser("run", help="start moto server, the sandbox and chalice local")
    run.add_argument("--port", type=int, default=8000, help="bridge port (default 8000)")
    run.add_argument("--moto-port", type=int, default=5050, help="AWS emulator port (default 5050)")
    run.add_argument("--sandbox-port", type=int, default=8081, help="Rokt sandbox port (default 8081)")
    run.add_argument("--no-autoreload", action="store_true", help="do not restart the bridge on code changes")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
