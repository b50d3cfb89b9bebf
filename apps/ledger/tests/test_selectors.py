"""account_balance_at: the posted balance at an instant, read from the journal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.ledger.models import Entry
from apps.ledger.selectors import PostedBalance, account_balance_at

pytestmark = pytest.mark.django_db

MICROSECOND = timedelta(microseconds=1)


def test_the_balance_at_an_instant_is_that_of_the_last_entry_at_or_before_it(make_account, make_transfer):
    account, other = make_account(), make_account()
    make_transfer(other, account, 500)
    make_transfer(account, other, 120)
    first, second = Entry.objects.filter(account=account).order_by("sequence")

    def at(moment):
        return account_balance_at(account_id=account.id, moment=moment)

    assert at(first.created_at - MICROSECOND) == PostedBalance(balance=0, sequence=0, posted_at=None)
    assert at(first.created_at) == PostedBalance(balance=500, sequence=1, posted_at=first.created_at)
    assert at(second.created_at - MICROSECOND) == PostedBalance(balance=500, sequence=1, posted_at=first.created_at)
    assert at(second.created_at) == PostedBalance(balance=380, sequence=2, posted_at=second.created_at)
    assert at(timezone.now() + timedelta(days=365)).balance == 380


def test_an_account_without_entries_had_nothing(make_account):
    account = make_account()

    assert account_balance_at(account_id=account.id, moment=timezone.now()) == PostedBalance(0, 0, None)


def test_it_is_one_backward_probe_of_the_account_time_index(make_account, make_transfer):
    account, other = make_account(), make_account()
    for amount in range(1, 4):
        make_transfer(other, account, amount)

    with CaptureQueriesContext(connection) as queries:
        account_balance_at(account_id=account.id, moment=timezone.now())
    (query,) = queries.captured_queries
    with transaction.atomic(), connection.cursor() as cursor:
        # A table of six rows is cheapest to read whole; with millions, the index wins. Ruling out
        # the sequential scan shows what the planner does then: with no usable index, it would
        # still scan the table (at a "disabled" cost) and sort.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + query["sql"])
        plan = "\n".join(line for (line,) in cursor.fetchall())

    assert "Limit" in plan
    assert "Scan Backward using entry_account_created_seq on entry" in plan  # an index (only) scan
    assert "Sort" not in plan
