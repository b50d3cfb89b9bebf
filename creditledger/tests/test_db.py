"""in_durable_transaction retries real serialization failures and deadlocks, and nothing else."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from apps.accounts.models import Account
from creditledger.db import in_durable_transaction

pytestmark = pytest.mark.django_db(transaction=True)


def _rename_in_another_connection(account: Account, name: str) -> None:
    def rename() -> None:
        try:
            Account.objects.filter(id=account.id).update(name=name)
        finally:
            connection.close()

    thread = threading.Thread(target=rename)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()


def _append_to_name(account: Account, attempts: list[int], *, conflict_on_attempts: int) -> str:
    """A REPEATABLE READ transaction that reads the name, then writes it back with a suffix.
    On its first `conflict_on_attempts` attempts another connection renames the account in
    between, so PostgreSQL refuses the write with 40001 could not serialize access."""
    attempts.append(len(attempts) + 1)
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT name FROM account WHERE id = %s", [account.id])
        (name,) = cursor.fetchone()
    if len(attempts) <= conflict_on_attempts:
        _rename_in_another_connection(account, f"renamed-{len(attempts)}")
    Account.objects.filter(id=account.id).update(name=f"{name}+appended")
    return name


def test_a_serialization_failure_is_retried_until_it_succeeds(make_account, caplog):
    account = make_account(name="original")
    attempts: list[int] = []

    with caplog.at_level(logging.WARNING, logger="creditledger.db"):
        seen = in_durable_transaction(lambda: _append_to_name(account, attempts, conflict_on_attempts=2))

    assert attempts == [1, 2, 3]
    assert seen == "renamed-2"
    account.refresh_from_db()
    assert account.name == "renamed-2+appended"
    assert caplog.text.count("40001") == 2


def test_a_serialization_failure_reaches_the_caller_once_retries_run_out(make_account):
    account = make_account(name="original")
    attempts: list[int] = []

    with pytest.raises(OperationalError) as raised:
        in_durable_transaction(lambda: _append_to_name(account, attempts, conflict_on_attempts=99), retries=2)

    assert isinstance(raised.value.__cause__, psycopg.errors.SerializationFailure)
    assert attempts == [1, 2, 3]
    account.refresh_from_db()
    assert account.name == "renamed-3"  # the refused writes left nothing behind


def test_a_deadlock_is_retried(make_account, run_together, caplog):
    first, second = make_account(), make_account()
    both_hold_one_lock = threading.Barrier(2)

    def lock_in_order(index: int) -> int:
        order = (first, second) if index == 0 else (second, first)
        attempts = 0

        def work() -> int:
            nonlocal attempts
            attempts += 1
            for position, account in enumerate(order):
                list(Account.objects.select_for_update().filter(id=account.id))
                if position == 0 and attempts == 1:
                    both_hold_one_lock.wait(timeout=60)
            return attempts

        return in_durable_transaction(work)

    with caplog.at_level(logging.WARNING, logger="creditledger.db"):
        results = run_together(2, lock_in_order)

    # PostgreSQL broke the deadlock by failing one of them, which then ran again.
    assert sorted(results) == [1, 2]
    assert "40P01" in caplog.text


def test_other_database_errors_are_not_retried():
    attempts: list[int] = []

    def work() -> None:
        attempts.append(1)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 1")
            cursor.execute("SELECT pg_sleep(5)")

    with pytest.raises(OperationalError) as raised:
        in_durable_transaction(work)

    assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)
    assert attempts == [1]


def test_it_refuses_to_run_inside_another_transaction():
    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        in_durable_transaction(lambda: None)
