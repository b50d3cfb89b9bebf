"""replay_projections: the projections rebuilt beside the live ones, from the ledger or from
Kafka, then swapped in, while the service keeps writing and the consumer keeps applying."""

from __future__ import annotations

import io
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from unittest import mock

import psycopg
import pytest
from confluent_kafka import Producer
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections, transaction

from apps.ledger.models import Entry, Transfer
from apps.ledger.selectors import ledger_now
from apps.ledger.services import (
    Posting,
    grant_create,
    grant_void,
    grants_book_due,
    transfer_create_postings,
    transfer_reverse,
)
from apps.outbox.models import OutboxEvent, RelayState
from apps.outbox.relay import outbox_relay
from apps.outbox.topics import ENTRY_TOPIC
from apps.projections.models import ProjectedBalance, ProjectedGrant, ProjectedStatementLine, ProjectedTransfer
from apps.projections.replay import (
    REPLAY_LOCK_KEY,
    ReplayError,
    projections_replay,
    projections_replay_from_kafka,
)
from apps.projections.verification import projections_verify

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

TABLES = ("projection_balance", "projection_statement_line", "projection_transfer", "projection_grant")
TRUNCATE = f"TRUNCATE {', '.join(TABLES)}"


@pytest.fixture
def ledger(make_account, make_transfer):
    """USD and EUR accounts with a few transfers, metadata of every JSON kind, and an account never used."""
    alice, bob, carol = make_account(name="alice"), make_account(name="bob"), make_account(name="carol")
    euro_a, euro_b = make_account("EUR"), make_account("EUR")
    idle = make_account(name="idle")
    make_transfer(
        alice,
        bob,
        1000,
        metadata={
            "order": "A-1",
            "tags": ["x", "ÿ €"],
            "rate": 1.5,
            "tiny": 1e-7,
            "nested": {"n": None, "ok": True, "int": 2**62},
        },
    )
    make_transfer(bob, carol, 250)
    make_transfer(carol, alice, 40, metadata={"whole": 1.0, "big": 12345678901234567890})
    make_transfer(euro_a, euro_b, 7)
    for amount in range(1, 6):
        make_transfer(alice, carol, amount)
    return {"alice": alice, "bob": bob, "carol": carol, "euro_a": euro_a, "euro_b": euro_b, "idle": idle}


def projection_rows() -> dict[str, list[tuple]]:
    """Every projection row but its applied_at. A balance without entries has no posting time:
    the consumer stamps it with when it applied AccountCreated, so its updated_at is left out."""
    queries = {
        "projection_balance": "SELECT account_id, currency, balance, last_sequence, "
        "CASE WHEN last_sequence > 0 THEN updated_at END FROM projection_balance ORDER BY 1",
        "projection_statement_line": "SELECT account_id, sequence, entry_id, transfer_id, counterparty_id, currency, "
        "amount, balance_after, created_at FROM projection_statement_line ORDER BY 1, 2",
        "projection_transfer": "SELECT transfer_id, from_account_id, to_account_id, amount, currency, status, "
        "idempotency_key, metadata, reversal_of, reversed_amount, entries, created_at "
        "FROM projection_transfer ORDER BY 1",
        "projection_grant": "SELECT grant_id, account_id, status, document, updated_at "
        "FROM projection_grant ORDER BY 1",
    }
    rows = {}
    with connections["read"].cursor() as cursor:
        for table, query in queries.items():
            cursor.execute(query)
            rows[table] = cursor.fetchall()
    return rows


def read_sql(sql: str, params=None) -> list[tuple]:
    with connections["read"].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def leftover_schemas() -> list[str]:
    return [name for (name,) in read_sql("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'projections\\_%'")]


@pytest.mark.parametrize("ledger_copy", [False, True], ids=["insert-select", "copy-stream"])
def test_a_replay_from_the_ledger_builds_what_the_consumer_built(ledger, sync_projections, ledger_copy):
    sync_projections()
    built_by_the_consumer = projection_rows()
    assert len(built_by_the_consumer["projection_transfer"]) == 9
    read_sql(TRUNCATE)

    result = projections_replay(ledger_copy=ledger_copy)

    assert (result.balances, result.statement_lines, result.transfers) == (6, 18, 9)
    assert projection_rows() == built_by_the_consumer
    assert projections_verify().ok
    assert leftover_schemas() == []


def test_a_replay_from_the_ledger_keeps_the_reversal_links(ledger, sync_projections):
    original = Transfer.objects.filter(from_account=ledger["alice"], to_account=ledger["bob"]).get()
    reversal = transfer_reverse(idempotency_key="refund-1", transfer_id=original.id, amount=400)
    transfer_reverse(idempotency_key="refund-2", transfer_id=reversal.transfer_id, amount=100)
    sync_projections()
    built_by_the_consumer = projection_rows()
    read_sql(TRUNCATE)

    projections_replay()

    assert projection_rows() == built_by_the_consumer
    assert read_sql(
        "SELECT transfer_id, reversal_of, reversed_amount FROM projection_transfer WHERE reversed_amount > 0 "
        "OR reversal_of IS NOT NULL ORDER BY transfer_id"
    ) == [(original.id, None, 400), (reversal.transfer_id, original.id, 100), (mock.ANY, reversal.transfer_id, 0)]
    assert projections_verify().ok


def test_the_entries_of_a_replayed_transfer_are_those_its_event_carried(ledger):
    projections_replay()

    for event in OutboxEvent.objects.filter(event_type="TransferPosted"):
        data = event.payload["data"]
        projected = ProjectedTransfer.objects.get(transfer_id=data["transferId"])
        assert projected.entries == data["entries"]
        assert projected.metadata == data["metadata"]


def test_a_replay_twice_gives_the_same_projections(ledger):
    projections_replay()
    first = projection_rows()

    again = projections_replay()

    assert projection_rows() == first
    assert again.merged == {"balances": 0, "statement_lines": 0, "transfers": 0, "grants": 0}
    assert projections_verify().ok


def test_a_replay_repairs_drifted_projections(ledger, sync_projections):
    sync_projections()
    alice, bob = ledger["alice"], ledger["bob"]
    ProjectedBalance.objects.filter(account_id=alice.id).update(balance=123)
    ProjectedStatementLine.objects.filter(account_id=bob.id, sequence=1).delete()
    ProjectedTransfer.objects.create(
        transfer_id=uuid.uuid4(),
        from_account_id=alice.id,
        to_account_id=bob.id,
        amount=1,
        currency="USD",
        status="posted",
        idempotency_key="never-posted",
        metadata={},
        entries=[],
        created_at=datetime.now(UTC),
        applied_at=datetime.now(UTC),
    )
    assert projections_verify().drift_count == 3

    projections_replay()

    assert projections_verify().ok
    assert ProjectedTransfer.objects.filter(idempotency_key="never-posted").count() == 0


def test_rows_the_consumer_applies_during_the_rebuild_are_merged_in(
    ledger, make_account, make_transfer, sync_projections
):
    sync_projections()
    alice, bob = ledger["alice"], ledger["bob"]
    during: dict = {}

    def progress(stage: str, advance: int, total: int | None) -> None:
        # The ledger snapshot is closed once the indexes are built: this is after it.
        if stage == "indexes" and not during:
            during["account"] = newcomer = make_account(name="newcomer")
            during["transfers"] = [make_transfer(alice, bob, 11).transfer, make_transfer(bob, newcomer, 3).transfer]
            sync_projections()  # the live consumer applies them to the live tables

    result = projections_replay(progress=progress)

    assert during, "the progress callback never saw the indexes stage"
    assert result.merged == {"balances": 3, "statement_lines": 4, "transfers": 2, "grants": 0}
    assert projections_verify().ok  # without any catch-up: the merge kept them
    newcomer = during["account"]
    assert ProjectedBalance.objects.get(account_id=newcomer.id).balance == 3
    assert set(
        ProjectedTransfer.objects.filter(transfer_id__in=[t.id for t in during["transfers"]]).values_list(
            "amount", flat=True
        )
    ) == {11, 3}


def test_live_rows_beyond_the_rebuild_are_kept_only_if_the_ledger_has_them(ledger, sync_projections):
    sync_projections()
    alice = ledger["alice"]
    ghost = uuid.uuid4()
    now = datetime.now(UTC)
    # A balance "ahead" of the ledger with its line, and accounts and transfers the ledger never had,
    # as a projection left over from before a restore of the ledger would be.
    line = ProjectedStatementLine.objects.filter(account_id=alice.id).order_by("-sequence").first()
    assert line is not None
    ProjectedStatementLine.objects.create(
        account_id=alice.id,
        sequence=line.sequence + 1,
        entry_id=uuid.uuid4(),
        transfer_id=uuid.uuid4(),
        counterparty_id=ledger["bob"].id,
        currency="USD",
        amount=-5,
        balance_after=line.balance_after - 5,
        created_at=now,
        applied_at=now,
    )
    ProjectedBalance.objects.filter(account_id=alice.id).update(
        last_sequence=line.sequence + 1, balance=line.balance_after - 5, updated_at=now
    )
    ProjectedBalance.objects.create(
        account_id=ghost, currency="USD", balance=0, last_sequence=0, updated_at=now, applied_at=now
    )
    ProjectedTransfer.objects.create(
        transfer_id=uuid.uuid4(),
        from_account_id=ghost,
        to_account_id=alice.id,
        amount=5,
        currency="USD",
        status="posted",
        idempotency_key="ghost",
        metadata={},
        entries=[],
        created_at=now,
        applied_at=now,
    )

    result = projections_replay()

    assert result.merged == {"balances": 0, "statement_lines": 0, "transfers": 0, "grants": 0}
    assert projections_verify().ok
    assert not ProjectedBalance.objects.filter(account_id=ghost).exists()


def test_a_replay_while_transfers_are_posted_and_applied_ends_clean_after_a_catch_up(
    ledger, make_transfer, sync_projections
):
    sync_projections()
    accounts = [ledger[name] for name in ("alice", "bob", "carol")]
    stop = threading.Event()
    errors: list[BaseException] = []
    posted = [0]

    def writer() -> None:
        try:
            while not stop.is_set():
                make_transfer(accounts[posted[0] % 3], accounts[(posted[0] + 1) % 3], 1 + posted[0] % 50)
                posted[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    def consumer() -> None:
        try:
            while not stop.is_set():
                sync_projections()
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer), threading.Thread(target=consumer)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        for _ in range(3):
            projections_replay(workers=2)
        before_stop = posted[0]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    assert before_stop > 10, "the writer hardly ran during the replays"

    sync_projections()  # the final catch-up

    report = projections_verify()
    assert report.ok, report.summary_lines()
    assert ProjectedStatementLine.objects.count() == Entry.objects.count()
    assert ProjectedTransfer.objects.count() == Transfer.objects.count()
    assert leftover_schemas() == []


def test_the_swapped_in_tables_keep_the_names_and_schema_the_migrations_know(ledger):
    catalog = """
        SELECT c.relname, n.nspname, i.indexname, i.indexdef
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_indexes i ON i.schemaname = n.nspname AND i.tablename = c.relname
         WHERE c.oid IN (SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS t(name))
         UNION ALL
        SELECT c.relname, n.nspname, k.conname, k.contype::text || ' ' || pg_get_constraintdef(k.oid)
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid IN (SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS t(name))
         ORDER BY 1, 3, 4"""
    before = read_sql(catalog, {"tables": list(TABLES)})
    # 9 indexes (one of them the GIN index of transfers' accounts, one transfers' by actor, one
    # grants' by account), 4 of them behind the primary keys. PostgreSQL 18 also lists each NOT
    # NULL as a constraint of type 'n'; they must survive the swap too, but are not counted here.
    assert len([row for row in before if not row[3].startswith("n ")]) == 13

    projections_replay()

    assert read_sql(catalog, {"tables": list(TABLES)}) == before
    # What a later migration does: drop an index by the name in Meta.indexes.
    with transaction.atomic(using="read"):
        with connections["read"].schema_editor() as editor:
            for model in (ProjectedStatementLine, ProjectedTransfer, ProjectedGrant):
                for index in model._meta.indexes:
                    editor.remove_index(model, index)
        names = {
            name for (name,) in read_sql("SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)", [list(TABLES)])
        }
        assert names == {
            "projection_balance_pkey",
            "projection_statement_line_pkey",
            "projection_transfer_pkey",
            "projection_grant_pkey",
        }
        transaction.set_rollback(True, using="read")


def test_the_swap_gives_up_its_lock_request_behind_a_long_read_and_retries(ledger, sync_projections, caplog):
    sync_projections()
    reader = psycopg.connect(**connections["read"].get_connection_params())
    reader.execute("SELECT count(*) FROM projection_transfer")  # a read in a transaction that stays open
    finish_reading = threading.Timer(1.0, reader.rollback)
    finish_reading.start()
    try:
        with mock.patch("apps.projections.replay.swap.SWAP_LOCK_TIMEOUT", "200ms"):
            projections_replay()
    finally:
        finish_reading.join()
        reader.close()

    assert "swap attempt 1/10 could not take its locks" in caplog.text
    assert projections_verify().ok
    assert leftover_schemas() == []


def test_only_one_replay_runs_at_a_time(ledger):
    holder = psycopg.connect(**connections["read"].get_connection_params(), autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", [REPLAY_LOCK_KEY])
        with pytest.raises(ReplayError, match="another replay"):
            projections_replay()
    finally:
        holder.close()
    assert leftover_schemas() == []


def test_a_failed_load_leaves_the_live_projections_as_they_were(ledger, sync_projections):
    sync_projections()
    before = projection_rows()

    with (
        mock.patch("apps.projections.replay.from_ledger.indexes_build", side_effect=RuntimeError("disk full")),
        pytest.raises(RuntimeError, match="disk full"),
    ):
        projections_replay()

    assert projection_rows() == before
    assert leftover_schemas() == []


def test_the_command_draws_progress_on_stderr_and_sums_up_on_stdout(ledger):
    out, err = io.StringIO(), io.StringIO()

    call_command("replay_projections", stdout=out, stderr=err)

    assert "rebuilt from the ledger in" in out.getvalue()
    assert "6 balances, 18 statement lines, 9 transfers, 0 grants" in out.getvalue()
    assert "The projections are rebuilt and live." in out.getvalue()
    progress = err.getvalue()
    assert "statement lines: 100%" in progress
    assert "transfers: 100%" in progress
    assert "swap: 100%" in progress
    assert projections_verify().ok


def test_the_command_reports_why_it_could_not_run(ledger):
    holder = psycopg.connect(**connections["read"].get_connection_params(), autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", [REPLAY_LOCK_KEY])
        with pytest.raises(CommandError, match="another replay"):
            call_command("replay_projections", "--no-progress", stdout=io.StringIO(), stderr=io.StringIO())
    finally:
        holder.close()


@pytest.mark.slow
def test_a_replay_from_kafka_builds_what_the_replay_from_the_ledger_builds(broker, ledger):
    # `broker` is a fresh broker of this test's own (the root conftest.py), so the
    # topics hold this test's events only and the whole database must verify clean.
    published = outbox_relay().published
    assert published == OutboxEvent.objects.count() == 6 + 9 * 3
    poison = Producer({"bootstrap.servers": settings.KAFKA["BOOTSTRAP_SERVERS"]})
    poison.produce(ENTRY_TOPIC, key=b"poison", value=b"\xff not an event")
    assert poison.flush(10) == 0
    projections_replay()
    from_the_ledger = projection_rows()
    read_sql(TRUNCATE)

    result = projections_replay_from_kafka(idle_timeout=20)

    assert (result.events, result.invalid_events) == (published + 1, 1)
    assert (result.balances, result.statement_lines, result.transfers) == (6, 18, 9)
    assert projection_rows() == from_the_ledger
    assert projections_verify().ok
    assert leftover_schemas() == []


def test_a_replay_from_kafka_refuses_once_kafka_has_lost_events(ledger, sync_projections):
    sync_projections()
    before = projection_rows()
    RelayState.objects.update_or_create(id=1, defaults={"kafka_history_complete": False})

    with pytest.raises(ReplayError, match="replay from the ledger instead"):
        projections_replay_from_kafka(idle_timeout=1)

    assert projection_rows() == before
    assert leftover_schemas() == []


@pytest.mark.slow
def test_the_command_replays_from_kafka(broker, ledger):
    outbox_relay()
    out = io.StringIO()

    call_command("replay_projections", "--from-kafka", "--no-progress", stdout=out, stderr=io.StringIO())

    assert "rebuilt from Kafka in" in out.getvalue()
    assert f"events read: {6 + 9 * 3}, invalid and skipped: 0" in out.getvalue()
    assert projections_verify().ok


def test_a_replay_from_the_ledger_rebuilds_multi_leg_transfers_as_the_consumer_projected_them(
    make_account, make_transfer, sync_projections
):
    buyer_usd, shop_usd = make_account("USD"), make_account("USD")
    shop_credits, buyer_credits = make_account("CREDITS"), make_account("CREDITS")
    make_transfer(shop_usd, buyer_usd, 50, description="Refund")
    transfer_create_postings(
        idempotency_key="buy-credits",
        postings=[
            Posting(buyer_usd.id, shop_usd.id, 1000, "USD"),
            Posting(shop_credits.id, buyer_credits.id, 1000, "CREDITS"),
            Posting(shop_usd.id, buyer_usd.id, 10, "USD"),
        ],
        description="Buy 1,000 CREDITS for 10 USD, 0.10 back",
    )
    sync_projections()
    transfers = (
        "SELECT transfer_id, from_account_id, to_account_id, amount, currency, description, postings, entries, "
        "account_ids FROM projection_transfer ORDER BY 1"
    )
    built_by_the_consumer = read_sql(transfers)
    assert projections_verify().ok
    read_sql(TRUNCATE)

    projections_replay()

    assert read_sql(transfers) == built_by_the_consumer
    assert projections_verify().ok


@pytest.fixture
def grants(make_account, make_transfer, ledger_clock):
    """A customer's grants: "Welcome" created, drawn 10 and expired; "December" scheduled, then
    activated; "Promo" voided; "Top-up" drawn 5 after its GrantCreated (a change no grant event
    carries). Every change of the first three came with an event."""
    promotions, breakage = make_account(name="promotions"), make_account(name="breakage")
    customer, usage = make_account(name="customer", overdraft_limit=0), make_account(name="usage")
    now = ledger_now()

    def grant(description: str, amount: int, **terms) -> str:
        return grant_create(
            account_id=customer.id,
            funding_account_id=promotions.id,
            amount=amount,
            idempotency_key=f"grant-{description}",
            description=description,
            **terms,
        ).document["grantId"]

    made = {
        "Welcome": grant("Welcome", 30, expires_at=now + timedelta(days=1), expire_to_account_id=breakage.id),
        "Top-up": grant("Top-up", 50),
        "December": grant("December", 100, effective_at=now + timedelta(days=1), metadata={"plan": "monthly"}),
        "Promo": grant("Promo", 40),
    }
    grant_void(grant_id=uuid.UUID(made["Promo"]), idempotency_key="void-promo")
    make_transfer(customer, usage, 10)
    ledger_clock.advance(timedelta(days=2))
    assert grants_book_due(limit=10) == 2
    make_transfer(customer, usage, 5)
    return {**made, "customer": customer, "promotions": promotions}


def grant_rows() -> dict[str, tuple]:
    """Each projected grant: status, document without the fields that describe its event, updated_at."""
    return {
        str(grant_id): (status, document, updated_at)
        for grant_id, status, document, updated_at in read_sql(
            "SELECT grant_id, status, (document - 'expiredAmount' - 'voidedAmount')::text, updated_at "
            "FROM projection_grant"
        )
    }


@pytest.mark.parametrize("ledger_copy", [False, True], ids=["insert-select", "copy-stream"])
def test_a_replay_from_the_ledger_builds_the_grants_their_events_built(grants, sync_projections, ledger_copy):
    sync_projections()
    built_by_the_consumer = grant_rows()
    read_sql(TRUNCATE)

    result = projections_replay(ledger_copy=ledger_copy)

    assert result.grants == 4
    rebuilt = grant_rows()
    for name in ("Welcome", "December", "Promo"):
        assert rebuilt[grants[name]] == built_by_the_consumer[grants[name]], name
    assert [rebuilt[grants[name]][0] for name in ("Welcome", "December", "Promo")] == ["expired", "active", "voided"]
    # Top-up changed after its last event: the replay has it as the ledger booked it, ahead of the consumer.
    top_up = ProjectedGrant.objects.get(grant_id=grants["Top-up"])
    assert (top_up.status, top_up.document["consumed"], top_up.document["remaining"]) == ("active", 5, 45)
    assert top_up.updated_at > ProjectedGrant.objects.get(grant_id=grants["Welcome"]).updated_at
    assert projections_verify().ok
    assert leftover_schemas() == []


def test_an_event_older_than_the_replayed_grant_changes_nothing_and_a_newer_one_applies(grants, sync_projections):
    projections_replay()
    replayed = grant_rows()

    sync_projections()  # every event again, all older than or as old as the ledger's rows

    assert grant_rows() == replayed
    grant_void(grant_id=uuid.UUID(grants["Top-up"]), idempotency_key="void-top-up")
    sync_projections()
    top_up = ProjectedGrant.objects.get(grant_id=grants["Top-up"])
    assert (top_up.status, top_up.document["voided"], top_up.document["voidedAmount"]) == ("voided", 45, 45)
    assert projections_verify().ok


def test_grants_the_consumer_applies_during_the_rebuild_are_merged_in_if_the_ledger_has_them(grants, sync_projections):
    sync_projections()
    ghost = uuid.uuid4()
    now = datetime.now(UTC)
    ProjectedGrant.objects.create(
        grant_id=ghost, account_id=grants["customer"].id, status="active", document={}, updated_at=now, applied_at=now
    )
    during: dict = {}

    def progress(stage: str, advance: int, total: int | None) -> None:
        if stage == "indexes" and not during:
            during["voided"] = grant_void(grant_id=uuid.UUID(grants["Top-up"]), idempotency_key="void-top-up")
            during["new"] = grant_create(
                account_id=grants["customer"].id,
                funding_account_id=grants["promotions"].id,
                amount=7,
                idempotency_key="grant-during",
            ).document["grantId"]
            sync_projections()

    result = projections_replay(progress=progress)

    assert during, "the progress callback never saw the indexes stage"
    assert result.merged["grants"] == 2
    assert ProjectedGrant.objects.get(grant_id=grants["Top-up"]).status == "voided"
    assert ProjectedGrant.objects.filter(grant_id=during["new"]).exists()
    assert not ProjectedGrant.objects.filter(grant_id=ghost).exists()
    assert projections_verify().ok


@pytest.mark.slow
def test_a_replay_from_kafka_builds_the_grants_the_consumer_built(broker, grants, sync_projections):
    published = outbox_relay().published
    sync_projections()
    built_by_the_consumer = projection_rows()
    read_sql(TRUNCATE)

    result = projections_replay_from_kafka(idle_timeout=20)

    assert result.events == published
    assert result.grants == 4
    assert projection_rows() == built_by_the_consumer
    assert projections_verify().ok
