"""POST /transfers/batch over HTTP: atomic batches post all or nothing, non-atomic ones answer
each item as POST /transfers would, invalid items refuse the whole request, and concurrent
batches over the same accounts never deadlock.

Transactional: each batch really commits, so PostgreSQL's deferred checks run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from apps.accounts.models import Account
from apps.api.consistency import consistency_token_parse
from apps.ledger.models import IdempotencyRecord
from apps.ledger.services import MAX_BATCH_TRANSFERS
from apps.ledger.verification import ledger_verify

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])
refused_before_commit = pytest.mark.django_db


def post_batch(api, body, **headers):
    return api.post("/transfers/batch", body, format="json", **headers)


def transfer(source: Account, destination: Account, amount: int, key: str, **fields: Any) -> dict[str, Any]:
    return {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": amount,
        "currency": source.currency_id,
        "idempotencyKey": key,
        **fields,
    }


@pytest.fixture
def wallet(make_account, make_transfer) -> Account:
    """An account that may not go below zero, holding 1,000."""
    account = make_account(overdraft_limit=0)
    make_transfer(make_account(), account, 1000)
    return account


@pytest.fixture
def full_state(ledger_state, idempotency_records) -> Callable[[], dict[str, Any]]:
    return lambda: {**ledger_state(), "idempotency_records": idempotency_records()}


def balance(account: Account) -> int:
    return Account.objects.get(id=account.id).balance


# --- atomic -------------------------------------------------------------------------------------


def test_an_atomic_batch_posts_every_transfer_and_answers_each_in_order(api, make_account, wallet):
    shop, cafe = make_account(), make_account()
    multi_leg = {
        "postings": [
            {"from": str(wallet.id), "to": str(shop.id), "amount": 100, "currency": "USD"},
            {"from": str(wallet.id), "to": str(cafe.id), "amount": 50, "currency": "USD"},
        ],
        "idempotencyKey": "batch-3",
        "description": "split bill",
    }
    body = {
        "atomic": True,
        "transfers": [transfer(wallet, shop, 300, "batch-1"), transfer(wallet, cafe, 200, "batch-2"), multi_leg],
    }

    response = post_batch(api, body)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["atomic"] is True
    assert [result["status"] for result in answer["results"]] == [201, 201, 201]
    assert [result["transfer"]["idempotencyKey"] for result in answer["results"]] == ["batch-1", "batch-2", "batch-3"]
    assert not any("replayed" in result for result in answer["results"])
    assert answer["results"][2]["transfer"]["description"] == "split bill"
    assert (balance(wallet), balance(shop), balance(cafe)) == (350, 400, 250)
    # The token covers every account the batch wrote, at its last sequence.
    positions = consistency_token_parse(answer["consistencyToken"])
    assert positions[wallet.id] == Account.objects.get(id=wallet.id).last_sequence
    assert set(positions) == {wallet.id, shop.id, cafe.id}
    assert ledger_verify().ok


def test_one_refusal_makes_an_atomic_batch_a_422_that_changes_nothing(
    api, problem, make_account, wallet, full_state, make_transfer
):
    shop = make_account()
    earlier = make_transfer(wallet, shop, 10, idempotency_key="paid-earlier")
    before = full_state()
    items = [
        transfer(wallet, shop, 600, "a-1"),
        transfer(wallet, shop, 10, "paid-earlier"),  # a replay of the transfer above
        transfer(wallet, shop, 600, "a-2"),  # 990 - 600 left: not enough
        transfer(wallet, shop, 1, "a-3", currency="EUR"),  # wrong currency for both accounts
    ]
    body = {"atomic": True, "transfers": items}

    body_422 = problem(post_batch(api, body), 422, "batch_refused", field="transfers")

    assert body_422["detail"] == "2 of the 4 transfers were refused, so none was posted (atomic batch)."
    results = body_422["results"]
    assert [result["outcome"] for result in results] == ["rolled_back", "replayed", "refused", "refused"]
    assert [result.get("status") for result in results] == [None, None, 422, 422]
    assert results[2]["problem"]["code"] == "insufficient_funds"
    assert results[2]["problem"]["available"] == 390
    assert results[3]["problem"]["code"] == "currency_mismatch"
    assert full_state() == before
    assert not IdempotencyRecord.objects.filter(key__startswith="a-").exists()
    assert earlier.transfer.status == "posted"
    # Nothing was stored: the same keys post once the batch is fixed.
    assert post_batch(api, {"atomic": True, "transfers": items[:2]}).status_code == 200


def test_an_atomic_batch_with_a_key_used_for_another_request_is_refused_whole(
    api, problem, make_account, wallet, full_state, make_transfer
):
    shop = make_account()
    make_transfer(wallet, shop, 10, idempotency_key="used")
    before = full_state()

    refused = problem(
        post_batch(
            api, {"atomic": True, "transfers": [transfer(wallet, shop, 5, "fresh"), transfer(wallet, shop, 11, "used")]}
        ),
        422,
        "batch_refused",
    )

    assert refused["results"][0] == {"outcome": "rolled_back"}
    assert refused["results"][1]["outcome"] == "refused"
    assert refused["results"][1]["status"] == 409
    assert refused["results"][1]["problem"]["code"] == "idempotency_key_reused"
    assert full_state() == before


def test_an_atomic_batch_sent_again_replays_every_transfer(api, make_account, wallet):
    shop = make_account()
    body = {"atomic": True, "transfers": [transfer(wallet, shop, 1, f"again-{n}") for n in range(3)]}
    first = post_batch(api, body).json()

    again = post_batch(api, body)

    assert again.status_code == 200
    assert [result["replayed"] for result in again.json()["results"]] == [True, True, True]
    assert [result["transfer"] for result in again.json()["results"]] == [
        result["transfer"] for result in first["results"]
    ]
    assert balance(shop) == 3


def test_a_batch_over_too_many_accounts_for_one_token_answers_each_transfer_with_its_own(api, make_account):
    accounts = [make_account() for _ in range(100)]
    body = {
        "atomic": True,
        "transfers": [transfer(accounts[2 * n], accounts[2 * n + 1], 1, f"wide-{n}") for n in range(50)],
    }

    answer = post_batch(api, body).json()

    assert answer["consistencyToken"] is None
    first = answer["results"][0]["transfer"]
    assert consistency_token_parse(first["consistencyToken"]) == {accounts[0].id: 1, accounts[1].id: 1}


# --- non-atomic ---------------------------------------------------------------------------------


def test_a_non_atomic_batch_answers_each_item_as_post_transfers_would(
    api, make_account, wallet, make_transfer, idempotency_records
):
    shop, eur = make_account(), make_account("EUR")
    make_transfer(wallet, shop, 10, idempotency_key="before")
    make_transfer(wallet, shop, 10, idempotency_key="other")
    records = idempotency_records()
    items = [
        transfer(wallet, shop, 500, "n-1"),
        transfer(wallet, shop, 900, "n-2"),  # 480 left
        transfer(wallet, shop, 10, "before"),  # replayed
        transfer(wallet, eur, 1, "n-3"),  # currency mismatch
        transfer(wallet, shop, 11, "other"),  # the key holds another request
        transfer(wallet, shop, 90, "n-4"),
    ]
    body = {"atomic": False, "transfers": items}

    response = post_batch(api, body)

    assert response.status_code == 200
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201, 422, 201, 422, 409, 201]
    assert [result.get("replayed", False) for result in results] == [False, False, True, False, False, False]
    assert [result["problem"]["code"] for result in results if "problem" in result] == [
        "insufficient_funds",
        "currency_mismatch",
        "idempotency_key_reused",
    ]
    assert results[1]["problem"]["errors"] == [{"field": "amount", "message": results[1]["problem"]["detail"]}]
    assert balance(wallet) == 1000 - 20 - 500 - 90
    # Each refusal is stored against its key, as POST /transfers stores it.
    assert idempotency_records() == records + 4
    replay = api.post("/transfers", items[1], format="json")
    assert replay.status_code == 422
    assert replay["Idempotent-Replayed"] == "true"
    assert post_batch(api, body).json()["results"][1] == {**results[1], "replayed": True}
    assert ledger_verify().ok


# --- refused before anything is posted ----------------------------------------------------------


@refused_before_commit
@pytest.mark.parametrize("count", [0, MAX_BATCH_TRANSFERS + 1])
def test_a_batch_of_0_or_over_1000_transfers_is_a_400(api, problem, make_account, count, full_state):
    source, destination = make_account(), make_account()
    before = full_state()

    problem(
        post_batch(
            api, {"atomic": False, "transfers": [transfer(source, destination, 1, f"k-{n}") for n in range(count)]}
        ),
        400,
        "validation_error",
        field="transfers",
    )

    assert full_state() == before


def test_a_batch_of_1000_transfers_is_posted(api, make_account):
    source, destination = make_account(), make_account()
    body = {
        "atomic": True,
        "transfers": [transfer(source, destination, 1, f"k-{n}") for n in range(MAX_BATCH_TRANSFERS)],
    }
    assert len(json.dumps(body)) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # beyond POST /transfers' limit

    response = post_batch(api, body)

    assert response.status_code == 200
    assert len(response.json()["results"]) == MAX_BATCH_TRANSFERS
    assert balance(destination) == MAX_BATCH_TRANSFERS


@refused_before_commit
def test_invalid_items_make_the_whole_batch_a_400_naming_each_field(api, problem, make_account, full_state):
    source, destination = make_account(), make_account()
    before = full_state()
    body = {
        "atomic": False,
        "transfers": [
            transfer(source, destination, 1, "ok"),
            transfer(source, destination, 0, "zero"),
            {"from": str(source.id), "to": str(destination.id), "amount": 1, "currency": "USD"},
            {"postings": [], "idempotencyKey": "no-postings"},
            "not a transfer",
        ],
    }

    refused = problem(post_batch(api, body), 400, "validation_error")

    assert [error["field"] for error in refused["errors"]] == [
        "transfers[1].amount",
        "transfers[2].idempotencyKey",
        "transfers[3].postings",
        "transfers[4]",
    ]
    assert full_state() == before


@refused_before_commit
def test_an_unknown_currency_in_an_item_is_a_400_naming_it(api, problem, make_account, full_state):
    source, destination = make_account(), make_account()
    before = full_state()
    body = {
        "atomic": False,
        "transfers": [transfer(source, destination, 1, "ok"), transfer(source, destination, 1, "x", currency="XXX")],
    }

    problem(post_batch(api, body), 400, "unknown_currency", field="transfers[1].currency")

    assert full_state() == before


@refused_before_commit
def test_two_items_with_one_key_are_a_400_naming_both(api, problem, make_account, full_state):
    source, destination = make_account(), make_account()
    before = full_state()
    body = {
        "atomic": False,
        "transfers": [
            transfer(source, destination, 1, "a"),
            transfer(source, destination, 1, "same"),
            transfer(source, destination, 2, "same"),
        ],
    }

    refused = problem(post_batch(api, body), 400, "invalid_request", field="transfers[2].idempotencyKey")

    assert "transfers[1] and transfers[2]" in refused["detail"]
    assert refused["items"] == [1, 2]
    assert full_state() == before


@refused_before_commit
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"transfers": []}, "atomic"),
        ({"atomic": "true", "transfers": []}, "atomic"),
        ({"atomic": True}, "transfers"),
        ({"atomic": True, "transfers": {}}, "transfers"),
        ({"atomic": True, "transfers": [], "key": "x"}, "key"),
    ],
)
def test_a_malformed_batch_is_a_400(api, problem, body, field):
    problem(post_batch(api, body), 400, "validation_error", field=field)


@refused_before_commit
def test_an_idempotency_key_header_on_a_batch_is_a_400(api, problem, make_account):
    source, destination = make_account(), make_account()
    body = {"atomic": True, "transfers": [transfer(source, destination, 1, "k")]}

    problem(post_batch(api, body, HTTP_IDEMPOTENCY_KEY="batch"), 400, "invalid_request", field="Idempotency-Key")


@refused_before_commit
def test_a_body_over_the_batch_limit_is_a_413(api, problem, settings):
    settings.MAX_BATCH_REQUEST_BODY_BYTES = 1000
    raw = json.dumps({"atomic": True, "transfers": [{"metadata": {"blob": "x" * 1000}}]})

    body = problem(
        api.generic("POST", "/transfers/batch", raw, content_type="application/json"), 413, "request_too_large"
    )

    assert "larger than the 1000 bytes this endpoint accepts (MAX_BATCH_REQUEST_BODY_BYTES)" in body["detail"]


# --- concurrency --------------------------------------------------------------------------------


def test_atomic_batches_over_the_same_accounts_in_opposite_orders_never_deadlock(make_account, run_together, settings):
    # No retries: a deadlock would reach the caller as a 503 and fail the test.
    settings.LEDGER = {**settings.LEDGER, "TRANSACTION_RETRIES": 0}
    accounts = [make_account() for _ in range(6)]

    def work(index: int):
        ordered = accounts if index % 2 == 0 else accounts[::-1]
        items = [
            transfer(ordered[n], ordered[(n + 1) % len(ordered)], n + 1, f"c-{index}-{n}") for n in range(len(ordered))
        ]
        return APIClient().post("/transfers/batch", {"atomic": index % 4 < 2, "transfers": items}, format="json")

    responses = run_together(12, work)

    assert [response.status_code for response in responses] == [200] * 12
    assert all(result["status"] == 201 for response in responses for result in response.json()["results"])
    assert sum(Account.objects.get(id=account.id).last_sequence for account in accounts) == 12 * 6 * 2
    assert ledger_verify().ok


def test_a_batch_takes_holds_as_post_transfers_does(api, make_account, wallet):
    shop = make_account()

    answer = post_batch(api, {"atomic": True, "transfers": [transfer(wallet, shop, 300, "batch-hold", pending=True)]})

    assert answer.status_code == 200, answer.json()
    held = answer.json()["results"][0]["transfer"]
    assert (held["status"], held["entries"]) == ("pending", [])
    assert Account.objects.get(id=wallet.id).pending_debits == 300
    assert balance(wallet) == 1000
