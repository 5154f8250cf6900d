"""``python -m bridgectl``: the same as the ``bridgectl`` console script."""

from bridgectl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
