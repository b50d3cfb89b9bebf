"""Holds (pending transfers): hold_post, hold_void, holds_expire and the overdraft rule with
pending debits. Transactional, so PostgreSQL's deferred checks run on every commit."""

from __future__ import annotations

import time
from datetime import timedelta
from itertools import count

import pytest
from django.utils import timezone

from apps.accounts.models import Account
from apps.ledger.models import Entry, Hold, Transfer
from apps.ledger.selectors import account_live_state
from apps.ledger.services import (
    HoldRequest,
    Posting,
    hold_post,
    hold_void,
    holds_expire,
    transfer_create_postings,
    transfer_reverse,
)
from apps.ledger.verification import ledger_verify
from apps.outbox.models import OutboxEvent
from creditledger import errors

pytestmark = pytest.mark.django_db(transaction=True)

_keys = count()


def key() -> str:
    return f"hold-{next(_keys)}"


@pytest.fixture
def funded(make_account, make_transfer):
    """A wallet that may not go negative, holding 1000, and a merchant."""
    bank, wallet, merchant = make_account(), make_account(overdraft_limit=0), make_account(overdraft_limit=0)
    make_transfer(bank, wallet, 1000)
    return wallet, merchant


def state(account: Account) -> tuple[int, int, int]:
    account.refresh_from_db()
    return account.balance, account.pending_debits, account.pending_credits


def test_a_hold_reserves_without_entries(funded, make_transfer):
    wallet, merchant = funded
    outcome = make_transfer(wallet, merchant, 300, hold=HoldRequest(timeout_seconds=60))

    assert outcome.document["status"] == "pending"
    assert outcome.document["entries"] == []
    assert outcome.document["held"] == [
        {"from": str(wallet.id), "to": str(merchant.id), "amount": 300, "currency": "USD"}
    ]
    assert outcome.document["expiresAt"] is not None
    assert state(wallet) == (1000, 300, 0)
    assert state(merchant) == (0, 0, 300)
    assert not Entry.objects.filter(transfer_id=outcome.transfer_id).exists()
    assert OutboxEvent.objects.filter(event_type="TransferPending", key=str(outcome.transfer_id)).count() == 1


def test_pending_debits_count_against_the_overdraft(funded, make_transfer):
    wallet, merchant = funded
    make_transfer(wallet, merchant, 800, hold=HoldRequest())

    with pytest.raises(errors.InsufficientFunds) as refused:
        make_transfer(wallet, merchant, 300)
    assert refused.value.params == {"available": 200, "requested": 300}
    with pytest.raises(errors.InsufficientFunds):
        make_transfer(wallet, merchant, 201, hold=HoldRequest())
    make_transfer(wallet, merchant, 200)


def test_posting_less_than_held_releases_the_rest(funded, make_transfer):
    wallet, merchant = funded
    hold = make_transfer(wallet, merchant, 300, hold=HoldRequest())

    posted = hold_post(transfer_id=hold.transfer_id, idempotency_key=key(), amount=120)

    assert posted.document["status"] == "posted"
    assert posted.document["amount"] == 120
    assert [e["amount"] for e in posted.document["entries"]] == [-120, 120]
    assert [e["sequence"] for e in posted.document["entries"]] == [2, 1]
    assert state(wallet) == (880, 0, 0)
    assert state(merchant) == (120, 0, 0)
    assert OutboxEvent.objects.filter(event_type="TransferPosted", key=str(hold.transfer_id)).count() == 1
    assert ledger_verify().ok


def test_posting_more_than_held_is_refused(funded, make_transfer):
    wallet, merchant = funded
    hold = make_transfer(wallet, merchant, 300, hold=HoldRequest())

    with pytest.raises(errors.AmountExceedsHold):
        hold_post(transfer_id=hold.transfer_id, idempotency_key=key(), amount=301)
    assert Transfer.objects.get(id=hold.transfer_id).status == "pending"


def test_a_hold_of_several_postings_posts_whole(make_account, make_transfer):
    bank, a, b, c = make_account(), make_account(), make_account(), make_account()
    make_transfer(bank, a, 100)
    hold = transfer_create_postings(
        idempotency_key=key(),
        postings=[Posting(a.id, b.id, 60, "USD"), Posting(b.id, c.id, 30, "USD")],
        hold=HoldRequest(),
    )
    with pytest.raises(errors.InvalidRequest):
        hold_post(transfer_id=hold.transfer_id, idempotency_key=key(), amount=10)

    posted = hold_post(transfer_id=hold.transfer_id, idempotency_key=key())

    assert posted.document["status"] == "posted"
    assert len(posted.document["entries"]) == 4
    assert state(b) == (30, 0, 0)


def test_void_releases_and_is_final(funded, make_transfer):
    wallet, merchant = funded
    hold = make_transfer(wallet, merchant, 300, hold=HoldRequest())

    voided = hold_void(transfer_id=hold.transfer_id, idempotency_key=key())

    assert voided.document["status"] == "voided"
    assert state(wallet) == (1000, 0, 0)
    with pytest.raises(errors.TransferNotPending) as refused:
        hold_post(transfer_id=hold.transfer_id, idempotency_key=key())
    assert refused.value.params == {"transferStatus": "voided"}
    assert OutboxEvent.objects.filter(event_type="TransferVoided").count() == 1


def test_commands_replay_by_key(funded, make_transfer):
    wallet, merchant = funded
    hold = make_transfer(wallet, merchant, 300, hold=HoldRequest())
    first = hold_post(transfer_id=hold.transfer_id, idempotency_key="post-1", amount=100)

    again = hold_post(transfer_id=hold.transfer_id, idempotency_key="post-1", amount=100)

    assert again.replayed
    assert again.document == first.document
    with pytest.raises(errors.IdempotencyKeyReused):
        hold_post(transfer_id=hold.transfer_id, idempotency_key="post-1", amount=90)
    with pytest.raises(errors.IdempotencyKeyReused):
        hold_void(transfer_id=hold.transfer_id, idempotency_key="post-1")
    with pytest.raises(errors.TransferNotPending) as first_refusal:
        hold_void(transfer_id=hold.transfer_id, idempotency_key="void-1")
    with pytest.raises(errors.TransferNotPending) as replayed_refusal:
        hold_void(transfer_id=hold.transfer_id, idempotency_key="void-1")
    assert not first_refusal.value.replayed
    assert replayed_refusal.value.replayed


def test_an_unknown_transfer_is_not_found(funded):
    from creditledger.ids import new_id

    with pytest.raises(errors.TransferNotFound):
        hold_void(transfer_id=new_id(), idempotency_key=key())


def test_expiry_releases_at_read_then_by_the_task(funded, make_transfer):
    wallet, merchant = funded
    hold = make_transfer(wallet, merchant, 300, hold=HoldRequest(timeout_seconds=1))
    assert account_live_state(account_id=wallet.id).pending_debits == 300
    time.sleep(1.1)

    assert account_live_state(account_id=wallet.id).pending_debits == 0
    assert holds_expire(limit=10) == 1
    assert Transfer.objects.get(id=hold.transfer_id).status == "expired"
    assert not Hold.objects.filter(transfer_id=hold.transfer_id, open=True).exists()
    assert OutboxEvent.objects.filter(event_type="TransferExpired").count() == 1
    assert holds_expire(limit=10) == 0
    assert ledger_verify().ok


def test_the_next_command_on_its_accounts_expires_a_hold_past_its_expiry(funded, make_transfer):
    wallet, merchant = funded
    hold = make_transfer(wallet, merchant, 300, hold=HoldRequest(timeout_seconds=1))
    time.sleep(1.1)

    make_transfer(wallet, merchant, 1000, hold=HoldRequest())  # the expired hold reserves nothing

    assert Transfer.objects.get(id=hold.transfer_id).status == "expired"
    assert OutboxEvent.objects.filter(event_type="TransferExpired").count() == 1
    assert holds_expire(limit=10) == 0
    assert ledger_verify().ok


def test_a_command_after_expiry_expires_the_hold_and_is_refused(funded, make_transfer):
    wallet, merchant = funded
    hold = make_transfer(wallet, merchant, 300, hold=HoldRequest(timeout_seconds=1))
    time.sleep(1.1)

    with pytest.raises(errors.TransferNotPending) as refused:
        hold_post(transfer_id=hold.transfer_id, idempotency_key=key())

    assert refused.value.params == {"transferStatus": "expired"}
    assert Transfer.objects.get(id=hold.transfer_id).status == "expired"
    assert state(wallet) == (1000, 0, 0)


@pytest.mark.parametrize(
    ("hold", "field"),
    [
        (HoldRequest(timeout_seconds=0), "timeoutSeconds"),
        (HoldRequest(expires_at=timezone.now() - timedelta(seconds=1)), "expiresAt"),
        (HoldRequest(expires_at=timezone.now() + timedelta(hours=1), timeout_seconds=5), "timeoutSeconds"),
    ],
)
def test_bad_expiry_is_a_400_and_changes_nothing(funded, make_transfer, ledger_state, hold, field):
    wallet, merchant = funded
    before = ledger_state()
    with pytest.raises(errors.InvalidRequest) as refused:
        make_transfer(wallet, merchant, 10, hold=hold)
    assert refused.value.field == field
    assert ledger_state() == before


def test_fifty_concurrent_holds_never_overdraw(make_account, make_transfer, run_together):
    bank, wallet, merchant = make_account(), make_account(overdraft_limit=0), make_account()
    make_transfer(bank, wallet, 1000)

    results = run_together(50, lambda i: make_transfer(wallet, merchant, 100, hold=HoldRequest()))

    held = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, errors.InsufficientFunds)]
    assert len(held) == 10
    assert len(refused) == 40
    assert state(wallet) == (1000, 1000, 0)
    assert ledger_verify().ok


def test_post_void_and_expiry_race_on_one_hold(funded, make_transfer, run_together):
    wallet, merchant = funded
    for _ in range(3):
        hold = make_transfer(wallet, merchant, 100, hold=HoldRequest(timeout_seconds=1))
        time.sleep(0.95)

        def command(index: int, transfer_id=hold.transfer_id):
            if index % 3 == 0:
                return hold_post(transfer_id=transfer_id, idempotency_key=key())
            if index % 3 == 1:
                return hold_void(transfer_id=transfer_id, idempotency_key=key())
            return holds_expire(limit=10)

        results = run_together(6, command)

        final = Transfer.objects.get(id=hold.transfer_id).status
        unexpected = [
            r for r in results if isinstance(r, BaseException) and not isinstance(r, errors.TransferNotPending)
        ]
        assert not unexpected
        winners = [r for r in results if hasattr(r, "document")] + [r for r in results if r == 1]
        assert len(winners) <= 1
        if final != "expired":
            assert len(winners) == 1
        for refusal in (r for r in results if isinstance(r, errors.TransferNotPending)):
            assert refusal.params["transferStatus"] == final
        assert final in ("posted", "voided", "expired")
    assert ledger_verify().ok


def test_a_reversal_racing_the_post_of_its_hold_waits_or_is_refused_never_deadlocks(
    funded, make_transfer, run_together
):
    """Both take the hold's accounts first, then the transfer: the reversal either sees the
    hold still pending (409) or reverses what the post has just posted."""
    wallet, merchant = funded
    for _ in range(4):
        hold = make_transfer(wallet, merchant, 100, hold=HoldRequest(timeout_seconds=600))

        def command(index: int, transfer_id=hold.transfer_id):
            if index == 0:
                return hold_post(transfer_id=transfer_id, idempotency_key=key())
            return transfer_reverse(transfer_id=transfer_id, idempotency_key=key(), amount=40)

        posted, reversal = run_together(2, command)

        assert not isinstance(posted, BaseException), posted
        if isinstance(reversal, errors.TransferNotPosted):
            assert reversal.params == {"transferStatus": "pending"}
        else:
            assert not isinstance(reversal, BaseException), reversal
            assert reversal.document["reversalOf"] == str(hold.transfer_id)
    assert ledger_verify().ok
