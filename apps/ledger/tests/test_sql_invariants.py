"""The invariants PostgreSQL enforces by itself (sql/0002_invariants.sql), whatever code writes.

Each test runs the violating SQL directly. Immediate checks fail at the statement; the
deferred constraint triggers fail at COMMIT, which is why these tests are transactional
and why they note that the block reached its end before the error.
"""

from __future__ import annotations

from uuid import UUID

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from apps.accounts.models import Account
from apps.ledger.models import Entry, Transfer
from apps.ledger.services import HoldRequest, Posting, transfer_create_postings
from creditledger.ids import new_id

pytestmark = pytest.mark.django_db(transaction=True)


def insert_transfer(cursor, *, source: Account, destination: Account, amount: int, currency: str = "USD") -> UUID:
    transfer_id = new_id()
    cursor.execute(
        "INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id, amount, "
        "currency, status, metadata, created_at, updated_at) "
        "VALUES (%s, %s, 'raw-sql', %s, %s, %s, %s, 'posted', '{}', now(), now())",
        [transfer_id, f"raw-{transfer_id}", source.id, destination.id, amount, currency],
    )
    return transfer_id


def insert_entry(
    cursor,
    *,
    transfer_id: UUID,
    account: Account,
    counterparty: Account,
    amount: int,
    sequence: int,
    balance_after: int,
    currency: str = "USD",
) -> None:
    cursor.execute(
        "INSERT INTO entry (id, transfer_id, account_id, counterparty_id, currency, amount, sequence, balance_after, "
        "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())",
        [new_id(), transfer_id, account.id, counterparty.id, currency, amount, sequence, balance_after],
    )


def set_balance(cursor, account: Account, *, balance: int, last_sequence: int) -> None:
    cursor.execute(
        "UPDATE account SET balance = %s, last_sequence = %s WHERE id = %s", [balance, last_sequence, account.id]
    )


def raw_transfer(cursor, *, source: Account, destination: Account, amount: int) -> UUID:
    """A complete, correct first transfer between two fresh accounts, written by hand."""
    transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=amount)
    insert_entry(
        cursor,
        transfer_id=transfer_id,
        account=source,
        counterparty=destination,
        amount=-amount,
        sequence=1,
        balance_after=-amount,
    )
    insert_entry(
        cursor,
        transfer_id=transfer_id,
        account=destination,
        counterparty=source,
        amount=amount,
        sequence=1,
        balance_after=amount,
    )
    set_balance(cursor, source, balance=-amount, last_sequence=1)
    set_balance(cursor, destination, balance=amount, last_sequence=1)
    return transfer_id


@pytest.fixture
def pair(make_account) -> tuple[Account, Account]:
    return make_account(), make_account()


def test_a_correct_hand_written_transfer_commits(pair):
    """The control for the tests below: the helpers alone break nothing."""
    source, destination = pair
    with transaction.atomic(), connection.cursor() as cursor:
        transfer_id = raw_transfer(cursor, source=source, destination=destination, amount=100)

    assert Transfer.objects.filter(id=transfer_id).exists()
    assert Entry.objects.filter(transfer_id=transfer_id).count() == 2
    source.refresh_from_db()
    assert (source.balance, source.last_sequence) == (-100, 1)


# --- append-only journal ------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entry SET amount = amount * 2, balance_after = balance_after * 2",
        "UPDATE entry SET created_at = now() - interval '1 day'",
        "DELETE FROM entry",
    ],
)
def test_entries_cannot_be_updated_or_deleted(pair, make_transfer, statement):
    source, destination = pair
    make_transfer(source, destination, 100)

    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)

    assert sorted(Entry.objects.values_list("amount", "balance_after")) == [(-100, -100), (100, 100)]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE transfer SET amount = 1",
        "UPDATE transfer SET metadata = '{\"edited\": true}'",
        "UPDATE transfer SET status = 'posted', updated_at = now()",
        "DELETE FROM transfer",
    ],
)
def test_posted_transfers_cannot_be_updated_or_deleted(pair, make_transfer, statement):
    source, destination = pair
    transfer = make_transfer(source, destination, 100).transfer

    with pytest.raises(IntegrityError, match="is posted"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)

    stored = Transfer.objects.get()
    assert (stored.id, stored.amount, stored.metadata) == (transfer.id, 100, {})


@pytest.mark.parametrize(("status", "refusal"), [("pending", "only the status"), ("posted", "is posted")])
def test_who_created_a_transfer_never_changes(pair, make_transfer, status, refusal):
    source, destination = pair
    hold = HoldRequest() if status == "pending" else None
    transfer = make_transfer(source, destination, 100, hold=hold).transfer

    with pytest.raises(IntegrityError, match=refusal), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE transfer SET actor = 'user:mallory', status = 'voided'")

    assert Transfer.objects.get(id=transfer.id).actor == "system"


# --- accounts -------------------------------------------------------------------------------


def test_accounts_cannot_be_deleted(make_account):
    account = make_account()  # no entries: only the trigger stands in the way

    with pytest.raises(IntegrityError, match="never deleted"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM account WHERE id = %s", [account.id])

    assert Account.objects.filter(id=account.id).exists()


def test_an_account_currency_never_changes(make_account):
    account = make_account("USD")  # no entries yet, so the entry foreign key is not what refuses

    with pytest.raises(IntegrityError, match="never change"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE account SET currency = 'EUR' WHERE id = %s", [account.id])

    account.refresh_from_db()
    assert account.currency_id == "USD"


def test_an_account_is_born_empty(make_account):
    with pytest.raises(IntegrityError, match="must start with balance 0"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO account (id, currency, metadata, status, balance, last_sequence, created_at, updated_at) "
                "VALUES (%s, 'USD', '{}', 'active', 500, 0, now(), now())",
                [new_id()],
            )

    assert not Account.objects.exists()


def test_a_balance_below_the_overdraft_limit_is_refused(make_account):
    source, destination = make_account(overdraft_limit=50), make_account()

    # Entries and balances all agree; only the CHECK on the account can refuse it.
    with pytest.raises(IntegrityError, match="account_balance_within_overdraft"):
        with transaction.atomic(), connection.cursor() as cursor:
            raw_transfer(cursor, source=source, destination=destination, amount=51)

    assert not Entry.objects.exists()
    source.refresh_from_db()
    assert source.balance == 0


def test_a_balance_down_to_the_overdraft_limit_is_accepted(make_account):
    source, destination = make_account(overdraft_limit=50), make_account()

    with transaction.atomic(), connection.cursor() as cursor:
        raw_transfer(cursor, source=source, destination=destination, amount=50)

    source.refresh_from_db()
    assert source.balance == -50


# --- closed accounts (sql/0007_account_closed_final.sql) ----------------------------------------


def close(cursor, account: Account) -> None:
    cursor.execute("UPDATE account SET status = 'closed' WHERE id = %s", [account.id])


def test_an_account_with_a_balance_cannot_be_closed(pair):
    source, destination = pair
    with transaction.atomic(), connection.cursor() as cursor:
        raw_transfer(cursor, source=source, destination=destination, amount=10)

    with pytest.raises(IntegrityError, match="account_closed_balance_zero"):
        with transaction.atomic(), connection.cursor() as cursor:
            close(cursor, destination)

    destination.refresh_from_db()
    assert destination.status == "active"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE account SET status = 'active'",
        "UPDATE account SET status = 'frozen'",
        "UPDATE account SET name = 'reopened'",
        "UPDATE account SET overdraft_limit = 0",
        "UPDATE account SET metadata = '{\"a\": 1}'",
        "UPDATE account SET updated_at = now() + interval '1 second'",
    ],
)
def test_a_closed_account_never_changes_again(make_account, statement):
    account = make_account(name="closed")
    with transaction.atomic(), connection.cursor() as cursor:
        close(cursor, account)

    with pytest.raises(IntegrityError, match="is closed"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement + " WHERE id = %s", [account.id])

    account.refresh_from_db()
    assert (account.status, account.name, account.overdraft_limit, account.metadata) == ("closed", "closed", None, {})


def test_an_update_that_changes_nothing_on_a_closed_account_is_harmless(make_account):
    account = make_account()
    with transaction.atomic(), connection.cursor() as cursor:
        close(cursor, account)
        cursor.execute("UPDATE account SET status = status WHERE id = %s", [account.id])

    account.refresh_from_db()
    assert account.status == "closed"


# --- balanced transfers, checked at commit -----------------------------------------------------


def test_a_transfer_whose_entries_do_not_sum_to_zero_is_refused_at_commit(pair):
    source, destination = pair
    reached_commit = False
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic(), connection.cursor() as cursor:
            transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=100)
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=source,
                counterparty=destination,
                amount=-100,
                sequence=1,
                balance_after=-100,
            )
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=destination,
                counterparty=source,
                amount=90,
                sequence=1,
                balance_after=90,
            )
            set_balance(cursor, source, balance=-100, last_sequence=1)
            set_balance(cursor, destination, balance=90, last_sequence=1)
            reached_commit = True

    assert reached_commit
    assert not Transfer.objects.exists()
    assert not Entry.objects.exists()


@pytest.mark.parametrize("mismatch", ["amount", "direction", "third_account", "counterparty", "extra_pair"])
def test_balanced_entries_that_do_not_match_the_transfer_are_refused_at_commit(make_account, mismatch):
    source, destination, other = make_account(), make_account(), make_account()
    # The transfer says: 100 from source to destination.
    debit, credit, amount = (source, destination, 100)
    debit_counterparty, credit_counterparty = destination, source
    if mismatch == "amount":
        amount = 70
    elif mismatch == "direction":
        debit, credit = destination, source
        debit_counterparty, credit_counterparty = source, destination
    elif mismatch == "third_account":
        credit, debit_counterparty = other, other
    elif mismatch == "counterparty":
        debit_counterparty = other

    reached_commit = False
    with pytest.raises(IntegrityError, match="must have one debit"):
        with transaction.atomic(), connection.cursor() as cursor:
            transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=100)
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=debit,
                counterparty=debit_counterparty,
                amount=-amount,
                sequence=1,
                balance_after=-amount,
            )
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=credit,
                counterparty=credit_counterparty,
                amount=amount,
                sequence=1,
                balance_after=amount,
            )
            set_balance(cursor, debit, balance=-amount, last_sequence=1)
            set_balance(cursor, credit, balance=amount, last_sequence=1)
            if mismatch == "extra_pair":  # the right two entries, plus a balanced pair too many
                insert_entry(
                    cursor,
                    transfer_id=transfer_id,
                    account=debit,
                    counterparty=credit,
                    amount=-5,
                    sequence=2,
                    balance_after=-amount - 5,
                )
                insert_entry(
                    cursor,
                    transfer_id=transfer_id,
                    account=credit,
                    counterparty=debit,
                    amount=5,
                    sequence=2,
                    balance_after=amount + 5,
                )
                set_balance(cursor, debit, balance=-amount - 5, last_sequence=2)
                set_balance(cursor, credit, balance=amount + 5, last_sequence=2)
            reached_commit = True

    assert reached_commit
    assert not Entry.objects.exists()


def test_a_posted_transfer_without_entries_is_refused_at_commit(pair):
    source, destination = pair
    reached_commit = False
    with pytest.raises(IntegrityError, match="must have one debit"):
        with transaction.atomic(), connection.cursor() as cursor:
            insert_transfer(cursor, source=source, destination=destination, amount=100)
            reached_commit = True

    assert reached_commit
    assert not Transfer.objects.exists()


def insert_multi_leg_transfer(cursor, *, posting_count: int) -> UUID:
    """A posted transfer of several postings: no from, to, amount or currency of its own."""
    transfer_id = new_id()
    cursor.execute(
        "INSERT INTO transfer (id, idempotency_key, request_fingerprint, posting_count, status, metadata, "
        "created_at, updated_at) VALUES (%s, %s, 'raw-sql', %s, 'posted', '{}', now(), now())",
        [transfer_id, f"raw-{transfer_id}", posting_count],
    )
    return transfer_id


def insert_posting_entry(cursor, *, transfer_id, account, counterparty, amount, sequence, posting_index) -> None:
    cursor.execute(
        "INSERT INTO entry (id, transfer_id, account_id, counterparty_id, currency, amount, sequence, balance_after, "
        "posting_index, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
        [
            new_id(),
            transfer_id,
            account.id,
            counterparty.id,
            account.currency_id,
            amount,
            sequence,
            amount,
            posting_index,
        ],
    )
    set_balance(cursor, account, balance=amount, last_sequence=sequence)


@pytest.fixture
def two_currencies(make_account) -> dict[str, Account]:
    return {
        "buyer_usd": make_account("USD"),
        "shop_usd": make_account("USD"),
        "shop_credits": make_account("CREDITS"),
        "buyer_credits": make_account("CREDITS"),
    }


def test_a_correct_hand_written_multi_leg_transfer_commits(two_currencies):
    a = two_currencies
    with transaction.atomic(), connection.cursor() as cursor:
        transfer_id = insert_multi_leg_transfer(cursor, posting_count=2)
        insert_posting_entry(
            cursor,
            transfer_id=transfer_id,
            account=a["buyer_usd"],
            counterparty=a["shop_usd"],
            amount=-10,
            sequence=1,
            posting_index=0,
        )
        insert_posting_entry(
            cursor,
            transfer_id=transfer_id,
            account=a["shop_usd"],
            counterparty=a["buyer_usd"],
            amount=10,
            sequence=1,
            posting_index=0,
        )
        insert_posting_entry(
            cursor,
            transfer_id=transfer_id,
            account=a["shop_credits"],
            counterparty=a["buyer_credits"],
            amount=-1000,
            sequence=1,
            posting_index=1,
        )
        insert_posting_entry(
            cursor,
            transfer_id=transfer_id,
            account=a["buyer_credits"],
            counterparty=a["shop_credits"],
            amount=1000,
            sequence=1,
            posting_index=1,
        )

    assert Entry.objects.filter(transfer_id=transfer_id).count() == 4


def test_a_multi_leg_transfer_that_balances_overall_but_not_per_currency_is_refused_at_commit(two_currencies):
    a = two_currencies
    reached_commit = False
    # -10 USD against +10 CREDITS: the amounts sum to zero, each currency does not.
    with pytest.raises(IntegrityError, match=r"does not balance: (USD sums to -10|CREDITS sums to 10)"):
        with transaction.atomic(), connection.cursor() as cursor:
            transfer_id = insert_multi_leg_transfer(cursor, posting_count=2)
            insert_posting_entry(
                cursor,
                transfer_id=transfer_id,
                account=a["buyer_usd"],
                counterparty=a["buyer_credits"],
                amount=-10,
                sequence=1,
                posting_index=0,
            )
            insert_posting_entry(
                cursor,
                transfer_id=transfer_id,
                account=a["buyer_credits"],
                counterparty=a["buyer_usd"],
                amount=10,
                sequence=1,
                posting_index=0,
            )
            reached_commit = True

    assert reached_commit
    assert not Transfer.objects.exists()


@pytest.mark.parametrize("mismatch", ["missing_posting", "unpaired", "index_out_of_range"])
def test_a_multi_leg_transfer_whose_entries_do_not_pair_up_into_its_postings_is_refused_at_commit(
    two_currencies, make_account, mismatch
):
    a = two_currencies
    other = make_account("USD")
    reached_commit = False
    with pytest.raises(IntegrityError, match="for each of its 2 postings"):
        with transaction.atomic(), connection.cursor() as cursor:
            transfer_id = insert_multi_leg_transfer(cursor, posting_count=2)
            second_index = 2 if mismatch == "index_out_of_range" else 1
            # Balanced in USD, but the debit's counterparty is not the credited account when unpaired.
            insert_posting_entry(
                cursor,
                transfer_id=transfer_id,
                account=a["buyer_usd"],
                counterparty=other if mismatch == "unpaired" else a["shop_usd"],
                amount=-10,
                sequence=1,
                posting_index=0,
            )
            insert_posting_entry(
                cursor,
                transfer_id=transfer_id,
                account=a["shop_usd"],
                counterparty=a["buyer_usd"],
                amount=10,
                sequence=1,
                posting_index=0,
            )
            if mismatch != "missing_posting":
                insert_posting_entry(
                    cursor,
                    transfer_id=transfer_id,
                    account=a["shop_credits"],
                    counterparty=a["buyer_credits"],
                    amount=-5,
                    sequence=1,
                    posting_index=second_index,
                )
                insert_posting_entry(
                    cursor,
                    transfer_id=transfer_id,
                    account=a["buyer_credits"],
                    counterparty=a["shop_credits"],
                    amount=5,
                    sequence=1,
                    posting_index=second_index,
                )
            reached_commit = True

    assert reached_commit
    assert not Entry.objects.exists()


def test_a_multi_leg_transfer_cannot_carry_single_posting_columns(pair):
    source, destination = pair
    with pytest.raises(IntegrityError, match="transfer_single_posting_columns"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id, "
                "amount, currency, posting_count, status, metadata, created_at, updated_at) "
                "VALUES (%s, 'raw', 'raw-sql', %s, %s, 100, 'USD', 2, 'posted', '{}', now(), now())",
                [new_id(), source.id, destination.id],
            )

    assert not Transfer.objects.exists()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE transfer SET description = 'edited'", "UPDATE transfer SET posting_count = 1"],
)
def test_the_description_and_postings_of_a_transfer_never_change(make_account, statement):
    a, b, c = make_account(), make_account(), make_account()
    transfer_create_postings(
        idempotency_key="immutable",
        postings=[Posting(a.id, b.id, 1, "USD"), Posting(b.id, c.id, 1, "USD")],
        description="Why",
    )

    with pytest.raises(IntegrityError, match="is posted"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)

    assert Transfer.objects.values_list("description", "posting_count").get() == ("Why", 2)


# --- entries agree with their account ----------------------------------------------------------


def test_an_entry_in_another_currency_than_its_account_is_refused(make_account):
    source, destination = make_account("USD"), make_account("USD")

    with pytest.raises(IntegrityError, match="entry_account_currency_fk"):
        with transaction.atomic(), connection.cursor() as cursor:
            transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=100, currency="EUR")
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=source,
                counterparty=destination,
                amount=-100,
                sequence=1,
                balance_after=-100,
                currency="EUR",
            )

    assert not Entry.objects.exists()


def test_a_sequence_gap_is_refused(pair):
    source, destination = pair

    with pytest.raises(IntegrityError, match="sequence gap"), transaction.atomic(), connection.cursor() as cursor:
        transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=100)
        insert_entry(
            cursor,
            transfer_id=transfer_id,
            account=source,
            counterparty=destination,
            amount=-100,
            sequence=2,
            balance_after=-100,
        )

    assert not Entry.objects.exists()


def test_a_repeated_sequence_number_is_refused(pair, make_transfer):
    source, destination = pair
    make_transfer(source, destination, 100)

    with pytest.raises(IntegrityError, match="entry_account_sequence_unique"):
        with transaction.atomic(), connection.cursor() as cursor:
            transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=5)
            # Continues the chain from entry 0 (balance 0) but reuses number 1.
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=source,
                counterparty=destination,
                amount=-5,
                sequence=1,
                balance_after=-5,
            )

    assert Entry.objects.filter(account_id=source.id).count() == 1


def test_a_wrong_balance_after_is_refused(pair, make_transfer):
    source, destination = pair
    make_transfer(source, destination, 100)  # source entry 1: balance_after -100

    with pytest.raises(IntegrityError, match="balance_after"), transaction.atomic(), connection.cursor() as cursor:
        transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=10)
        insert_entry(
            cursor,
            transfer_id=transfer_id,
            account=source,
            counterparty=destination,
            amount=-10,
            sequence=2,
            balance_after=-10,
        )  # should be -110

    assert Entry.objects.filter(account_id=source.id).count() == 1


@pytest.mark.parametrize(("balance", "last_sequence"), [(-99, 1), (-100, 2), (0, 0)])
def test_an_account_balance_that_disagrees_with_its_latest_entry_is_refused_at_commit(
    pair, make_transfer, balance, last_sequence
):
    source, destination = pair
    make_transfer(source, destination, 100)  # source: balance -100 at sequence 1

    reached_commit = False
    with pytest.raises(IntegrityError, match="disagrees with its entries"):
        with transaction.atomic(), connection.cursor() as cursor:
            set_balance(cursor, source, balance=balance, last_sequence=last_sequence)
            reached_commit = True

    assert reached_commit
    source.refresh_from_db()
    assert (source.balance, source.last_sequence) == (-100, 1)


def test_a_balance_without_entries_is_refused_at_commit(make_account):
    account = make_account()

    reached_commit = False
    with pytest.raises(IntegrityError, match="disagrees with its entries"):
        with transaction.atomic(), connection.cursor() as cursor:
            set_balance(cursor, account, balance=1_000, last_sequence=0)
            reached_commit = True

    assert reached_commit
    account.refresh_from_db()
    assert account.balance == 0


def test_entries_written_without_updating_the_account_are_refused_at_commit(pair):
    source, destination = pair
    reached_commit = False
    with pytest.raises(IntegrityError, match="disagrees with its entries"):
        with transaction.atomic(), connection.cursor() as cursor:
            transfer_id = insert_transfer(cursor, source=source, destination=destination, amount=100)
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=source,
                counterparty=destination,
                amount=-100,
                sequence=1,
                balance_after=-100,
            )
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=destination,
                counterparty=source,
                amount=100,
                sequence=1,
                balance_after=100,
            )
            reached_commit = True

    assert reached_commit
    assert not Entry.objects.exists()


# --- the migration ------------------------------------------------------------------------------


def hand_reversal(cursor, *, original_id: UUID, payer: Account, payee: Account, amount: int, balances: tuple[int, int]):
    """A second transfer between two accounts, written by hand with reversal_of = `original_id`:
    `amount` from `payer` to `payee`, whose balances were `balances` (sequence 1 each)."""
    reversal_id = new_id()
    cursor.execute(
        "INSERT INTO transfer (id, idempotency_key, request_fingerprint, from_account_id, to_account_id, amount, "
        "currency, status, metadata, reversal_of, created_at, updated_at) "
        "VALUES (%s, %s, 'raw-sql', %s, %s, %s, 'USD', 'posted', '{}', %s, now(), now())",
        [reversal_id, f"raw-{reversal_id}", payer.id, payee.id, amount, original_id],
    )
    payer_after, payee_after = balances[0] - amount, balances[1] + amount
    insert_entry(
        cursor,
        transfer_id=reversal_id,
        account=payer,
        counterparty=payee,
        amount=-amount,
        sequence=2,
        balance_after=payer_after,
    )
    insert_entry(
        cursor,
        transfer_id=reversal_id,
        account=payee,
        counterparty=payer,
        amount=amount,
        sequence=2,
        balance_after=payee_after,
    )
    set_balance(cursor, payer, balance=payer_after, last_sequence=2)
    set_balance(cursor, payee, balance=payee_after, last_sequence=2)
    return reversal_id


@pytest.fixture
def paid(pair) -> UUID:
    """pair[0] paid pair[1] 100 USD, by hand."""
    with transaction.atomic(), connection.cursor() as cursor:
        return raw_transfer(cursor, source=pair[0], destination=pair[1], amount=100)


def test_a_hand_written_reversal_with_its_counter_commits(pair, paid):
    source, destination = pair
    with transaction.atomic(), connection.cursor() as cursor:
        hand_reversal(cursor, original_id=paid, payer=destination, payee=source, amount=40, balances=(100, -100))
        cursor.execute("UPDATE transfer SET reversed_amount = 40 WHERE id = %s", [paid])

    assert Transfer.objects.get(id=paid).reversed_amount == 40


def test_a_reversal_without_its_counter_is_refused_at_commit(pair, paid):
    source, destination = pair
    reached_commit = False
    with pytest.raises(IntegrityError, match="reversed_amount 0 but its reversals move back 40"):
        with transaction.atomic(), connection.cursor() as cursor:
            hand_reversal(cursor, original_id=paid, payer=destination, payee=source, amount=40, balances=(100, -100))
            reached_commit = True
    assert reached_commit
    assert Transfer.objects.count() == 1


def test_a_counter_without_a_reversal_is_refused_at_commit(paid):
    with pytest.raises(IntegrityError, match="reversed_amount 10 but its reversals move back 0"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE transfer SET reversed_amount = 10 WHERE id = %s", [paid])
    assert Transfer.objects.get(id=paid).reversed_amount == 0


def test_the_counter_never_exceeds_the_transfer(paid):
    with pytest.raises(IntegrityError, match="moved 100: its reversals cannot move back 101"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE transfer SET reversed_amount = 101 WHERE id = %s", [paid])


def test_the_counter_never_goes_down_and_nothing_else_changes_with_it(pair, paid):
    source, destination = pair
    with transaction.atomic(), connection.cursor() as cursor:
        hand_reversal(cursor, original_id=paid, payer=destination, payee=source, amount=40, balances=(100, -100))
        cursor.execute("UPDATE transfer SET reversed_amount = 40 WHERE id = %s", [paid])

    for statement in (
        "UPDATE transfer SET reversed_amount = 30 WHERE id = %s",
        "UPDATE transfer SET reversed_amount = 50, description = 'edited' WHERE id = %s",
        "UPDATE transfer SET reversal_of = NULL WHERE reversal_of = %s",
    ):
        with pytest.raises(IntegrityError, match="is posted"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, [paid])


def test_a_reversal_that_does_not_invert_the_postings_is_refused_at_commit(pair, paid):
    source, destination = pair
    reached_commit = False
    with pytest.raises(IntegrityError, match="does not invert its postings"):
        with transaction.atomic(), connection.cursor() as cursor:
            # The same direction as the original: it pays more instead of paying back.
            hand_reversal(cursor, original_id=paid, payer=source, payee=destination, amount=40, balances=(-100, 100))
            cursor.execute("UPDATE transfer SET reversed_amount = 40 WHERE id = %s", [paid])
            reached_commit = True
    assert reached_commit
    assert Transfer.objects.get(id=paid).reversed_amount == 0


LEDGER_TRIGGERS = {
    "transfer_reversals",
    "entry_immutable",
    "transfer_immutable",
    "account_guard",
    "entry_chain",
    "entry_balanced",
    "transfer_balanced",
    "account_matches_entries",
    "account_closed_final",
}
LEDGER_FUNCTIONS = {
    "ledger_check_reversals",
    "ledger_reversal_deferred_check",
    "ledger_reverse_transfer",
    "ledger_transfer_total",
    "ledger_idempotent_outcome",
    "ledger_entry_immutable",
    "ledger_transfer_immutable",
    "ledger_account_guard",
    "ledger_entry_chain",
    "ledger_check_transfer",
    "ledger_check_account",
    "ledger_entry_deferred_check",
    "ledger_transfer_deferred_check",
    "ledger_account_deferred_check",
    "ledger_account_closed_final",
}
HOLD_TRIGGERS = {"transfer_hold_checked", "account_pending_matches_holds", "transfer_hold_immutable"}
HOLD_FUNCTIONS = {
    "ledger_pending_debits",
    "ledger_pending_credits",
    "ledger_hold_event_data",
    "ledger_hold_release",
    "ledger_hold_command",
    "ledger_holds_expire",
    "ledger_hold_immutable",
    "ledger_check_account_pending",
    "ledger_account_pending_deferred_check",
    "ledger_hold_deferred_check",
    "ledger_write_postings",
}
REVERSAL_FUNCTIONS = {
    "ledger_check_reversals",
    "ledger_reversal_deferred_check",
    "ledger_reverse_transfer",
    "ledger_transfer_total",
    "ledger_idempotent_outcome",
}


def _installed_invariants() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid IN ('entry'::regclass, 'transfer'::regclass, 'account'::regclass) "
            "UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid = to_regclass('transfer_hold') "
            "UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'ledger\\_%%' "
            "UNION ALL SELECT conname FROM pg_constraint "
            "WHERE conname IN ('entry_account_currency_fk', 'account_closed_balance_zero')"
        )
        return {name for (name,) in cursor.fetchall()}


def _function_definition(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT string_agg(pg_get_functiondef(oid), ' ') FROM pg_proc WHERE proname = %s", [name])
        return cursor.fetchone()[0]


def test_the_invariants_migration_reverses_and_reapplies(make_account):
    everything = (
        LEDGER_TRIGGERS
        | LEDGER_FUNCTIONS
        | HOLD_TRIGGERS
        | HOLD_FUNCTIONS
        | {"entry_account_currency_fk", "account_closed_balance_zero"}
    )
    assert _installed_invariants() >= everything
    assert "p_reversal_of" in _function_definition("ledger_post_transfer")
    assert "reversal_of" in _function_definition("ledger_write_postings")

    try:
        # 0013 reversed (reversals' SQL): the holds versions are back, v4/v4/v3 and
        # ledger_write_postings v1; the reversal functions are gone, the holds' are there.
        call_command("migrate", "ledger", "0012", verbosity=0)
        installed = _installed_invariants()
        assert installed.isdisjoint(REVERSAL_FUNCTIONS | {"transfer_reversals"})
        assert installed >= HOLD_TRIGGERS | HOLD_FUNCTIONS
        post_transfer = _function_definition("ledger_post_transfer")
        assert "p_pending" in post_transfer
        assert "reversal_of" not in post_transfer
        assert "reversal" not in _function_definition("ledger_write_postings")
        immutable = _function_definition("ledger_transfer_immutable")
        assert "may only become posted, voided or expired" in immutable
        assert "reversed_amount" not in immutable
        document = _function_definition("ledger_transfer_document")
        assert "'held'" in document
        assert "reversal" not in document
        # 0012 reversed: the columns go; the holds still work.
        call_command("migrate", "ledger", "0011", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'transfer' "
                "AND column_name IN ('reversal_of', 'reversed_amount')"
            )
            assert cursor.fetchone()[0] == 0
        # 0011 reversed (holds' SQL): version 3 of ledger_post_transfer, without holds.
        call_command("migrate", "ledger", "0010", verbosity=0)
        assert _installed_invariants().isdisjoint(HOLD_TRIGGERS | HOLD_FUNCTIONS)
        assert "p_pending" not in _function_definition("ledger_post_transfer")
        assert "expires_at" not in _function_definition("ledger_transfer_immutable")
        call_command("migrate", "ledger", "0006", verbosity=0)
        assert "account_closed_final" not in _installed_invariants()
        call_command("migrate", "ledger", "0004", verbosity=0)
        # 0006 and 0005 reversed: version 1 of each function they redefined is back.
        assert "ledger_outbox_row" in _installed_invariants()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_functiondef('ledger_transfer_immutable'::regproc)")
            assert "metadata" not in cursor.fetchone()[0]
        call_command("migrate", "ledger", "0001", verbosity=0)
        assert _installed_invariants().isdisjoint(everything)
    finally:
        call_command("migrate", verbosity=0)  # whatever happened, leave the database migrated

    assert _installed_invariants() >= everything
    account = make_account()
    with pytest.raises(IntegrityError, match="never deleted"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM account WHERE id = %s", [account.id])


def _hold(make_account):
    from apps.ledger.services import HoldRequest, transfer_create

    source, destination = make_account(), make_account()
    outcome = transfer_create(
        idempotency_key=f"sql-hold-{new_id()}",
        from_account_id=source.id,
        to_account_id=destination.id,
        amount=50,
        currency="USD",
        hold=HoldRequest(),
    )
    return source, destination, outcome.transfer_id


def test_pending_totals_must_match_the_open_holds(make_account):
    source, _, _ = _hold(make_account)
    with pytest.raises(IntegrityError, match="disagree with its open holds"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE account SET pending_debits = 0 WHERE id = %s", [source.id])


def test_a_pending_transfer_has_no_entries_and_a_hold_only_closes(make_account):
    source, destination, transfer_id = _hold(make_account)
    with pytest.raises(IntegrityError, match="may only close"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE transfer_hold SET amount = 10 WHERE transfer_id = %s", [transfer_id])
    with pytest.raises(IntegrityError, match=r"pending transfer .* must have no entries"):
        with transaction.atomic(), connection.cursor() as cursor:
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=source,
                counterparty=destination,
                amount=-50,
                sequence=1,
                balance_after=-50,
            )
            insert_entry(
                cursor,
                transfer_id=transfer_id,
                account=destination,
                counterparty=source,
                amount=50,
                sequence=1,
                balance_after=50,
            )
            cursor.execute("UPDATE account SET balance = -50, last_sequence = 1 WHERE id = %s", [source.id])
            cursor.execute("UPDATE account SET balance = 50, last_sequence = 1 WHERE id = %s", [destination.id])


def test_status_moves_only_from_pending_to_a_final_one(make_account):
    _, _, transfer_id = _hold(make_account)
    with pytest.raises(IntegrityError, match="may only become posted, voided or expired"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE transfer SET status = 'pending', updated_at = now() WHERE id = %s", [transfer_id])
    with pytest.raises(IntegrityError, match="still has 1 open holds"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE transfer SET status = 'voided' WHERE id = %s", [transfer_id])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT ledger_hold_release(%s, 'voided', %s, '{}', now())", [transfer_id, new_id()])
    with pytest.raises(IntegrityError, match="is voided"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE transfer SET status = 'expired' WHERE id = %s", [transfer_id])


def test_a_posted_hold_posts_at_most_what_it_held(make_account):
    source, destination, transfer_id = _hold(make_account)
    with pytest.raises(IntegrityError, match="at most that for a hold"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT ledger_hold_release(%s, 'posted', NULL, '{}', now())", [transfer_id])
            cursor.execute(
                "SELECT ledger_write_postings(%s, ARRAY[%s]::uuid[], ARRAY[%s]::uuid[], ARRAY[51]::bigint[], "
                "ARRAY['USD'], ARRAY[%s, %s]::uuid[], ARRAY[%s, %s, %s]::uuid[], '{}', now())",
                [transfer_id, source.id, destination.id, new_id(), new_id(), new_id(), new_id(), new_id()],
            )
