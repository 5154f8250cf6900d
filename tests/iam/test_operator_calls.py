"""Operator commands no other test runs against an AWS API, so that the IAM proof sees their calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgectl import cli, report

if TYPE_CHECKING:
    import pytest

    from tests.conftest import Aws


def test_report_queries_the_stage_log_groups_with_logs_insights(
    aws: Aws, cli_env: None, capsys: pytest.CaptureFixture[str]
):
    logs = aws.session.client("logs", endpoint_url=aws.url)
    for group in report.log_groups("local"):
        logs.create_log_group(logGroupName=group)
    assert cli.main(["--stage", "local", "report", "--since", "1h"]) == 0
    out, err = capsys.readouterr()
    assert "Logs Insights over /aws/lambda/rokt-calendar-bridge-local," in err
    assert "(no webhooks in this window)" in out
