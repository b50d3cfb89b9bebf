"""The grant invariants PostgreSQL enforces (sql/0015_grants.sql), each broken by running the
violating SQL directly, and verify_ledger finding the same drift when the triggers were off.

Deferred checks fail at COMMIT, so these tests are transactional."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from apps.ledger.models import CreditGrant, GrantAllocation
from apps.ledger.selectors import ledger_now
from apps.ledger.services import grant_create, transfer_create
from apps.ledger.verification import ledger_verify
from creditledger.ids import new_id

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def drawn(make_account):
    """A customer with a 10-credit grant from promotions, 4 of it spent."""
    promotions, customer, shop = make_account(), make_account(overdraft_limit=0), make_account()
    grant = grant_create(
        account_id=customer.id,
        funding_account_id=promotions.id,
        amount=10,
        idempotency_key="grant",
        expires_at=ledger_now() + timedelta(days=30),
        description="Promo",
    )
    spent = transfer_create(
        idempotency_key="spend", from_account_id=customer.id, to_account_id=shop.id, amount=4, currency="USD"
    )
    return {
        "grant": CreditGrant.objects.get(id=grant.document["grantId"]),
        "spent": spent,
        "customer": customer,
        "shop": shop,
    }


def run(sql, params=()):
    run_all((sql, params))


def run_all(*statements):
    """Commit the statements in one transaction (the deferred checks run at the end)."""
    with transaction.atomic(), connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


ALLOCATION_INSERT = (
    "INSERT INTO grant_allocation (grant_id, transfer_id, entry_id, kind, amount, created_at) "
    "VALUES (%s, %s, %s, %s, 1, now())"
)


def tamper(sql, params=()):
    """Commit `sql` with every trigger off, as a bad restore or manual fix could."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def test_a_clean_ledger_with_grants_passes(drawn):
    report = ledger_verify()

    assert report.ok, report.problems
    assert report.grants == 1


def test_counters_that_disagree_with_the_allocations_fail_at_commit(drawn):
    with pytest.raises(IntegrityError, match="disagree with its allocations"):
        run("UPDATE credit_grant SET consumed = 1 WHERE id = %s", [drawn["grant"].id])

    assert CreditGrant.objects.get(id=drawn["grant"].id).consumed == 4


def test_allocations_are_never_changed_or_deleted(drawn):
    with pytest.raises(IntegrityError, match="grant allocations are history"):
        run("UPDATE grant_allocation SET amount = 1")
    with pytest.raises(IntegrityError, match="grant allocations are history"):
        run("DELETE FROM grant_allocation")


def test_a_grants_terms_never_change_and_expired_is_final(drawn):
    with pytest.raises(IntegrityError, match="only its counters and status change"):
        run("UPDATE credit_grant SET amount = 100 WHERE id = %s", [drawn["grant"].id])
    with pytest.raises(IntegrityError, match="only its counters and status change"):
        run("UPDATE credit_grant SET expires_at = NULL WHERE id = %s", [drawn["grant"].id])
    with pytest.raises(IntegrityError, match="only its counters and status change"):
        run("DELETE FROM credit_grant WHERE id = %s", [drawn["grant"].id])
    tamper("UPDATE credit_grant SET status = 'expired' WHERE id = %s", [drawn["grant"].id])
    with pytest.raises(IntegrityError, match="expired or voided is final"):
        run("UPDATE credit_grant SET status = 'active' WHERE id = %s", [drawn["grant"].id])


def test_an_allocation_must_be_an_entry_of_the_grants_account(drawn):
    shop_credit = drawn["spent"].transfer.entries.get(account_id=drawn["shop"].id)

    with pytest.raises(IntegrityError, match="is not an entry of its account on its transfer"):
        run_all(
            (ALLOCATION_INSERT, [drawn["grant"].id, drawn["spent"].transfer_id, shop_credit.id, "restore"]),
            ("UPDATE credit_grant SET consumed = consumed - 1 WHERE id = %s", [drawn["grant"].id]),
        )


def test_an_allocation_must_name_a_grant_that_exists(drawn):
    """grant_allocation has no foreign keys (0021): the deferred grant check stands for them."""
    debit = drawn["spent"].transfer.entries.get(account_id=drawn["customer"].id)

    with pytest.raises(IntegrityError, match="which does not exist"):
        run(ALLOCATION_INSERT, [new_id(), drawn["spent"].transfer_id, debit.id, "draw"])


def test_an_allocation_must_name_an_entry_that_exists(drawn):
    with pytest.raises(IntegrityError, match="is not an entry of its account on its transfer"):
        run_all(
            (ALLOCATION_INSERT, [drawn["grant"].id, drawn["spent"].transfer_id, new_id(), "draw"]),
            ("UPDATE credit_grant SET consumed = consumed + 1 WHERE id = %s", [drawn["grant"].id]),
        )


def test_a_reservation_must_name_a_transfer_that_exists(drawn):
    missing = new_id()

    with pytest.raises(IntegrityError, match=f"names transfer {missing}, which does not exist"):
        run_all(
            (ALLOCATION_INSERT, [drawn["grant"].id, missing, None, "reserve"]),
            ("UPDATE credit_grant SET reserved = reserved + 1 WHERE id = %s", [drawn["grant"].id]),
        )


def test_an_entry_never_gives_its_grants_more_than_its_amount(drawn):
    debit = drawn["spent"].transfer.entries.get(account_id=drawn["customer"].id)

    with pytest.raises(IntegrityError, match="gives its grants"):
        run_all(
            (ALLOCATION_INSERT, [drawn["grant"].id, drawn["spent"].transfer_id, debit.id, "draw"]),
            ("UPDATE credit_grant SET consumed = consumed + 1 WHERE id = %s", [drawn["grant"].id]),
        )


def test_a_grant_is_scheduled_exactly_while_its_funding_transfer_is_pending(drawn):
    with pytest.raises(IntegrityError, match="is scheduled but its transfer"):
        run("UPDATE credit_grant SET status = 'scheduled' WHERE id = %s", [drawn["grant"].id])


def test_an_allocation_alone_on_another_grant_fails_at_commit(drawn, make_account):
    """Queued by the allocation's own statement: its grant is checked though nothing wrote it."""
    other = grant_create(
        account_id=drawn["customer"].id,
        funding_account_id=make_account().id,
        amount=5,
        idempotency_key="other grant",
        description="Other",
    )
    debit = drawn["spent"].transfer.entries.get(account_id=drawn["customer"].id)

    with pytest.raises(IntegrityError, match="disagree with its allocations"):
        run(ALLOCATION_INSERT, [other.document["grantId"], drawn["spent"].transfer_id, debit.id, "draw"])


def test_a_grant_written_after_an_early_check_is_checked_again_at_commit(drawn):
    """SET CONSTRAINTS ... IMMEDIATE checks and empties the queue; what follows queues anew."""
    with pytest.raises(IntegrityError, match="disagree with its allocations"):
        run_all(
            ("UPDATE credit_grant SET updated_at = now() WHERE id = %s", [drawn["grant"].id]),
            ("SET CONSTRAINTS ALL IMMEDIATE", []),
            ("SET CONSTRAINTS ALL DEFERRED", []),
            ("UPDATE credit_grant SET consumed = 1 WHERE id = %s", [drawn["grant"].id]),
        )


def test_a_debit_from_many_grants_leaves_nothing_queued(drawn, make_account):
    for n in range(5):
        grant_create(
            account_id=drawn["customer"].id,
            funding_account_id=make_account().id,
            amount=2,
            idempotency_key=f"small {n}",
            description=f"Small {n}",
        )
    transfer_create(
        idempotency_key="big spend",
        from_account_id=drawn["customer"].id,
        to_account_id=drawn["shop"].id,
        amount=16,
        currency="USD",
    )

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM grant_check_queue")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT count(*) FROM credit_grant WHERE status = 'exhausted'")
        assert cursor.fetchone() == (6,)


def test_verify_ledger_recomputes_each_grant_from_its_allocations(drawn):
    tamper("UPDATE credit_grant SET consumed = 1 WHERE id = %s", [drawn["grant"].id])

    report = ledger_verify()

    assert not report.ok
    (problem,) = report.problems
    assert (problem.subject, problem.id) == ("grant", str(drawn["grant"].id))
    assert "consumed, reserved, expired, voided are 1, 0, 0, 0 but its allocations make them 4, 0, 0, 0" in str(problem)


def test_verify_ledger_finds_an_allocation_off_its_entry(drawn):
    tamper("UPDATE grant_allocation SET entry_id = %s", [new_id()])

    report = ledger_verify()

    assert "1 allocations are not entries of its account on their transfer" in str(report.problems[0])


def test_verify_ledger_finds_a_lost_allocation(drawn):
    tamper("DELETE FROM grant_allocation")

    report = ledger_verify()

    assert not report.ok
    assert GrantAllocation.objects.count() == 0
    assert "but its allocations make them 0, 0, 0, 0" in str(report.problems[0])
