"""POST /transfers with pending, POST /transfers/{id}/post and /void, and the balance's pending totals."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apps.ledger.models import Transfer

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


@pytest.fixture
def wallet(api, make_account, make_transfer):
    bank, wallet, merchant = make_account(), make_account(overdraft_limit=0), make_account()
    make_transfer(bank, wallet, 1000)
    return wallet, merchant


def hold(api, wallet, merchant, amount=300, key="h1", **extra):
    return api.post(
        "/transfers",
        {
            "from": str(wallet.id),
            "to": str(merchant.id),
            "amount": amount,
            "currency": "USD",
            "idempotencyKey": key,
            "pending": True,
            **extra,
        },
        format="json",
    )


def test_a_hold_shows_on_the_balance_and_posts(api, wallet, sync_projections):
    source, merchant = wallet
    created = hold(api, source, merchant, timeoutSeconds=60)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "pending"
    assert body["entries"] == []

    sync_projections()
    balance = api.get(f"/accounts/{source.id}/balance").json()
    assert (balance["pendingDebits"], balance["available"]) == (300, 700)
    account = api.get(f"/accounts/{merchant.id}").json()
    assert account["pendingCredits"] == 300

    posted = api.post(f"/transfers/{body['transferId']}/post", {"idempotencyKey": "p1", "amount": 200}, format="json")
    assert posted.status_code == 200, posted.content
    assert posted.json()["status"] == "posted"
    assert posted.json()["amount"] == 200
    replay = api.post(f"/transfers/{body['transferId']}/post", {"idempotencyKey": "p1", "amount": 200}, format="json")
    assert replay.status_code == 200
    assert replay["Idempotent-Replayed"] == "true"

    sync_projections()
    balance = api.get(f"/accounts/{source.id}/balance", {"consistencyToken": posted.json()["consistencyToken"]})
    assert balance.json()["balance"] == 800
    assert balance.json()["pendingDebits"] == 0
    listed = api.get("/transfers", {"account": str(source.id), "status": "posted"}).json()["data"]
    assert body["transferId"] in [t["transferId"] for t in listed]


def test_void_then_post_is_409_with_the_status(api, wallet, problem):
    source, merchant = wallet
    transfer_id = hold(api, source, merchant).json()["transferId"]

    voided = api.post(f"/transfers/{transfer_id}/void", {"idempotencyKey": "v1"}, format="json")
    assert voided.status_code == 200
    assert voided.json()["status"] == "voided"
    refused = problem(
        api.post(f"/transfers/{transfer_id}/post", {"idempotencyKey": "p2"}, format="json"), 409, "transfer_not_pending"
    )
    assert refused["transferStatus"] == "voided"
    problem(
        api.post(f"/transfers/{transfer_id}/void", {"idempotencyKey": "v1", "x": 1}, format="json"),
        400,
        "validation_error",
    )
    problem(
        api.post(f"/transfers/{transfer_id}/post", {"idempotencyKey": "v1"}, format="json"),
        409,
        "idempotency_key_reused",
    )


def test_refusals(api, wallet, problem, ledger_state):
    source, merchant = wallet
    transfer_id = hold(api, source, merchant).json()["transferId"]
    before = ledger_state()

    problem(
        api.post(f"/transfers/{transfer_id}/post", {"idempotencyKey": "p3", "amount": 301}, format="json"),
        422,
        "amount_exceeds_hold",
    )
    problem(
        api.post("/transfers/0193a1b2-0000-7000-8000-00000000000a/void", {"idempotencyKey": "v9"}, format="json"),
        404,
        "transfer_not_found",
    )
    problem(api.post(f"/transfers/{transfer_id}/post", {}, format="json"), 400, "invalid_request", "idempotencyKey")
    problem(
        hold(api, source, merchant, key="h2", timeoutSeconds=5, expiresAt="2099-01-01T00:00:00Z"),
        400,
        "validation_error",
        "timeoutSeconds",
    )
    problem(
        hold(api, source, merchant, key="h3", expiresAt="2000-01-01T00:00:00Z"), 400, "invalid_request", "expiresAt"
    )
    problem(
        hold(api, source, merchant, key="h4", pending=False, timeoutSeconds=5),
        400,
        "validation_error",
        "timeoutSeconds",
    )
    problem(hold(api, source, merchant, key="h5", amount=701), 422, "insufficient_funds")
    assert ledger_state()["entries"] == before["entries"]
    assert Transfer.objects.get(id=transfer_id).status == "pending"


def test_a_hold_past_its_expiry_stops_counting_before_the_task_releases_it(api, wallet, ledger_clock):
    source, merchant = wallet
    assert hold(api, source, merchant, timeoutSeconds=60).status_code == 201
    before = [api.get(f"/accounts/{account.id}").json() for account in (source, merchant)]
    assert [(a["pendingDebits"], a["pendingCredits"]) for a in before] == [(300, 0), (0, 300)]

    ledger_clock.advance(timedelta(minutes=2))  # no expiry task runs here
    assert Transfer.objects.get(from_account=source).status == "pending"
    after = [api.get(f"/accounts/{account.id}").json() for account in (source, merchant)]
    assert [(a["pendingDebits"], a["pendingCredits"]) for a in after] == [(0, 0), (0, 0)]
    listed = {a["accountId"]: a for a in api.get("/accounts", {"currency": "USD"}).json()["data"]}
    assert (listed[str(source.id)]["pendingDebits"], listed[str(merchant.id)]["pendingCredits"]) == (0, 0)
    assert api.get(f"/accounts/{source.id}/balance").json()["pendingDebits"] == 0


def test_closing_needs_no_pending_hold(api, make_account, problem):
    a, b = make_account(), make_account()
    transfer_id = hold(api, a, b, amount=5).json()["transferId"]

    problem(api.patch(f"/accounts/{b.id}", {"status": "closed"}, format="json"), 422, "account_not_empty")
    api.post(f"/transfers/{transfer_id}/void", {"idempotencyKey": "v5"}, format="json")
    assert api.patch(f"/accounts/{b.id}", {"status": "closed"}, format="json").status_code == 200


def test_a_multi_leg_hold(api, make_account, problem):
    a, b, c = make_account(), make_account(), make_account()
    created = api.post(
        "/transfers",
        {
            "postings": [
                {"from": str(a.id), "to": str(b.id), "amount": 5, "currency": "USD"},
                {"from": str(b.id), "to": str(c.id), "amount": 3, "currency": "USD"},
            ],
            "pending": True,
            "idempotencyKey": "m1",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    transfer_id = created.json()["transferId"]
    problem(
        api.post(f"/transfers/{transfer_id}/post", {"idempotencyKey": "mp", "amount": 1}, format="json"),
        400,
        "invalid_request",
        "amount",
    )
    posted = api.post(f"/transfers/{transfer_id}/post", {"idempotencyKey": "mp2"}, format="json")
    assert posted.status_code == 200
    assert len(posted.json()["entries"]) == 4
