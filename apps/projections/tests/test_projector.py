"""The projector as a plain function: what the consumer does with each batch, no broker."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from apps.ledger.selectors import ledger_now
from apps.ledger.services import (
    HoldRequest,
    Posting,
    grant_create,
    grants_book_due,
    transfer_create_postings,
    transfer_reverse,
)
from apps.outbox.models import OutboxEvent
from apps.outbox.topics import ENTRY_TOPIC, RELAY_POSITION_HEADER
from apps.projections.models import (
    ConsumerOffset,
    ProjectedBalance,
    ProjectedGrant,
    ProjectedStatementLine,
    ProjectedTransfer,
)
from apps.projections.projector import ConsumedMessage, decode, projection_batch_apply
from apps.projections.selectors import projection_applied_positions
from apps.projections.verification import projections_verify
from tests.support import projection_matches_ledger

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def outbox_messages(event_type: str | None = None) -> list[ConsumedMessage]:
    rows = OutboxEvent.objects.order_by("id")
    if event_type:
        rows = rows.filter(event_type=event_type)
    return [
        ConsumedMessage(
            topic=row.topic, partition=0, offset=row.id, key=row.key.encode(), value=orjson.dumps(row.payload)
        )
        for row in rows
    ]


def payload(message: ConsumedMessage) -> Any:
    assert message.value is not None
    return orjson.loads(message.value)


def test_a_batch_builds_balances_statements_and_transfers(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    make_transfer(alice, bob, 300)
    make_transfer(bob, alice, 100)

    result = projection_batch_apply(outbox_messages(), consumer_group="g")

    assert dict(result.applied) == {"AccountCreated": 2, "EntryPosted": 4, "TransferPosted": 2}
    assert ProjectedBalance.objects.get(account_id=bob.id).balance == 200
    assert ProjectedBalance.objects.get(account_id=alice.id).balance == -200
    assert ProjectedTransfer.objects.count() == 2
    assert projection_matches_ledger()


def test_applying_the_same_batch_again_changes_nothing(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    make_transfer(alice, bob, 300)
    messages = outbox_messages()
    projection_batch_apply(messages, consumer_group="g")
    lines = list(ProjectedStatementLine.objects.values())

    again = projection_batch_apply(messages, consumer_group="g")

    assert sum(again.applied.values()) == 0
    assert again.duplicates == len(messages)
    assert list(ProjectedStatementLine.objects.values()) == lines


def test_entries_out_of_order_in_a_batch_are_applied_in_sequence(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    for amount in (10, 20, 30):
        make_transfer(alice, bob, amount)

    projection_batch_apply(list(reversed(outbox_messages("EntryPosted"))), consumer_group="g")

    balance = ProjectedBalance.objects.get(account_id=bob.id)
    assert (balance.last_sequence, balance.balance) == (3, 60)
    assert list(
        ProjectedStatementLine.objects.filter(account_id=bob.id)
        .order_by("sequence")
        .values_list("balance_after", flat=True)
    ) == [10, 30, 60]


def test_a_lost_entry_event_is_healed_from_the_ledger(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    for amount in (10, 20, 30):
        make_transfer(alice, bob, amount)
    entries = outbox_messages("EntryPosted")
    lost = [m for m in entries if payload(m)["data"]["sequence"] == 2]

    result = projection_batch_apply([m for m in entries if m not in lost], consumer_group="g")

    assert result.healed == 2  # sequence 2 of both accounts, read back from the ledger
    assert projection_matches_ledger()


def test_a_transfer_whose_events_were_all_lost_is_healed_with_its_entries(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    transfers = [make_transfer(alice, bob, amount) for amount in (10, 20, 30)]
    lost_id = str(transfers[1].transfer_id)
    lost = [
        m
        for m in outbox_messages()
        if payload(m)["aggregateId"] == lost_id or payload(m)["data"].get("transferId") == lost_id
    ]
    assert len(lost) == 3  # its TransferPosted and both EntryPosted

    result = projection_batch_apply([m for m in outbox_messages() if m not in lost], consumer_group="g")

    assert (result.healed, result.healed_transfers) == (2, 1)
    assert ProjectedTransfer.objects.filter(transfer_id=lost_id).exists()
    report = projections_verify()
    assert report.ok, report.summary_lines()


def test_healing_entries_leaves_a_transfer_that_arrived_as_it_is(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    for amount in (10, 20):
        make_transfer(alice, bob, amount)
    first_entries = [m for m in outbox_messages("EntryPosted") if payload(m)["data"]["sequence"] == 1]

    result = projection_batch_apply([m for m in outbox_messages() if m not in first_entries], consumer_group="g")

    assert (result.healed, result.healed_transfers) == (2, 0)
    assert ProjectedTransfer.objects.count() == 2
    assert projections_verify().ok


def test_invalid_messages_become_dead_letters_and_the_rest_still_applies(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    make_transfer(alice, bob, 5)
    poison = [
        ConsumedMessage(topic=ENTRY_TOPIC, partition=0, offset=900, key=b"x", value=b"{not json"),
        ConsumedMessage(topic=ENTRY_TOPIC, partition=0, offset=901, key=b"x", value=None),
        ConsumedMessage(
            topic=ENTRY_TOPIC,
            partition=0,
            offset=902,
            key=b"x",
            value=orjson.dumps({"eventId": "e", "type": "EntryPosted", "version": 1}),
        ),
        ConsumedMessage(
            topic=ENTRY_TOPIC,
            partition=0,
            offset=903,
            key=b"x",
            value=orjson.dumps({**payload(outbox_messages("EntryPosted")[0]), "version": 2}),
        ),
    ]

    result = projection_batch_apply(outbox_messages() + poison, consumer_group="g")

    assert [dead.message.offset for dead in result.dead_letters] == [900, 901, 902, 903]
    assert all(dead.reason for dead in result.dead_letters)
    assert projection_matches_ledger()


def test_the_relay_position_reached_is_recorded_with_the_projection_and_never_goes_back(make_account):
    make_account()
    message = outbox_messages()[0]

    def apply(offset: int, position: int | None = None) -> tuple[int, int | None]:
        headers = {} if position is None else {RELAY_POSITION_HEADER: str(position).encode()}
        projection_batch_apply(
            [ConsumedMessage(message.topic, 1, offset, message.key, message.value, headers)], consumer_group="g"
        )
        recorded = ConsumerOffset.objects.get(consumer_group="g", topic=message.topic, partition=1)
        return recorded.offset, recorded.relay_position

    assert apply(41, position=502) == (41, 502)
    assert apply(7, position=90) == (41, 502)  # a late batch of the partition's previous owner
    assert apply(0, position=610) == (0, 610)  # a new broker: offsets start again, positions go on
    assert apply(1) == (0, 610)  # a message that did not come from the relay
    assert projection_applied_positions(consumer_group="g", topics=[message.topic]) == {message.topic: {"1": 610}}


def test_a_multi_leg_transfer_is_projected_with_its_postings_and_description(make_account):
    buyer_usd, shop_usd = make_account("USD"), make_account("USD")
    shop_credits, buyer_credits = make_account("CREDITS"), make_account("CREDITS")
    outcome = transfer_create_postings(
        idempotency_key="buy-credits",
        postings=[
            Posting(buyer_usd.id, shop_usd.id, 1000, "USD"),
            Posting(shop_credits.id, buyer_credits.id, 1000, "CREDITS"),
        ],
        description="Buy 1,000 CREDITS for 10 USD",
    )
    (posted,) = outbox_messages("TransferPosted")
    data = decode(posted)["data"]  # validated against the registry's schemas, as the consumer does
    assert (data["from"], data["to"], data["amount"], data["currency"]) == (None, None, None, None)
    assert data["postings"] == outcome.document["postings"]
    assert data["description"] == "Buy 1,000 CREDITS for 10 USD"

    result = projection_batch_apply(outbox_messages(), consumer_group="g")

    assert dict(result.applied) == {"AccountCreated": 4, "EntryPosted": 4, "TransferPosted": 1}
    projected = ProjectedTransfer.objects.get()
    assert (projected.from_account_id, projected.amount, projected.description) == (
        None,
        None,
        "Buy 1,000 CREDITS for 10 USD",
    )
    assert projected.postings == data["postings"]
    assert projected.entries == data["entries"]
    assert sorted(projected.account_ids) == sorted(
        str(account.id) for account in (buyer_usd, shop_usd, shop_credits, buyer_credits)
    )
    assert projection_matches_ledger()
    assert projections_verify().ok


def test_a_transfer_event_from_before_postings_is_projected_with_its_one_posting(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    make_transfer(alice, bob, 5)
    messages = outbox_messages()
    for index, message in enumerate(messages):
        event = payload(message)
        if event["type"] == "TransferPosted":
            del event["data"]["postings"], event["data"]["description"]
            messages[index] = ConsumedMessage(message.topic, 0, message.offset, message.key, orjson.dumps(event))

    result = projection_batch_apply(messages, consumer_group="g")

    assert result.dead_letters == []
    projected = ProjectedTransfer.objects.get()
    assert projected.postings == [{"from": str(alice.id), "to": str(bob.id), "amount": 5, "currency": "USD"}]
    assert projected.description is None
    assert projections_verify().ok


def test_a_reversal_is_projected_with_its_links_both_ways(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    original = make_transfer(alice, bob, 1000).transfer
    first = transfer_reverse(idempotency_key="refund-1", transfer_id=original.id, amount=300)
    second = transfer_reverse(idempotency_key="refund-2", transfer_id=original.id, amount=200, description="Goodwill")

    reversed_events = [payload(message) for message in outbox_messages("TransferReversed")]
    assert [(event["aggregateId"], event["data"]["reversalId"]) for event in reversed_events] == [
        (str(original.id), str(first.transfer_id)),
        (str(original.id), str(second.transfer_id)),
    ]
    assert [(event["data"]["amount"], event["data"]["reversedAmount"]) for event in reversed_events] == [
        (300, 300),
        (200, 500),
    ]
    posted = {event["data"]["transferId"]: event["data"] for event in map(payload, outbox_messages("TransferPosted"))}
    assert posted[str(first.transfer_id)]["reversalOf"] == str(original.id)
    assert posted[str(original.id)]["reversalOf"] is None

    result = projection_batch_apply(outbox_messages(), consumer_group="g")

    assert result.applied["TransferReversed"] == 1  # the running total of the batch's last one
    projected = {row.transfer_id: row for row in ProjectedTransfer.objects.all()}
    assert (projected[original.id].reversal_of, projected[original.id].reversed_amount) == (None, Decimal(500))
    assert projected[first.transfer_id].reversal_of == original.id
    assert projected[second.transfer_id].description == "Goodwill"
    assert projections_verify().ok


def test_transfer_reversed_events_apply_in_any_order_and_twice_without_going_back(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    original = make_transfer(alice, bob, 1000).transfer
    transfer_reverse(idempotency_key="refund-1", transfer_id=original.id, amount=300)
    transfer_reverse(idempotency_key="refund-2", transfer_id=original.id, amount=200)
    everything_else = [message for message in outbox_messages() if payload(message)["type"] != "TransferReversed"]
    first, second = outbox_messages("TransferReversed")
    projection_batch_apply(everything_else, consumer_group="g")

    projection_batch_apply([second], consumer_group="g")
    result = projection_batch_apply([first, second], consumer_group="g")

    assert (result.applied["TransferReversed"], result.duplicates) == (0, 2)
    assert ProjectedTransfer.objects.get(transfer_id=original.id).reversed_amount == 500
    assert projections_verify().ok


def test_verify_projections_finds_a_reversed_amount_that_drifted(make_account, make_transfer):
    alice, bob = make_account(), make_account()
    original = make_transfer(alice, bob, 1000).transfer
    transfer_reverse(idempotency_key="refund-1", transfer_id=original.id, amount=300)
    projection_batch_apply(outbox_messages(), consumer_group="g")
    ProjectedTransfer.objects.filter(transfer_id=original.id).update(reversed_amount=0)

    report = projections_verify()

    assert not report.ok
    assert [(drift.key, drift.detail) for drift in report.examples] == [
        (str(original.id), "reversed_amount 300 in the ledger, 0 in the projection")
    ]


def test_of_two_grant_events_with_the_same_updated_at_in_a_batch_the_later_one_wins(
    make_account, make_transfer, ledger_clock
):
    promotions, customer, usage = make_account(), make_account(overdraft_limit=0), make_account()
    now = ledger_now()
    grant = grant_create(
        account_id=customer.id,
        funding_account_id=promotions.id,
        amount=30,
        idempotency_key="g",
        expires_at=now + timedelta(days=1),
    ).document
    for amount in (8, 5):
        make_transfer(customer, usage, amount, hold=HoldRequest(expires_at=now + timedelta(hours=30)))
    ledger_clock.advance(timedelta(days=2))
    grants_book_due(limit=10)  # both holds expire at one instant, each releasing into the expired grant
    expiries = [payload(m)["data"] for m in outbox_messages("GrantExpired")]
    assert [e["expired"] for e in expiries] == [25, 30]
    assert expiries[0]["updatedAt"] == expiries[1]["updatedAt"]

    projection_batch_apply(outbox_messages(), consumer_group="g")

    assert ProjectedGrant.objects.get(grant_id=grant["grantId"]).document["expired"] == 30
    assert projections_verify().ok
