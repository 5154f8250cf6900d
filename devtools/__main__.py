"""``python -m devtools <command>``: the local stack, the Rokt sandbox and operator commands."""

from devtools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
