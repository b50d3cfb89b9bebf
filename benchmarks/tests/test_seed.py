"""The seeder of scenarios e and f writes with every trigger off (benchmarks/seed.py), so what
stands behind its ledger is the check of its foreign keys and `verify_ledger`: at a tiny size,
both layouts verify, and a row that breaks a foreign key is found."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

from apps.accounts.models import Account
from apps.ledger.verification import ledger_verify
from benchmarks import seed

# The seeder commits on connections of its own, which the test's transaction would not see.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seed_conn() -> Iterator[psycopg.Connection]:
    """A connection of its own to the test database (the seeder switches it to autocommit)."""
    connection.ensure_connection()
    info = connection.connection.info
    with psycopg.connect(info.dsn + (f" password={info.password}" if info.password else "")) as conn:
        yield conn


@pytest.mark.parametrize(("layout", "accounts"), [("spread", 20), ("hot", 11)])
def test_a_seeded_ledger_verifies(seed_conn: psycopg.Connection, layout: str, accounts: int) -> None:
    info = seed.seed_ledger(
        seed_conn, layout=layout, accounts=accounts, transfers=300, chunk=100, progress=lambda _: None
    )

    report = ledger_verify()
    assert report.ok, report.summary_lines()
    assert (report.accounts, report.entries, report.transfers, report.idempotency_records) == (accounts, 600, 300, 300)
    assert info["foreign_keys_checked"] >= 10  # entry, transfer, account and idempotency_record have 11
    if layout == "hot":  # the read account of f is on every transfer
        assert Account.objects.get(id=info["first_account"]).last_sequence == 300


def test_the_foreign_key_check_finds_a_row_that_breaks_one(seed_conn: psycopg.Connection) -> None:
    seed.seed_ledger(seed_conn, layout="hot", accounts=3, transfers=10, progress=lambda _: None)
    with seed_conn.transaction():
        seed_conn.execute("SET LOCAL session_replication_role = replica")
        seed_conn.execute(
            "UPDATE entry SET counterparty_id = gen_random_uuid() WHERE id = (SELECT id FROM entry LIMIT 1)"
        )

    with pytest.raises(RuntimeError, match="1 rows break foreign key entry_counterparty_id"):
        seed.foreign_keys_check(seed_conn, seed.SEEDED_TABLES)
