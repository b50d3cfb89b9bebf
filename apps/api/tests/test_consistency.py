"""Read-your-writes: a consistency token from POST /transfers makes a read wait for the projection."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


@pytest.fixture
def short_wait(settings):
    settings.PROJECTIONS = {**settings.PROJECTIONS, "CONSISTENCY_WAIT_SECONDS": 0.2}


def post_transfer(api, source, destination, key: str, amount: int = 40):
    body = {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": amount,
        "currency": "USD",
        "idempotencyKey": key,
    }
    response = api.post("/transfers", body, format="json")
    assert response.status_code == 201
    return response


def test_the_token_is_in_the_body_and_the_header_and_a_replay_returns_it_again(api, make_account):
    source, destination = make_account(), make_account()
    first = post_transfer(api, source, destination, "t-1")
    again = post_transfer(api, source, destination, "t-1")

    assert first.json()["consistencyToken"] == first.headers["Consistency-Token"]
    assert again.json()["consistencyToken"] == first.json()["consistencyToken"]


def test_a_read_with_a_token_the_projection_has_not_reached_answers_503_with_retry_after(
    api, make_account, sync_projections, short_wait
):
    source, destination = make_account(), make_account()
    token = post_transfer(api, source, destination, "t-2").json()["consistencyToken"]

    for path in (f"/accounts/{destination.id}/balance", f"/accounts/{destination.id}/statements"):
        stale = api.get(path, {"consistencyToken": token})
        assert stale.status_code == 503
        assert stale.headers["Retry-After"] == "1"
        assert stale.json()["code"] == "projection_not_ready"

    sync_projections()
    fresh = api.get(f"/accounts/{destination.id}/balance", HTTP_CONSISTENCY_TOKEN=token)
    assert fresh.status_code == 200
    assert fresh.json()["balance"] == 40
    lines = api.get(f"/accounts/{destination.id}/statements", {"consistencyToken": token}).json()["data"]
    assert [line["amount"] for line in lines] == [40]


def test_without_a_token_a_read_answers_at_once_and_says_how_far_the_projection_got(
    api, make_account, sync_projections, short_wait
):
    source, destination = make_account(), make_account()
    post_transfer(api, source, destination, "t-3")

    behind = api.get(f"/accounts/{destination.id}/balance").json()
    assert behind["balance"] == 0
    assert behind["consistency"] == {"projectedSequence": 0, "ledgerSequence": 1, "upToDate": False}

    sync_projections()
    caught_up = api.get(f"/accounts/{destination.id}/balance").json()
    assert caught_up["balance"] == 40
    assert caught_up["consistency"] == {"projectedSequence": 1, "ledgerSequence": 1, "upToDate": True}


def test_a_token_for_other_accounts_does_not_wait(api, make_account, short_wait):
    source, destination, bystander = make_account(), make_account(), make_account()
    token = post_transfer(api, source, destination, "t-4").json()["consistencyToken"]

    assert api.get(f"/accounts/{bystander.id}/balance", {"consistencyToken": token}).status_code == 200


@pytest.mark.parametrize("token", ["%%%", "bm90IGpzb24", "WyJhIl0", "eyJub3QtYS11dWlkIjogMX0"])
def test_a_malformed_token_is_a_400(api, make_account, token):
    account = make_account()
    response = api.get(f"/accounts/{account.id}/balance", {"consistencyToken": token})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "consistencyToken"
