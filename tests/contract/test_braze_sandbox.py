"""The Braze sandbox behaves as Braze documents /users/track (docs/design.md, "The Braze sandbox"), over real HTTP."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from localworld.braze_sandbox import DEFAULT_API_KEYS, BrazeSandbox

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = DEFAULT_API_KEYS[0]


@pytest.fixture(scope="module")
def server() -> Iterator[BrazeSandbox]:
    with BrazeSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def braze(server: BrazeSandbox) -> str:
    requests.post(f"{server.url}/_sandbox/reset", timeout=5).raise_for_status()
    return server.url


def track(url: str, body: Any, key: str | None = KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{url}/users/track", json=body, headers=headers, timeout=5)


def user(url: str, external_id: str) -> dict[str, Any]:
    answer = requests.get(f"{url}/_sandbox/users/{external_id}", timeout=5)
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def test_wrong_or_missing_key_is_401_and_writes_nothing(braze: str) -> None:
    assert track(braze, {"attributes": [{"external_id": "u1", "a": 1}]}, key="nope").status_code == 401
    assert track(braze, {"attributes": [{"external_id": "u1", "a": 1}]}, key=None).status_code == 401
    assert requests.get(f"{braze}/_sandbox/users", timeout=5).json() == []


def test_more_than_75_objects_of_a_kind_is_400_with_brazes_message(braze: str) -> None:
    answer = track(braze, {"events": [{"external_id": "u", "name": "e", "time": "2026-01-01T00:00:00Z"}] * 76})
    assert answer.status_code == 400
    assert answer.json()["message"] == "Max Input Length Exceeded"
    assert track(braze, {"attributes": [{"external_id": f"u{i}", "a": i} for i in range(75)]}).status_code == 201


def test_success_counts_and_non_fatal_errors_per_object(braze: str) -> None:
    answer = track(
        braze,
        {
            "attributes": [{"external_id": "u1", "plan": "gold"}, {"plan": "no identifier"}],
            "events": [{"external_id": "u1", "name": "subscribe", "time": "2026-01-01T00:00:00Z"}],
        },
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["message"] == "success"
    assert body["attributes_processed"] == 1
    assert body["events_processed"] == 1
    assert body["errors"] == [{"type": body["errors"][0]["type"], "input_array": "attributes", "index": 1}]
    assert user(braze, "u1")["attributes"] == {"plan": "gold"}


def test_refusals_on_request_per_object_or_the_whole_call(braze: str) -> None:
    refuse = {"user": "bad", "message": "'time' is not valid", "inputArray": "events"}
    requests.post(f"{braze}/_sandbox/refusals", json=refuse, timeout=5).raise_for_status()
    body = {
        "attributes": [{"external_id": "bad", "plan": "gold"}, {"external_id": "good", "plan": "gold"}],
        "events": [
            {"external_id": "good", "name": "subscribe", "time": "2026-01-01T00:00:00Z"},
            {"external_id": "bad", "name": "subscribe", "time": "2026-01-01T00:00:00Z"},
        ],
    }
    answer = track(braze, body)
    assert answer.status_code == 201
    assert answer.json()["errors"] == [{"type": "'time' is not valid", "input_array": "events", "index": 1}]
    assert user(braze, "bad")["attributes"] == {"plan": "gold"}
    assert user(braze, "bad")["custom_events"] == []

    fatal = {"user": "worse", "message": "Bad Request", "fatal": True}
    requests.post(f"{braze}/_sandbox/refusals", json=fatal, timeout=5).raise_for_status()
    whole = track(braze, {"attributes": [{"external_id": "fine", "a": 1}, {"external_id": "worse", "a": 1}]})
    assert whole.status_code == 400
    assert whole.json() == {"message": "Bad Request"}
    assert requests.get(f"{braze}/_sandbox/users/fine", timeout=5).status_code == 404


def test_arrays_are_sets_with_add_remove_move_to_end_and_a_cap_of_25(braze: str) -> None:
    track(braze, {"attributes": [{"external_id": "u1", "tags": {"add": ["a", "b", "c"]}}]})
    track(braze, {"attributes": [{"external_id": "u1", "tags": {"add": ["a", "d"], "remove": ["b"]}}]})
    assert user(braze, "u1")["attributes"]["tags"] == ["c", "a", "d"]
    track(braze, {"attributes": [{"external_id": "u1", "tags": {"add": [f"x{i}" for i in range(30)]}}]})
    tags = user(braze, "u1")["attributes"]["tags"]
    assert len(tags) == 25
    assert tags[-1] == "x29"
    assert "c" not in tags  # the oldest elements went first
    track(braze, {"attributes": [{"external_id": "u1", "tags": ["only"]}]})
    assert user(braze, "u1")["attributes"]["tags"] == ["only"]
    track(braze, {"attributes": [{"external_id": "u1", "tags": None}]})
    assert "tags" not in user(braze, "u1")["attributes"]


def test_custom_events_are_appended_never_deduplicated(braze: str) -> None:
    event = {"external_id": "u2", "name": "subscribe", "time": "2026-01-01T00:00:00Z", "properties": {"a": 1}}
    track(braze, {"events": [event]})
    track(braze, {"events": [event]})
    assert [e["name"] for e in user(braze, "u2")["custom_events"]] == ["subscribe", "subscribe"]


def test_email_identifier_finds_the_profile_with_that_address(braze: str) -> None:
    requests.post(f"{braze}/_sandbox/seed", json=[{"external_id": "u3", "email": "Ada@Example.com"}], timeout=5)
    track(braze, {"attributes": [{"email": "ada@example.com", "rokt:tags": {"add": ["t/1"]}}]})
    assert user(braze, "u3")["attributes"]["rokt:tags"] == ["t/1"]


def test_rate_limit_headers_on_every_answer_and_429_past_the_budget(braze: str) -> None:
    requests.post(f"{braze}/_sandbox/config", json={"rateLimit": 2, "rateWindow": 60}, timeout=5)
    first = track(braze, {"attributes": [{"external_id": "u", "a": 1}]})
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert int(first.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert track(braze, {"attributes": [{"external_id": "u", "a": 2}]}).status_code == 201
    limited = track(braze, {"attributes": [{"external_id": "u", "a": 3}]})
    assert limited.status_code == 429
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert user(braze, "u")["attributes"]["a"] == 2


def test_faults_answer_as_armed(braze: str) -> None:
    requests.post(f"{braze}/_sandbox/faults", json={"status": 503, "count": 1}, timeout=5).raise_for_status()
    assert track(braze, {"attributes": [{"external_id": "u", "a": 1}]}).status_code == 503
    assert track(braze, {"attributes": [{"external_id": "u", "a": 1}]}).status_code == 201
    requests.post(f"{braze}/_sandbox/faults", json={"drop": True}, timeout=5).raise_for_status()
    with pytest.raises(requests.ConnectionError):
        track(braze, {"attributes": [{"external_id": "u", "a": 1}]})


def test_requests_are_kept_for_inspection(braze: str) -> None:
    track(braze, {"attributes": [{"external_id": "u", "a": 1}]})
    assert requests.get(f"{braze}/_sandbox/requests", timeout=5).json()[-1]["body"]["attributes"][0]["a"] == 1
