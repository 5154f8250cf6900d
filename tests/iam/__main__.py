"""``python -m tests.iam``: judge the calls the last pytest run recorded again (after editing a policy),
without running the tests: ``.pytest_cache/d/iam-proof/calls.json``, taken as a complete run."""

from __future__ import annotations

import json
import sys

import app as bridge_app
from tests.iam.plugin import _test_stages
from tests.iam.proof import Call, judge, platform_calls
from tests.iam.recorder import PROJECT_DIR, lambda_functions


def main() -> int:
    calls = [Call.of(row) for row in json.loads((PROJECT_DIR / ".pytest_cache/d/iam-proof/calls.json").read_text())]
    functions = lambda_functions(bridge_app.app)
    verdict = judge(
        calls,
        functions,
        _test_stages(),
        complete=True,
        platform=lambda stage: platform_calls(bridge_app.app, functions, stage),
    )
    print("\n".join(verdict.report()))
    return 1 if verdict.problems else 0


if __name__ == "__main__":
    sys.exit(main())
