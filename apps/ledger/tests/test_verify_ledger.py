"""verify_ledger recomputes the ledger from its entries and reports any drift.

The drift here is what the invariant triggers refuse: each test commits a clean ledger, then
breaks it with triggers (and so foreign keys) disabled by `session_replication_role = replica`,
as a bad restore or a manual fix could. CHECK constraints still apply.
"""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from apps.ledger.models import Entry
from apps.ledger.services import Posting, transfer_create_postings, transfer_reverse
from apps.ledger.verification import ledger_verify

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ledger(make_account, make_transfer):
    """alice pays bob 1000 USD and bob pays back 250; carol pays dave 40 EUR."""
    alice = make_account("USD", name="alice")
    bob = make_account("USD", name="bob", overdraft_limit=0)
    carol = make_account("EUR", name="carol")
    dave = make_account("EUR", name="dave")
    first = make_transfer(alice, bob, 1000, idempotency_key="pay-1").transfer
    back = make_transfer(bob, alice, 250, idempotency_key="pay-2").transfer
    euros = make_transfer(carol, dave, 40, idempotency_key="pay-3").transfer
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "first": first, "back": back, "euros": euros}


def tamper(sql, params=()):
    """Commit `sql` with all triggers off: the invariant checks and the foreign keys."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def verify(*args):
    """Run the command; (stdout, the CommandError or None)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_ledger", *args, stdout=out, stderr=err)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_clean_ledger_passes_with_a_summary(ledger):
    out, error = verify()

    assert error is None
    assert "accounts checked: 4" in out
    assert "entries checked: 6" in out
    assert "transfers checked: 3" in out
    assert "idempotency records checked: 3" in out
    assert "problems found: 0" in out
    assert "The ledger is consistent." in out


def test_empty_ledger_passes():
    report = ledger_verify()

    assert report.ok
    assert (report.accounts, report.entries, report.transfers, report.problem_count) == (0, 0, 0, 0)


def test_balance_drift_is_found_and_named(ledger):
    alice = ledger["alice"]
    tamper("UPDATE account SET balance = balance + 5 WHERE id = %s", [alice.id])

    out, error = verify()

    assert error is not None
    assert error.returncode == 1
    assert "problems found: 1" in out
    assert f"account {alice.id}: balance -745 but its entries sum to -750" in out
    assert str(ledger["bob"].id) not in out


def test_deleted_entry_is_found_on_its_account_and_its_transfer(ledger):
    bob, back = ledger["bob"], ledger["back"]
    tamper("DELETE FROM entry WHERE transfer_id = %s AND account_id = %s", [back.id, bob.id])

    out, error = verify()

    assert error is not None
    assert "problems found: 2" in out
    assert "entries checked: 5" in out
    assert (
        f"account {bob.id}: balance 750 but its entries sum to 1000; "
        "last_sequence 2 but entry count 1 and highest sequence 1"
    ) in out
    assert f"transfer {back.id}: entries in USD sum to 250, not 0" in out
    assert "this one has 1, 1 of them matching" in out


def test_sequence_gap_is_found(ledger):
    alice, first = ledger["alice"], ledger["first"]
    # Alice's first entry goes; her second still carries the balance the account shows.
    tamper("DELETE FROM entry WHERE transfer_id = %s AND account_id = %s", [first.id, alice.id])

    report = ledger_verify()

    details = {problem.id: problem.details for problem in report.problems}
    assert "last_sequence 2 but entry count 1 and highest sequence 2 (a gap)" in details[str(alice.id)]
    assert str(first.id) in details


def test_broken_running_balance_is_found_at_its_sequence(ledger):
    bob = ledger["bob"]
    tamper("UPDATE entry SET balance_after = 999 WHERE account_id = %s AND sequence = 1", [bob.id])

    report = ledger_verify()

    assert not report.ok
    assert [str(problem) for problem in report.problems] == [
        f"account {bob.id}: 1 entries have a balance_after that is not the running sum of amounts, the first at #1"
    ]


def test_entry_in_another_currency_is_found(ledger):
    dave, euros = ledger["dave"], ledger["euros"]
    tamper("UPDATE entry SET currency = 'GBP' WHERE account_id = %s", [dave.id])

    report = ledger_verify()

    details = {problem.id: problem.details for problem in report.problems}
    assert details[str(dave.id)] == ["holds EUR but has entries in GBP"]
    assert details[str(euros.id)][:2] == ["entries in EUR sum to -40, not 0", "entries in GBP sum to 40, not 0"]
    assert "this one has 2, 1 of them matching" in details[str(euros.id)][2]


def test_balance_beyond_the_overdraft_limit_is_found(ledger):
    bob, first = ledger["bob"], ledger["first"]
    # Without the 1000 he received, bob's entries say he paid 250 he never had.
    tamper("DELETE FROM entry WHERE transfer_id = %s AND account_id = %s", [first.id, bob.id])

    report = ledger_verify()

    details = {problem.id: problem.details for problem in report.problems}
    assert "balance 750 (entries: -250) is beyond its overdraft limit of 0" in details[str(bob.id)]


def test_idempotency_record_with_another_key_is_found(ledger):
    first = ledger["first"]
    tamper("UPDATE idempotency_record SET key = 'pay-9' WHERE key = 'pay-1'")

    out, error = verify()

    assert error is not None
    assert f"idempotency_record pay-9: points to transfer {first.id}, whose idempotency key is 'pay-1'" in out


def test_transfer_without_its_idempotency_record_is_found(ledger):
    back = ledger["back"]
    tamper("DELETE FROM idempotency_record WHERE key = 'pay-2'")

    report = ledger_verify()

    assert [str(problem) for problem in report.problems] == [
        f"transfer {back.id}: no idempotency record points to it (its key is 'pay-2')"
    ]


def test_entries_of_a_missing_transfer_are_found(ledger):
    euros = ledger["euros"]
    tamper("DELETE FROM transfer WHERE id = %s", [euros.id])

    report = ledger_verify()

    problems = {(problem.subject, problem.id): problem.details for problem in report.problems}
    assert problems[("transfer", str(euros.id))] == ["2 entries belong to a transfer that does not exist"]
    assert problems[("idempotency_record", "pay-3")] == [f"points to transfer {euros.id}, which does not exist"]
    assert report.transfers == 2


def test_json_report(ledger):
    alice = ledger["alice"]
    tamper("UPDATE account SET balance = balance + 5 WHERE id = %s", [alice.id])

    out, error = verify("--json")

    assert error is not None
    report = json.loads(out)
    assert report["ok"] is False
    assert report["problem_count"] == 1
    assert report["entries"] == 6
    assert report["problems"] == [
        {"subject": "account", "id": str(alice.id), "details": ["balance -745 but its entries sum to -750"]}
    ]


def test_json_report_of_a_clean_ledger(ledger):
    out, error = verify("--json")

    assert error is None
    assert json.loads(out)["ok"] is True


def test_listing_is_capped_but_every_problem_counted(ledger):
    tamper("UPDATE account SET balance = balance + 1 WHERE balance <> 0")

    out, error = verify("--limit", "1")

    assert error is not None
    assert "problems found: 4" in out
    assert out.count(": balance ") == 1
    assert "... and 3 more" in out


@pytest.mark.django_db(transaction=False)
def test_runs_inside_the_callers_transaction(make_account, make_transfer):
    make_transfer(make_account(), make_account(), 5)
    assert Entry.objects.count() == 2

    report = ledger_verify()

    assert report.ok
    assert (report.accounts, report.entries, report.transfers) == (2, 2, 1)


def test_a_closed_account_that_still_holds_something_is_found(ledger):
    bob = ledger["bob"]
    # The CHECK keeps a closed account's balance at 0, but his entries still add up to 750.
    tamper("UPDATE account SET status = 'closed', balance = 0 WHERE id = %s", [bob.id])

    report = ledger_verify()

    details = {problem.id: problem.details for problem in report.problems}
    assert "closed with balance 0 (entries: 750); a closed account holds nothing" in details[str(bob.id)]


def test_a_closed_empty_account_passes(make_account):
    account = make_account()
    tamper("UPDATE account SET status = 'closed' WHERE id = %s", [account.id])

    assert ledger_verify().ok


def test_a_clean_multi_leg_transfer_passes_and_a_broken_posting_is_found(make_account):
    buyer_usd, shop_usd = make_account("USD"), make_account("USD")
    shop_credits, buyer_credits = make_account("CREDITS"), make_account("CREDITS")
    transfer = transfer_create_postings(
        idempotency_key="buy-credits",
        postings=[
            Posting(buyer_usd.id, shop_usd.id, 1000, "USD"),
            Posting(shop_credits.id, buyer_credits.id, 1000, "CREDITS"),
        ],
    ).transfer
    assert ledger_verify().ok

    # The second posting's credit now names another counterparty: still balanced, no longer a pair.
    tamper("UPDATE entry SET counterparty_id = %s WHERE account_id = %s", [buyer_usd.id, buyer_credits.id])

    report = ledger_verify()
    details = {problem.id: problem.details for problem in report.problems}
    assert details[str(transfer.id)] == [
        (
            "a posted transfer of 2 postings has one debit and its matching credit for each, 4 entries; "
            "this one has 4 entries, 1 postings that pair up"
        )
    ]


@pytest.fixture
def reversed_ledger(ledger):
    """bob pays back 300 of alice's 1000 with a partial reversal, then 200 more."""
    first = transfer_reverse(idempotency_key="refund-1", transfer_id=ledger["first"].id, amount=300).transfer
    second = transfer_reverse(idempotency_key="refund-2", transfer_id=ledger["first"].id, amount=200).transfer
    return {**ledger, "reversals": (first, second)}


def test_reversals_that_add_up_to_the_counter_pass(reversed_ledger):
    assert ledger_verify().ok


def test_a_counter_that_disagrees_with_the_reversals_is_found(reversed_ledger):
    original = reversed_ledger["first"]
    tamper("UPDATE transfer SET reversed_amount = 400 WHERE id = %s", [original.id])

    report = ledger_verify()

    assert {problem.id: problem.details for problem in report.problems} == {
        str(original.id): ["reversed_amount 400 but its 2 reversals move back 500"]
    }


def test_reversals_beyond_the_original_are_found(reversed_ledger):
    original = reversed_ledger["first"]
    # The second reversal now moves back 800, entries, balances and counter consistent with it.
    second = reversed_ledger["reversals"][1]
    tamper("UPDATE transfer SET amount = 800 WHERE id = %s", [second.id])
    tamper("UPDATE entry SET amount = sign(amount) * 800 WHERE transfer_id = %s", [second.id])
    tamper("UPDATE transfer SET reversed_amount = 1100 WHERE id = %s", [original.id])

    details = {problem.id: problem.details for problem in ledger_verify().problems}

    assert details[str(original.id)] == ["reversed_amount 1100 is more than the 1000 it moved"]


def test_a_reversal_that_does_not_invert_its_original_is_found(reversed_ledger):
    original = reversed_ledger["first"]
    # carol paying dave 40 EUR, relabelled as one of its reversals, the counter to match.
    tamper("UPDATE transfer SET reversal_of = %s WHERE id = %s", [original.id, reversed_ledger["euros"].id])
    tamper("UPDATE transfer SET reversed_amount = 540 WHERE id = %s", [original.id])

    details = {problem.id: problem.details for problem in ledger_verify().problems}

    assert details == {str(original.id): ["1 of its reversals do not invert its postings"]}
