"""transfer_create: the one service that moves money.

Transactional, so that every transfer really commits and PostgreSQL's deferred checks
(balanced entries, balances matching the journal) run on what the service wrote.
"""

from __future__ import annotations

from uuid import UUID

import pytest

from apps.accounts.models import Account, AccountStatus
from apps.ledger.models import Entry, IdempotencyRecord, Transfer
from apps.ledger.services import (
    INT64_MAX,
    Posting,
    TransferRequest,
    transfer_batch_create,
    transfer_create,
    transfer_create_postings,
    transfer_request_single,
)
from creditledger import errors

INT64_MIN = -(2**63)

pytestmark = pytest.mark.django_db(transaction=True)


def balance(account: Account) -> int:
    account.refresh_from_db()
    return account.balance


def test_a_transfer_debits_one_account_and_credits_the_other(make_account):
    source, destination = make_account(), make_account()

    outcome = transfer_create(
        idempotency_key="k1",
        from_account_id=source.id,
        to_account_id=destination.id,
        amount=1234,
        currency="USD",
        metadata={"invoice": "in_1"},
    )

    assert not outcome.replayed
    transfer = Transfer.objects.get()
    assert transfer.id == outcome.transfer.id
    assert (transfer.from_account_id, transfer.to_account_id, transfer.amount, transfer.currency_id) == (
        source.id,
        destination.id,
        1234,
        "USD",
    )
    assert transfer.status == "posted"
    assert transfer.metadata == {"invoice": "in_1"}
    entries = {entry.account_id: entry for entry in Entry.objects.filter(transfer=transfer)}
    assert (entries[source.id].amount, entries[source.id].balance_after, entries[source.id].sequence) == (
        -1234,
        -1234,
        1,
    )
    assert entries[source.id].counterparty_id == destination.id
    assert (entries[destination.id].amount, entries[destination.id].balance_after) == (1234, 1234)
    assert entries[destination.id].counterparty_id == source.id
    assert (balance(source), balance(destination)) == (-1234, 1234)


def test_the_returned_transfer_carries_its_entries_debit_first(make_account, make_transfer):
    source, destination = make_account(), make_account()

    transfer = make_transfer(source, destination, 5).transfer

    assert [(entry.account_id, entry.amount) for entry in transfer.entries.all()] == [
        (source.id, -5),
        (destination.id, 5),
    ]


def test_each_transfer_continues_both_accounts_sequences_and_running_balances(make_account, make_transfer):
    a, b, c = make_account(), make_account(), make_account()

    make_transfer(a, b, 100)
    make_transfer(b, c, 30)
    make_transfer(c, a, 10)
    make_transfer(a, b, 1)

    statement = list(
        Entry.objects.filter(account_id=b.id).order_by("sequence").values_list("sequence", "amount", "balance_after")
    )
    assert statement == [(1, 100, 100), (2, -30, 70), (3, 1, 71)]
    b.refresh_from_db()
    assert (b.balance, b.last_sequence) == (71, 3)
    assert (balance(a), balance(c)) == (-91, 20)


def test_the_outcome_names_the_sequence_each_account_reached_and_a_replay_names_it_again(make_account, make_transfer):
    a, b, c = make_account(), make_account(), make_account()
    make_transfer(a, b, 100)

    posted = make_transfer(b, c, 30, idempotency_key="positions-1")
    make_transfer(b, c, 5)
    replayed = make_transfer(b, c, 30, idempotency_key="positions-1")

    assert posted.positions == {b.id: 2, c.id: 1}
    assert (replayed.replayed, replayed.positions) == (True, posted.positions)


def test_every_balance_is_the_sum_of_its_entries(make_account, make_transfer):
    accounts = [make_account() for _ in range(4)]
    for i in range(12):
        make_transfer(accounts[i % 4], accounts[(i * 3 + 1) % 4], i + 1)

    for account in accounts:
        entries = Entry.objects.filter(account_id=account.id)
        assert balance(account) == sum(entries.values_list("amount", flat=True))
    assert sum(Entry.objects.values_list("amount", flat=True)) == 0


# --- overdraft ----------------------------------------------------------------------------------


def test_an_account_without_overdraft_cannot_go_negative(make_account, make_transfer):
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account()
    make_transfer(bank, wallet, 500)

    with pytest.raises(errors.InsufficientFunds) as refused:
        make_transfer(wallet, shop, 501)

    assert refused.value.params == {"available": 500, "requested": 501}
    assert refused.value.field == "amount"
    assert (balance(wallet), balance(shop)) == (500, 0)
    make_transfer(wallet, shop, 500)
    assert balance(wallet) == 0


def test_an_overdraft_limit_lets_the_balance_reach_exactly_minus_the_limit(make_account, make_transfer):
    source, destination = make_account(overdraft_limit=1_000), make_account()

    make_transfer(source, destination, 600)
    with pytest.raises(errors.InsufficientFunds) as refused:
        make_transfer(source, destination, 401)
    make_transfer(source, destination, 400)

    assert refused.value.params["available"] == 400
    assert balance(source) == -1_000


def test_an_unlimited_overdraft_still_stops_at_the_64_bit_range(make_account, make_transfer):
    source, destination, other = make_account(), make_account(), make_account()

    make_transfer(source, destination, INT64_MAX)

    assert (balance(source), balance(destination)) == (-INT64_MAX, INT64_MAX)
    with pytest.raises(errors.BalanceOutOfRange):
        make_transfer(other, destination, 1)  # destination would pass 2^63-1
    with pytest.raises(errors.BalanceOutOfRange):
        make_transfer(source, other, 2)  # source would pass -2^63
    make_transfer(source, other, 1)  # exactly -2^63 is still a bigint
    assert balance(source) == INT64_MIN


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -1, INT64_MAX + 1])
def test_amounts_outside_1_to_2_63_minus_1_are_invalid(make_account, make_transfer, amount):
    source, destination = make_account(), make_account()

    with pytest.raises(errors.InvalidRequest) as refused:
        make_transfer(source, destination, amount, idempotency_key="bad-amount")

    assert refused.value.field == "amount"
    # Invalid input is not an outcome: the key stays free.
    assert not IdempotencyRecord.objects.exists()
    make_transfer(source, destination, 1, idempotency_key="bad-amount")


def test_an_unknown_currency_is_invalid_and_does_not_use_up_the_key(make_account, make_transfer):
    source, destination = make_account(), make_account()

    with pytest.raises(errors.UnknownCurrency):
        make_transfer(source, destination, 1, currency="XXX", idempotency_key="k")

    assert make_transfer(source, destination, 1, currency="USD", idempotency_key="k").replayed is False


@pytest.mark.parametrize("side", ["from", "to"])
def test_a_currency_mismatch_on_either_side_is_refused(make_account, make_transfer, side):
    usd, eur = make_account("USD"), make_account("EUR")
    source, destination = (eur, make_account("USD")) if side == "from" else (usd, eur)

    with pytest.raises(errors.CurrencyMismatch) as refused:
        make_transfer(source, destination, 10, currency="USD")

    assert refused.value.field == side
    assert refused.value.params == {"accountCurrency": "EUR"}
    assert not Transfer.objects.exists()


@pytest.mark.parametrize("status", [AccountStatus.FROZEN, AccountStatus.CLOSED])
@pytest.mark.parametrize("side", ["from", "to"])
def test_frozen_and_closed_accounts_take_no_transfers(make_account, make_transfer, status, side):
    source, destination = make_account(), make_account()
    Account.objects.filter(id=(source if side == "from" else destination).id).update(status=status)

    with pytest.raises(errors.AccountNotActive) as refused:
        make_transfer(source, destination, 10)

    assert refused.value.field == side
    assert refused.value.params == {"accountStatus": status}
    assert (balance(source), balance(destination)) == (0, 0)


def test_an_account_cannot_pay_itself(make_account, make_transfer):
    account = make_account()

    with pytest.raises(errors.SameAccount):
        make_transfer(account, account, 10)

    assert not Entry.objects.exists()


@pytest.mark.parametrize("side", ["from", "to"])
def test_an_unknown_account_on_either_side_is_not_found(make_account, side):
    known = make_account()
    missing = Account(id="01900000-0000-7000-8000-000000000000", currency_id="USD")
    source, destination = (missing, known) if side == "from" else (known, missing)

    with pytest.raises(errors.AccountNotFound) as refused:
        transfer_create(
            idempotency_key="k", from_account_id=source.id, to_account_id=destination.id, amount=1, currency="USD"
        )

    assert refused.value.field == side
    assert not Transfer.objects.exists()


# --- idempotency ------------------------------------------------------------------------------


def test_the_same_key_and_request_returns_the_first_transfer(make_account, make_transfer):
    source, destination = make_account(), make_account()

    first = make_transfer(source, destination, 100, idempotency_key="same", metadata={"a": 1})
    again = make_transfer(source, destination, 100, idempotency_key="same", metadata={"a": 1})

    assert (first.replayed, again.replayed) == (False, True)
    assert again.transfer.id == first.transfer.id
    assert Transfer.objects.count() == 1
    assert balance(destination) == 100


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 101},
        {"currency": "EUR"},
        {"metadata": {"a": 2}},
        {"swap": True},
    ],
)
def test_the_same_key_with_another_request_is_refused_and_changes_nothing(
    make_account, make_transfer, ledger_state, change
):
    source, destination = make_account(), make_account()
    make_transfer(source, destination, 100, idempotency_key="same", metadata={"a": 1})
    before = ledger_state()

    request = {"amount": 100, "currency": "USD", "metadata": {"a": 1}, **change}
    if request.pop("swap", False):
        source, destination = destination, source
    with pytest.raises(errors.IdempotencyKeyReused) as refused:
        make_transfer(source, destination, idempotency_key="same", **request)

    assert refused.value.field == "idempotencyKey"
    assert ledger_state() == before


def test_a_refusal_is_stored_and_replayed_even_after_the_situation_changed(make_account, make_transfer):
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account()

    with pytest.raises(errors.InsufficientFunds) as first:
        make_transfer(wallet, shop, 100, idempotency_key="pay-1")
    assert not first.value.replayed
    make_transfer(bank, wallet, 1_000)  # now it would go through

    with pytest.raises(errors.InsufficientFunds) as again:
        make_transfer(wallet, shop, 100, idempotency_key="pay-1")

    assert again.value.replayed
    assert (again.value.detail, again.value.field, again.value.params) == (
        first.value.detail,
        first.value.field,
        first.value.params,
    )
    assert balance(shop) == 0
    assert IdempotencyRecord.objects.get(key="pay-1").transfer_id is None


def test_a_not_found_outcome_is_stored_too(make_account):
    known = make_account()
    missing_id = UUID("01900000-0000-7000-8000-000000000000")

    def attempt():
        return transfer_create(
            idempotency_key="k", from_account_id=known.id, to_account_id=missing_id, amount=1, currency="USD"
        )

    with pytest.raises(errors.AccountNotFound):
        attempt()
    with pytest.raises(errors.AccountNotFound) as again:
        attempt()

    assert again.value.replayed


def test_a_refusal_writes_only_its_outcome(make_account, make_transfer, ledger_state):
    wallet, shop = make_account(overdraft_limit=0), make_account()
    before = ledger_state()

    with pytest.raises(errors.InsufficientFunds):
        make_transfer(wallet, shop, 1)

    assert ledger_state() == before
    assert IdempotencyRecord.objects.count() == 1


# --- several postings in one transfer ----------------------------------------------------------


def post(*postings: tuple[Account, Account, int], key: str = "multi", **kwargs):
    return transfer_create_postings(
        idempotency_key=key,
        postings=[
            Posting(source.id, destination.id, amount, source.currency_id) for source, destination, amount in postings
        ],
        **kwargs,
    )


def sequences(account: Account) -> list[tuple[int, int, int]]:
    return list(
        Entry.objects.filter(account_id=account.id)
        .order_by("sequence")
        .values_list("sequence", "amount", "balance_after")
    )


def test_postings_in_two_currencies_move_together_and_balance_per_currency(make_account):
    buyer_usd, buyer_credits = make_account("USD"), make_account("CREDITS")
    shop_usd, shop_credits = make_account("USD"), make_account("CREDITS")

    outcome = post((buyer_usd, shop_usd, 1000), (shop_credits, buyer_credits, 1000), description="Buy 1,000 CREDITS")

    transfer = Transfer.objects.get()
    assert (transfer.posting_count, transfer.from_account_id, transfer.amount, transfer.currency_id) == (
        2,
        None,
        None,
        None,
    )
    assert transfer.description == "Buy 1,000 CREDITS"
    assert outcome.document["postings"] == [
        {"from": str(buyer_usd.id), "to": str(shop_usd.id), "amount": 1000, "currency": "USD"},
        {"from": str(shop_credits.id), "to": str(buyer_credits.id), "amount": 1000, "currency": "CREDITS"},
    ]
    assert [(e["accountId"], e["amount"]) for e in outcome.document["entries"]] == [
        (str(buyer_usd.id), -1000),
        (str(shop_usd.id), 1000),
        (str(shop_credits.id), -1000),
        (str(buyer_credits.id), 1000),
    ]
    totals: dict[str, int] = {}
    for entry in Entry.objects.filter(transfer=transfer):
        totals[entry.currency_id] = totals.get(entry.currency_id, 0) + entry.amount
    assert totals == {"USD": 0, "CREDITS": 0}
    assert [balance(a) for a in (buyer_usd, shop_usd, shop_credits, buyer_credits)] == [-1000, 1000, -1000, 1000]
    assert outcome.positions == {a.id: 1 for a in (buyer_usd, shop_usd, shop_credits, buyer_credits)}


def test_an_account_in_several_postings_gets_consecutive_sequences_credits_first(make_account, make_transfer):
    bank, wallet, shop, fees = make_account(), make_account(overdraft_limit=0), make_account(), make_account()
    make_transfer(bank, wallet, 10)

    outcome = post((wallet, shop, 100), (bank, wallet, 95), (wallet, fees, 5))

    # Its credit first: 10 -> 105 -> 5 -> 0, never below its limit on the way.
    assert sequences(wallet) == [(1, 10, 10), (2, 95, 105), (3, -100, 5), (4, -5, 0)]
    assert outcome.positions[wallet.id] == 4
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.last_sequence) == (0, 4)
    assert sequences(bank) == [(1, -10, -10), (2, -95, -105)]


def test_credits_in_the_same_transfer_fund_its_debits(make_account, make_transfer):
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account()

    post((wallet, shop, 300), (bank, wallet, 300))

    assert (balance(wallet), balance(shop)) == (0, 300)


def test_debits_across_postings_count_together_against_the_limit(make_account, make_transfer):
    bank, wallet, shop, fees = make_account(), make_account(overdraft_limit=20), make_account(), make_account()
    make_transfer(bank, wallet, 100)

    with pytest.raises(errors.InsufficientFunds) as refused:
        post((wallet, shop, 100), (bank, wallet, 5), (wallet, fees, 30))

    # 100 + 5 - 100 - 30 = -25 is beyond -20: the debit that takes it past, the third posting, is named.
    assert refused.value.field == "postings[2].amount"
    assert refused.value.params == {"available": 120, "requested": 125}
    assert (balance(wallet), balance(shop), balance(fees)) == (100, 0, 0)
    assert Transfer.objects.count() == 1
    assert IdempotencyRecord.objects.get(key="multi").error == refused.value.as_outcome()


def test_the_refusal_names_the_posting_that_fails_not_the_first_one_of_the_account(make_account):
    euros, other = make_account("EUR", overdraft_limit=0), make_account("EUR")
    card, sales = make_account(), make_account()
    post((other, euros, 10), key="fund")

    with pytest.raises(errors.InsufficientFunds) as short:
        post((euros, other, 5), (card, sales, 1), (euros, other, 6), key="short")
    with pytest.raises(errors.BalanceOutOfRange) as huge:  # the sales account's, past 2^63 - 1
        post((card, sales, 1), (other, euros, 1), (card, sales, INT64_MAX), key="huge")

    assert short.value.field == "postings[2].amount"
    assert huge.value.field == "postings[2].amount"
    assert (balance(euros), balance(card)) == (10, 0)


@pytest.mark.parametrize(
    ("broken", "error", "field"),
    [
        ("same_account", errors.SameAccount, "postings[1].to"),
        ("currency", errors.CurrencyMismatch, "postings[1].from"),
        ("frozen_to", errors.AccountNotActive, "postings[1].to"),
        ("unknown_from", errors.AccountNotFound, "postings[1].from"),
    ],
)
def test_a_refusal_names_the_failing_posting_and_writes_nothing(make_account, broken, error, field):
    a, b, c = make_account(), make_account(), make_account()
    second = Posting(b.id, c.id, 5, "USD")
    if broken == "same_account":
        second = Posting(b.id, b.id, 5, "USD")
    elif broken == "currency":
        second = Posting(make_account("EUR").id, c.id, 5, "USD")
    elif broken == "frozen_to":
        Account.objects.filter(id=c.id).update(status=AccountStatus.FROZEN)
    elif broken == "unknown_from":
        second = Posting(UUID("01900000-0000-7000-8000-000000000000"), c.id, 5, "USD")

    with pytest.raises(error) as refused:
        transfer_create_postings(idempotency_key="bad", postings=[Posting(a.id, b.id, 5, "USD"), second])

    assert refused.value.field == field
    assert not Transfer.objects.exists()
    assert not Entry.objects.exists()
    assert (balance(a), balance(b)) == (0, 0)


def test_invalid_postings_are_refused_before_the_key_is_claimed(make_account):
    a, b = make_account(), make_account()

    with pytest.raises(errors.InvalidRequest, match="1 to 100 postings"):
        transfer_create_postings(idempotency_key="k", postings=[])
    with pytest.raises(errors.InvalidRequest) as too_much:
        transfer_create_postings(
            idempotency_key="k", postings=[Posting(a.id, b.id, 1, "USD"), Posting(a.id, b.id, INT64_MAX + 1, "USD")]
        )
    assert too_much.value.field == "postings[1].amount"
    with pytest.raises(errors.UnknownCurrency) as unknown:
        transfer_create_postings(
            idempotency_key="k", postings=[Posting(a.id, b.id, 1, "USD"), Posting(a.id, b.id, 1, "XYZ")]
        )
    assert unknown.value.field == "postings[1].currency"
    with pytest.raises(errors.InvalidRequest) as long_description:
        transfer_create_postings(idempotency_key="k", postings=[Posting(a.id, b.id, 1, "USD")], description="x" * 501)
    assert long_description.value.field == "description"
    assert not IdempotencyRecord.objects.exists()


def test_the_same_postings_replay_and_another_order_is_a_conflict(make_account):
    a, b, c = make_account(), make_account(), make_account()

    first = post((a, b, 1), (b, c, 2), key="order")
    again = post((a, b, 1), (b, c, 2), key="order")

    assert again.replayed
    assert again.document == first.document
    with pytest.raises(errors.IdempotencyKeyReused):
        post((b, c, 2), (a, b, 1), key="order")
    with pytest.raises(errors.IdempotencyKeyReused):
        post((a, b, 1), (b, c, 2), key="order", description="changed")
    assert Transfer.objects.count() == 1


def test_one_posting_in_the_postings_form_is_a_transfer_with_its_columns_but_another_request(make_account):
    a, b = make_account(), make_account()

    outcome = post((a, b, 7), key="one")

    transfer = Transfer.objects.get()
    assert (transfer.from_account_id, transfer.to_account_id, transfer.amount, transfer.posting_count) == (
        a.id,
        b.id,
        7,
        1,
    )
    assert outcome.document["from"] == str(a.id)
    with pytest.raises(errors.IdempotencyKeyReused):
        transfer_create(idempotency_key="one", from_account_id=a.id, to_account_id=b.id, amount=7, currency="USD")


def test_a_single_transfer_keeps_its_description_and_lists_its_one_posting(make_account, make_transfer):
    a, b = make_account(), make_account()

    outcome = make_transfer(a, b, 9, description="Lunch")

    assert outcome.document["description"] == "Lunch"
    assert outcome.document["postings"] == [{"from": str(a.id), "to": str(b.id), "amount": 9, "currency": "USD"}]
    assert Transfer.objects.get().description == "Lunch"


# --- batches ------------------------------------------------------------------------------------


def _batch(source: Account, destination: Account, count: int, prefix: str) -> list[TransferRequest]:
    return [
        transfer_request_single(
            idempotency_key=f"{prefix}-{n}",
            from_account_id=source.id,
            to_account_id=destination.id,
            amount=n + 1,
            currency="USD",
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("atomic", [True, False])
def test_a_batch_kicks_the_relay_once_when_it_commits(make_account, monkeypatch, atomic):
    source, destination = make_account(), make_account()
    kicks: list[None] = []
    monkeypatch.setattr("apps.outbox.services.relay_kick", lambda: kicks.append(None))

    outcomes = transfer_batch_create(atomic=atomic, requests=_batch(source, destination, 50, "kick"))

    assert all(not isinstance(outcome, errors.LedgerError) for outcome in outcomes)
    assert len(kicks) == 1
    assert balance(destination) == sum(range(1, 51))


def test_a_refused_atomic_batch_raises_with_every_outcome_and_kicks_nothing(make_account, monkeypatch):
    source, destination = make_account(overdraft_limit=0), make_account()
    kicks: list[None] = []
    monkeypatch.setattr("apps.outbox.services.relay_kick", lambda: kicks.append(None))
    requests = [*_batch(destination, source, 1, "top-up"), *_batch(source, destination, 2, "spend")]

    with pytest.raises(errors.BatchRefused) as refused:
        transfer_batch_create(atomic=True, requests=requests)

    first, second, third = refused.value.results
    assert (first, second) == ("posted", "posted")
    assert isinstance(third, errors.InsufficientFunds)
    assert refused.value.params == {"refused": 1}
    assert kicks == []
    assert Transfer.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
