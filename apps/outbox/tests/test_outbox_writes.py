"""The write side of the outbox: every change writes its events in its own transaction."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import pytest
from django.db import connection

from apps.ledger.models import Entry
from apps.outbox.models import OutboxEvent
from apps.outbox.topics import ACCOUNT_TOPIC, ENTRY_TOPIC, TRANSFER_TOPIC
from creditledger import errors

pytestmark = pytest.mark.django_db(transaction=True)

ENVELOPE_FIELDS = {"eventId", "type", "version", "occurredAt", "aggregateType", "aggregateId", "actor", "data"}


def assert_envelope(event: OutboxEvent, *, event_type: str, aggregate_type: str, aggregate_id: str) -> dict:
    payload = event.payload
    assert set(payload) == ENVELOPE_FIELDS
    assert payload["eventId"] == str(event.event_id)
    assert payload["type"] == event.event_type == event_type
    assert payload["version"] == 1
    assert payload["aggregateType"] == aggregate_type
    assert payload["aggregateId"] == event.key == aggregate_id
    assert payload["actor"] == "system"  # written by a service, outside any request
    assert datetime.fromisoformat(payload["occurredAt"]).tzinfo is not None
    assert event.headers["event_id"] == str(event.event_id)
    assert event.headers["event_type"] == event_type
    assert event.published_at is None
    return payload["data"]


def _inserting_transactions(table: str, ids: list) -> set[str]:
    """The PostgreSQL transaction ids (xmin) that wrote these rows."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xmin::text FROM {table} WHERE id = ANY(%s)", [ids])  # noqa: S608 - fixed table names
        return {xmin for (xmin,) in cursor.fetchall()}


def test_opening_an_account_writes_one_account_created_event(make_account):
    account = make_account("EUR", name="Acme", external_ref="cus_1", overdraft_limit=0, metadata={"plan": "pro"})

    event = OutboxEvent.objects.get()
    assert (event.topic, event.key) == (ACCOUNT_TOPIC, str(account.id))
    data = assert_envelope(event, event_type="AccountCreated", aggregate_type="account", aggregate_id=str(account.id))
    assert data["accountId"] == str(account.id)
    assert data["currency"] == "EUR"
    assert data["overdraftLimit"] == 0
    assert _inserting_transactions("outbox_event", [event.id]) == _inserting_transactions("account", [account.id])


def test_posting_a_transfer_writes_one_transfer_event_and_one_event_per_entry(make_account, make_transfer):
    source, destination = make_account(), make_account()
    opened = OutboxEvent.objects.count()

    transfer = make_transfer(source, destination, 1234, metadata={"invoice": "in_1"}).transfer

    events = list(OutboxEvent.objects.order_by("id")[opened:])
    assert [event.event_type for event in events] == ["TransferPosted", "EntryPosted", "EntryPosted"]
    posted, *entry_events = events
    assert (posted.topic, posted.key) == (TRANSFER_TOPIC, str(transfer.id))
    data = assert_envelope(
        posted, event_type="TransferPosted", aggregate_type="transfer", aggregate_id=str(transfer.id)
    )
    assert data["transferId"] == str(transfer.id)
    assert (data["from"], data["to"], data["amount"], data["currency"]) == (
        str(source.id),
        str(destination.id),
        1234,
        "USD",
    )
    assert datetime.fromisoformat(posted.payload["occurredAt"]) == transfer.created_at

    entries = {entry.account_id: entry for entry in Entry.objects.filter(transfer=transfer)}
    assert [event.key for event in entry_events] == [str(source.id), str(destination.id)]
    for event in entry_events:
        entry = entries[UUID(event.key)]
        assert event.topic == ENTRY_TOPIC
        data = assert_envelope(
            event, event_type="EntryPosted", aggregate_type="account", aggregate_id=str(entry.account_id)
        )
        assert data["entryId"] == str(entry.id)
        assert (data["amount"], data["sequence"], data["balanceAfter"]) == (
            entry.amount,
            entry.sequence,
            entry.balance_after,
        )

    assert len({event.event_id for event in events}) == 3
    # One transaction wrote the transfer, its entries and its events.
    writers = (
        _inserting_transactions("outbox_event", [event.id for event in events])
        | _inserting_transactions("transfer", [transfer.id])
        | _inserting_transactions("entry", [entry.id for entry in entries.values()])
    )
    assert len(writers) == 1


@pytest.mark.parametrize("refusal", ["insufficient_funds", "same_account", "unknown_currency", "unknown_account"])
def test_a_refused_transfer_writes_no_events(make_account, make_transfer, refusal):
    source, destination, unknown = make_account(overdraft_limit=0), make_account(), make_account()
    unknown.id = UUID("01900000-0000-7000-8000-000000000000")
    before = OutboxEvent.objects.count()
    source_to_destination = {
        "insufficient_funds": (source, destination, {}),
        "same_account": (destination, destination, {}),
        "unknown_currency": (destination, source, {"currency": "XXX"}),
        "unknown_account": (unknown, destination, {}),
    }
    debited, credited, options = source_to_destination[refusal]

    with pytest.raises(errors.LedgerError):
        make_transfer(debited, credited, 1, **options)

    assert OutboxEvent.objects.count() == before


def test_a_replayed_transfer_writes_no_more_events(make_account, make_transfer):
    source, destination = make_account(), make_account()
    make_transfer(source, destination, 5, idempotency_key="once")
    before = OutboxEvent.objects.count()

    make_transfer(source, destination, 5, idempotency_key="once")

    assert OutboxEvent.objects.count() == before
