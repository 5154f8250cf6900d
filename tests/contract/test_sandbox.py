"""The Rokt sandbox behaves like Rokt's documented API (tokens, 401, 400, 202) and misbehaves on cue."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import CLIENT_ID, CLIENT_SECRET, SUBSCRIPTION, Sandbox, seed_body


def token(sandbox: Sandbox, auth: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET), grant: str = "client_credentials"):
    return requests.post(f"{sandbox.url}/oauth2/token", data={"grant_type": grant}, auth=auth, timeout=5)


def create(sandbox: Sandbox, access_token: str, body=None, account: str = "brazetest"):
    return requests.post(
        f"{sandbox.url}/v1/subscriptionevent/{account}",
        json=body if body is not None else {**seed_body(), "event": {**seed_body()["event"], "notifyBefore": 15}},
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=5,
    )


def test_token_endpoint_issues_short_lived_tokens(sandbox: Sandbox):
    response = token(sandbox)

    assert response.status_code == 200
    assert response.json()["expires_in"] == 300
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    ("auth", "grant", "status"),
    [(("nobody", "x"), "client_credentials", 401), ((CLIENT_ID, CLIENT_SECRET), "password", 400)],
)
def test_token_endpoint_refuses_bad_requests(sandbox: Sandbox, auth, grant, status):
    assert token(sandbox, auth, grant).status_code == status


def test_events_need_a_valid_token(sandbox: Sandbox):
    assert create(sandbox, "made-up").status_code == 401


def test_tokens_expire(sandbox: Sandbox):
    sandbox.configure(tokenTtl=0.5)
    access = token(sandbox).json()["access_token"]
    time.sleep(0.6)

    response = create(sandbox, access)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_create_answers_202_and_keeps_the_event(sandbox: Sandbox):
    access = token(sandbox).json()["access_token"]

    response = create(sandbox, access)

    assert response.status_code == 202
    [stored] = sandbox.events("brazetest")
    assert stored["subscriptionIds"] == [SUBSCRIPTION]
    feed = requests.get(f"{sandbox.url}/_sandbox/calendar/{SUBSCRIPTION}.ics", timeout=5)
    assert feed.headers["Content-Type"].startswith("text/calendar")
    assert "UID:Event_0001_user42@brazetest.sandbox" in feed.text
    assert "DTSTART;TZID=America/New_York:20190221T150000" in feed.text
    assert "TRIGGER:-PT15M" in feed.text


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda b: b["event"].pop("title"), "title is required"),
        (lambda b: b["event"].update(timezone="America/New_York"), "not a supported Windows time zone"),
        (lambda b: b["event"].update(notifyBefore="15"), "notifyBefore"),
        (lambda b: b.update(subscriptionIds=[]), "subscriptionIds"),
    ],
)
def test_create_validates_like_rokt(sandbox: Sandbox, mutate, problem):
    body = {**seed_body(), "event": {**seed_body()["event"], "notifyBefore": 15}}
    mutate(body)

    response = create(sandbox, token(sandbox).json()["access_token"], body)

    assert response.status_code == 400
    assert any(problem in e for e in response.json()["errors"])


def test_update_and_delete_of_unknown_event_are_404(sandbox: Sandbox):
    headers = {"Authorization": f"Bearer {token(sandbox).json()['access_token']}"}
    event = {**seed_body()["event"], "notifyBefore": 15}

    update = requests.post(f"{sandbox.url}/v1/subscriptionevent/x/update", json={"event": event}, headers=headers)
    delete = requests.delete(f"{sandbox.url}/v1/subscriptionevent/x/nope", headers=headers, timeout=5)

    assert (update.status_code, delete.status_code) == (404, 404)


def test_fault_knobs_status_retry_after_and_count(sandbox: Sandbox):
    sandbox.fault(status=429, retryAfter="7", count=2)
    access = token(sandbox).json()["access_token"]

    answers = [create(sandbox, access) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 202]
    assert answers[0].headers["Retry-After"] == "7"


def test_fault_knobs_delay_and_drop(sandbox: Sandbox):
    access = token(sandbox).json()["access_token"]
    sandbox.fault(delay=1.0)
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{sandbox.url}/v1/subscriptionevent/x", json={}, headers={"Authorization": f"Bearer {access}"}, timeout=0.2
        )
    sandbox.fault(drop=True)
    with pytest.raises(requests.ConnectionError):
        create(sandbox, access)


def test_fault_knobs_revoke_after_some_requests(sandbox: Sandbox):
    access = token(sandbox).json()["access_token"]
    sandbox.fault(revoke=True, after=2)

    answers = [create(sandbox, access).status_code for _ in range(4)]

    assert answers == [202, 202, 401, 401]


def test_token_faults_do_not_touch_events(sandbox: Sandbox):
    access = token(sandbox).json()["access_token"]
    sandbox.fault(target="token", status=503)

    assert create(sandbox, access).status_code == 202
    assert token(sandbox).status_code == 503


def test_faults_are_never_on_by_default(sandbox: Sandbox):
    assert sandbox.stats()["faults_pending"] == 0


def test_bad_fault_is_refused(sandbox: Sandbox):
    response = requests.post(f"{sandbox.url}/_sandbox/faults", json={"target": "moon"}, timeout=5)

    assert response.status_code == 400
