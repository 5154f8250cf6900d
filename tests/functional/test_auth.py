"""Only Braze, holding a current webhook secret, gets through; refusals never reach Rokt."""

from __future__ import annotations

import pytest

from tests.conftest import PREFIX, SECRET, Aws, Sandbox, post, seed_body

CREATE = "/v1/subscriptionevent/brazetest"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"Authorization": f"Bearer {SECRET[:-1]}"},
    ],
)
def test_missing_or_wrong_secret_is_401_and_nothing_forwarded(client, sandbox: Sandbox, headers):
    response = post(client, CREATE, seed_body(), secret=None, headers=headers)

    assert response.status_code == 401
    assert response.json_body["error"] == "unauthorized"
    assert sandbox.requests() == []


def test_unauthenticated_invalid_body_is_401_not_400(client, sandbox: Sandbox):
    response = post(client, CREATE, "{not json", secret="wrong")

    assert response.status_code == 401


def test_rotation_accepts_old_and_new_then_refuses_the_removed_one(client, sandbox: Sandbox, aws: Aws):
    ssm = aws.ssm()
    ssm.put_parameter(
        Name=f"{PREFIX}/webhook-secrets", Value=f"{SECRET}, new-secret-2", Type="SecureString", Overwrite=True
    )

    old = post(client, CREATE, seed_body("e_user1"), secret=SECRET)
    new = post(client, CREATE, seed_body("e_user2"), secret="new-secret-2")
    ssm.put_parameter(Name=f"{PREFIX}/webhook-secrets", Value="new-secret-2", Type="SecureString", Overwrite=True)
    removed = post(client, CREATE, seed_body("e_user3"), secret=SECRET)

    assert (old.status_code, new.status_code, removed.status_code) == (200, 200, 401)


def test_missing_secrets_parameter_is_503_not_open(client, sandbox: Sandbox, aws: Aws):
    aws.ssm().delete_parameter(Name=f"{PREFIX}/webhook-secrets")

    response = post(client, CREATE, seed_body())

    assert response.status_code == 503
    assert sandbox.requests() == []


def test_wrong_content_type_is_refused_before_our_code(client, sandbox: Sandbox):
    response = post(client, CREATE, seed_body(), headers={"Content-Type": "text/plain"})

    assert response.status_code == 415
    assert sandbox.requests() == []
