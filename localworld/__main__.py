"""``python -m localworld <command>``: the local stack, the Rokt sandbox and operator commands."""

from localworld.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
