"""`bridgectl report --log-file` over a send's captured logs: per campaign and route, counts
that match what the Rokt sandbox received, exactly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from bridgectl import insights, report
from bridgectl.cli import main
from tests.conftest import Sandbox, post, seed_body

if TYPE_CHECKING:
    from pathlib import Path

    from tests.conftest import LogCapture

CREATE = "/v1/subscriptionevent/brazetest"


@pytest.fixture
def send_log(client, sandbox: Sandbox, json_logs: LogCapture, tmp_path: Path) -> Path:
    """Two campaigns sent the way Braze would, with retries, template defects and a Rokt refusal."""
    for user in range(1, 6):
        post(client, CREATE, seed_body(f"Spring_2026_u{user}"))
    for user in (1, 2):  # Braze retries / duplicates
        post(client, CREATE, seed_body(f"Spring_2026_u{user}"))
    post(client, CREATE, seed_body("Spring_2026_"))  # a user without user_id: template defect
    post(client, CREATE, seed_body("Spring_2026_u6", start="tomorrow"))  # validation_failed
    sandbox.fault(status=400, count=1)
    post(client, CREATE, seed_body("Fall_0001_u1"))  # refused by Rokt
    for user in (2, 3):
        post(client, CREATE, seed_body(f"Fall_0001_u{user}"))
    post(client, CREATE, seed_body("Fall_0001_u1"))  # the corrected re-send goes through
    path = tmp_path / "bridge.log"
    path.write_text("bridge | not json\n" + json_logs.text)  # a make-run log also has other lines
    return path


def delivered_at_rokt(sandbox: Sandbox, campaign: str) -> int:
    return sum(1 for e in sandbox.events("brazetest") if e["event"]["eventId"].rsplit("_", 1)[0] == campaign)


def test_report_over_a_log_file_matches_what_rokt_received(send_log: Path, sandbox: Sandbox, capsys):
    assert main(["report", "--log-file", str(send_log), "--format", "json"]) == 0
    lines = {line["campaign"]: line for line in json.loads(capsys.readouterr().out)["campaigns"]}

    spring, fall = lines["Spring_2026"], lines["Fall_0001"]
    assert spring["delivered"] == delivered_at_rokt(sandbox, "Spring_2026") == 5
    assert fall["delivered"] == delivered_at_rokt(sandbox, "Fall_0001") == 3
    assert spring["received"] == 9
    assert spring["duplicates"] == 2
    assert spring["errors"] == {"template_defect": 1, "validation_failed": 1}
    assert spring["examples"]["validation_failed"] == ["Spring_2026_u6"]
    assert fall["errors"] == {"rejected_by_rokt": 1}
    assert fall["received"] == 4
    assert spring["p50_ms"] is not None
    assert spring["p99_ms"] >= spring["p50_ms"]


def test_report_prints_a_table_and_filters_by_campaign(send_log: Path, capsys):
    assert main(["report", "--log-file", str(send_log), "--campaign", "Fall"]) == 0
    table = capsys.readouterr().out.splitlines()

    assert table[0].split()[:4] == ["campaign", "route", "received", "delivered"]
    assert [row.split()[:4] for row in table[2:3]] == [["Fall_0001", "create", "4", "3"]]
    assert not any("Spring_2026" in row for row in table)
    assert any("rejected_by_rokt: e.g. Fall_0001_u1" in row for row in table)


def test_report_csv_has_one_row_per_campaign_and_route(send_log: Path, capsys):
    assert main(["report", "--log-file", str(send_log), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()

    assert rows[0].startswith("campaign,route,received,delivered")
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["Fall_0001", "Spring_2026"]


class FakeLogs:
    """Logs Insights' API shape: start_query, then get_query_results until Complete."""

    def __init__(self, records: list[dict[str, object]]) -> None:
        self.records = records
        self.queries: dict[str, str] = {}
        self.polls = 0

    def start_query(self, **params: object) -> dict[str, str]:
        query_id = f"q{len(self.queries)}"
        self.queries[query_id] = str(params["queryString"])
        return {"queryId": query_id}

    def get_query_results(self, queryId: str) -> dict[str, object]:
        self.polls += 1
        if self.polls <= len(self.queries):
            return {"status": "Running", "statistics": {"recordsScanned": 10.0, "recordsMatched": 1.0}}
        rows = insights.run(self.queries[queryId], self.records)
        return {
            "status": "Complete",
            "statistics": {"recordsScanned": float(len(self.records)), "recordsMatched": float(len(rows))},
            "results": [[{"field": k, "value": str(v)} for k, v in row.items() if v is not None] for row in rows],
        }


def test_the_cloudwatch_path_runs_the_same_queries_and_shows_progress(send_log: Path):
    records = report.read_log_file(send_log.read_text())
    said: list[str] = []

    remote = report.from_cloudwatch(
        FakeLogs(records), ["/aws/lambda/x"], 7200, progress=said.append, sleep=lambda _: None
    )
    local = report.from_records(records)

    assert remote.to_dict() == local.to_dict()
    assert any("running" in line and "records scanned" in line for line in said)
    assert any("complete" in line for line in said)
