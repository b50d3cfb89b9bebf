"""transfer_create under real concurrency: threads, each with its own PostgreSQL connection,
released together by a barrier."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Account
from apps.ledger.models import CreditGrant, Entry, GrantAllocation, IdempotencyRecord, Transfer
from apps.ledger.selectors import ledger_now
from apps.ledger.services import (
    Posting,
    grant_create,
    grants_book_due,
    transfer_create,
    transfer_create_postings,
    transfer_reverse,
)
from apps.ledger.verification import ledger_verify
from creditledger import errors

pytestmark = pytest.mark.django_db(transaction=True)


def statement(account: Account) -> list[tuple[int, int, int]]:
    return list(
        Entry.objects.filter(account_id=account.id)
        .order_by("sequence")
        .values_list("sequence", "amount", "balance_after")
    )


def test_opposite_transfers_at_the_same_time_never_deadlock(make_account, make_transfer, run_together, settings):
    # No retries: a deadlock or serialization failure would reach the caller and fail the test.
    settings.LEDGER = {**settings.LEDGER, "TRANSACTION_RETRIES": 0}
    a, b = make_account(), make_account()
    count = 40

    def work(index: int):
        source, destination = (a, b) if index % 2 == 0 else (b, a)
        return make_transfer(source, destination, index + 1, idempotency_key=f"opposite-{index}")

    results = run_together(count, work)

    assert [result for result in results if isinstance(result, BaseException)] == []
    a_to_b = sum(index + 1 for index in range(0, count, 2))
    b_to_a = sum(index + 1 for index in range(1, count, 2))
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance) == (b_to_a - a_to_b, a_to_b - b_to_a)
    assert (a.last_sequence, b.last_sequence) == (count, count)
    for account in (a, b):
        lines = statement(account)
        assert [sequence for sequence, _, _ in lines] == list(range(1, count + 1))
        running = 0
        for _, amount, balance_after in lines:
            running += amount
            assert balance_after == running


def test_concurrent_debits_never_overdraw_an_account(make_account, make_transfer, run_together):
    amount, affordable, attempts = 700, 10, 50
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account()
    make_transfer(bank, wallet, affordable * amount)

    results = run_together(
        attempts, lambda index: make_transfer(wallet, shop, amount, idempotency_key=f"debit-{index}")
    )

    outcomes = Counter(type(result).__name__ for result in results)
    assert outcomes == {"TransferOutcome": affordable, "InsufficientFunds": attempts - affordable}
    wallet.refresh_from_db()
    shop.refresh_from_db()
    assert (wallet.balance, shop.balance) == (0, affordable * amount)
    assert wallet.last_sequence == 1 + affordable
    refusals = [result for result in results if isinstance(result, errors.InsufficientFunds)]
    assert {refusal.params["available"] for refusal in refusals} == {0}


def test_concurrent_requests_with_one_key_post_one_transfer_and_give_one_answer(make_account, run_together):
    source, destination = make_account(), make_account()
    body = {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": 250,
        "currency": "USD",
        "idempotencyKey": "race-1",
        "metadata": {"order": "o_1"},
    }

    responses = run_together(16, lambda index: APIClient().post("/transfers", body, format="json"))

    assert [response.status_code for response in responses] == [201] * 16
    assert Transfer.objects.count() == 1
    transfer = Transfer.objects.get()
    bodies = [response.json() for response in responses]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["transferId"] == str(transfer.id)
    assert sorted(response.headers.get("Idempotent-Replayed", "") for response in responses) == [""] + ["true"] * 15
    destination.refresh_from_db()
    assert destination.balance == 250
    assert IdempotencyRecord.objects.get().transfer_id == transfer.id


def test_concurrent_requests_with_one_key_share_one_refusal(make_account, make_transfer, run_together):
    source, destination = make_account(overdraft_limit=0), make_account()

    results = run_together(16, lambda index: make_transfer(source, destination, 10, idempotency_key="race-2"))

    assert all(isinstance(result, errors.InsufficientFunds) for result in results), results
    assert sorted(result.replayed for result in results) == [False] + [True] * 15
    assert {(result.detail, tuple(sorted(result.params.items()))) for result in results} == {
        (results[0].detail, (("available", 0), ("requested", 10)))
    }
    assert not Transfer.objects.exists()


def test_multi_leg_transfers_over_overlapping_accounts_in_any_order_never_deadlock(
    make_account, run_together, settings
):
    # No retries: a deadlock would reach the caller and fail the test.
    settings.LEDGER = {**settings.LEDGER, "TRANSACTION_RETRIES": 0}
    usd = [make_account("USD") for _ in range(4)]
    credits = [make_account("CREDITS") for _ in range(2)]

    def work(index: int):
        # Each thread walks the accounts in its own order, forwards or backwards.
        ring = usd if index % 2 == 0 else usd[::-1]
        start = index % len(ring)
        postings = [
            Posting(ring[(start + step) % 4].id, ring[(start + step + 1) % 4].id, index + step + 1, "USD")
            for step in range(3)
        ]
        postings.append(Posting(credits[index % 2].id, credits[(index + 1) % 2].id, index + 1, "CREDITS"))
        return transfer_create_postings(idempotency_key=f"multi-{index}", postings=postings)

    results = run_together(16, work)

    assert [result for result in results if isinstance(result, BaseException)] == []
    assert Transfer.objects.count() == 16
    for account in usd + credits:
        account.refresh_from_db()
        assert [sequence for sequence, _, _ in statement(account)] == list(range(1, account.last_sequence + 1))
    assert sum(account.balance for account in usd) == 0
    assert sum(account.balance for account in credits) == 0
    assert ledger_verify().ok


def test_multi_leg_requests_from_16_threads_over_http_get_no_server_error(make_account, run_together):
    a, b, c = make_account("USD"), make_account("USD"), make_account("CREDITS")
    d = make_account("CREDITS")

    def work(index: int):
        legs = [
            {"from": str(a.id), "to": str(b.id), "amount": 1, "currency": "USD"},
            {"from": str(b.id), "to": str(a.id), "amount": 2, "currency": "USD"},
            {"from": str(c.id), "to": str(d.id), "amount": 3, "currency": "CREDITS"},
        ]
        body = {"postings": legs if index % 2 else legs[::-1], "idempotencyKey": f"http-{index}"}
        return APIClient().post("/transfers", body, format="json")

    responses = run_together(16, work)

    assert [response.status_code for response in responses] == [201] * 16
    a.refresh_from_db()
    assert (a.balance, a.last_sequence) == (16, 32)
    assert ledger_verify().ok


def test_a_reversal_racing_a_spend_of_the_same_money_gets_one_consistent_outcome(
    make_account, make_transfer, run_together
):
    """bob received 1000 and may not go below 0: refunding it and spending it cannot both happen."""
    outcomes: Counter[str] = Counter()
    for round_ in range(6):
        alice, bob, carol = make_account(), make_account(overdraft_limit=0), make_account()
        original = make_transfer(alice, bob, 1000).transfer

        def work(index: int, original=original, bob=bob, carol=carol, round_=round_):
            if index == 0:
                return transfer_reverse(idempotency_key=f"refund-{round_}", transfer_id=original.id)
            return make_transfer(bob, carol, 1000, idempotency_key=f"spend-{round_}")

        refund, spend = run_together(2, work)

        succeeded = [not isinstance(result, BaseException) for result in (refund, spend)]
        assert succeeded in ([True, False], [False, True]), (refund, spend)
        refused = spend if succeeded[0] else refund
        assert isinstance(refused, errors.InsufficientFunds), refused
        stored = Transfer.objects.get(id=original.id)
        assert stored.reversed_amount == (1000 if succeeded[0] else 0)
        assert Account.objects.get(id=bob.id).balance == 0
        outcomes["refund" if succeeded[0] else "spend"] += 1
    assert sum(outcomes.values()) == 6
    assert ledger_verify().ok


def test_concurrent_partial_reversals_never_exceed_the_original(make_account, make_transfer, run_together):
    alice, bob = make_account(), make_account()
    original = make_transfer(alice, bob, 1000).transfer

    results = run_together(
        8, lambda index: transfer_reverse(idempotency_key=f"refund-{index}", transfer_id=original.id, amount=300)
    )

    posted = [result for result in results if not isinstance(result, BaseException)]
    refused = [result for result in results if isinstance(result, errors.ReversalExceedsOriginal)]
    assert (len(posted), len(refused)) == (3, 5), results
    assert sorted(error.params["remaining"] for error in refused) == [100] * 5
    assert Transfer.objects.get(id=original.id).reversed_amount == 900
    assert Account.objects.get(id=bob.id).balance == 100
    assert ledger_verify().ok


def test_reversals_from_8_threads_over_http_get_no_server_error(make_account, make_transfer, run_together):
    alice, bob = make_account(), make_account(overdraft_limit=0)
    original = make_transfer(alice, bob, 1000).transfer
    carol = make_account()

    def work(index: int):
        client = APIClient()
        if index % 2:
            body = {"from": str(bob.id), "to": str(carol.id), "amount": 250, "currency": "USD"}
            return client.post("/transfers", {**body, "idempotencyKey": f"spend-{index}"}, format="json")
        body = {"idempotencyKey": f"refund-{index}", "amount": 250}
        return client.post(f"/transfers/{original.id}/reverse", body, format="json")

    responses = run_together(8, work)

    assert all(response.status_code in (201, 422) for response in responses), [r.status_code for r in responses]
    assert sum(response.status_code == 201 for response in responses) == 4  # bob had 1000: four moves of 250
    assert Account.objects.get(id=bob.id).balance == 0
    assert ledger_verify().ok


def test_debits_racing_a_grants_expiry_never_draw_from_it_once_expired(make_account, run_together, settings):
    # No retries: a deadlock between debits, lazy bookings and the booking task would fail the test.
    settings.LEDGER = {**settings.LEDGER, "TRANSACTION_RETRIES": 0}
    promotions, customer, shop = make_account(), make_account(overdraft_limit=0), make_account()
    expires_at = ledger_now() + timedelta(seconds=1.2)
    grant = grant_create(
        account_id=customer.id,
        funding_account_id=promotions.id,
        amount=30,
        idempotency_key="expiring",
        expires_at=expires_at,
        description="Flash promo",
    )
    count = 24

    def work(index: int):
        time.sleep(index * 0.1)  # spread across the expiry: about half before, half after
        if index % 4 == 3:
            return grants_book_due(limit=10)
        return transfer_create(
            idempotency_key=f"race-{index}",
            from_account_id=customer.id,
            to_account_id=shop.id,
            amount=1,
            currency="USD",
        )

    results = run_together(count, work)

    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(failure, errors.InsufficientFunds) for failure in failures), failures
    posted = [r for r in results if not isinstance(r, (BaseException, int))]
    assert posted, "some debits came before the expiry"
    assert failures, "some debits came after it"
    stored = CreditGrant.objects.get(id=grant.document["grantId"])
    assert stored.status == "expired"
    assert (stored.consumed, stored.expired) == (len(posted), 30 - len(posted))
    drawn_at = GrantAllocation.objects.filter(grant=stored, kind="draw").values_list("entry__created_at", flat=True)
    assert len(drawn_at) == len(posted)
    assert all(posted_at < expires_at for posted_at in drawn_at)
    assert GrantAllocation.objects.filter(grant=stored, kind="expire").count() == 1
    assert ledger_verify().ok


def test_concurrent_debits_burn_grants_exactly(make_account, run_together):
    promotions, customer, shop = make_account(), make_account(overdraft_limit=0), make_account()
    for priority, amount in ((10, 15), (50, 15)):
        grant_create(
            account_id=customer.id,
            funding_account_id=promotions.id,
            amount=amount,
            idempotency_key=f"grant-{priority}",
            priority=priority,
        )

    results = run_together(
        40,
        lambda index: transfer_create(
            idempotency_key=f"burn-{index}",
            from_account_id=customer.id,
            to_account_id=shop.id,
            amount=1,
            currency="USD",
        ),
    )

    assert sum(not isinstance(r, BaseException) for r in results) == 30
    assert all(isinstance(r, errors.InsufficientFunds) for r in results if isinstance(r, BaseException))
    assert sorted(CreditGrant.objects.filter(account_id=customer.id).values_list("priority", "consumed", "status")) == [
        (10, 15, "exhausted"),
        (50, 15, "exhausted"),
    ]
    assert ledger_verify().ok
