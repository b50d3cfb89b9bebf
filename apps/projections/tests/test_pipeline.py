"""The whole pipeline against a real Kafka-protocol broker: API -> ledger + outbox -> relay
-> Kafka -> consumer -> projections, including its failure modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from django.conf import settings
from django.db import connection, connections

from apps.ledger.services import HoldRequest, hold_post, hold_void, transfer_reverse
from apps.outbox.models import OutboxEvent
from apps.outbox.relay import outbox_relay
from apps.outbox.topics import ALL_TOPICS, ENTRY_TOPIC
from apps.projections.models import ProjectedStatementLine, ProjectedTransfer
from apps.projections.verification import projections_verify
from creditledger import kafka, metrics
from tests.support import projection_matches_ledger, read_topic, wait_until

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "read"]), pytest.mark.slow]

BASE_DIR = Path(__file__).resolve().parents[3]


def transfer_body(source, destination, key: str, amount: int = 100) -> dict:
    return {"from": str(source), "to": str(destination), "amount": amount, "currency": "USD", "idempotencyKey": key}


def test_a_posted_transfer_is_on_the_entry_topic_in_order_and_read_back_with_its_token(api, start_consumer):
    start_consumer()
    a = api.post("/accounts", {"currency": "USD"}, format="json").json()["accountId"]
    b = api.post("/accounts", {"currency": "USD"}, format="json").json()["accountId"]
    posted = [api.post("/transfers", transfer_body(a, b, f"order-{i}", 10 + i), format="json") for i in range(5)]
    assert [response.status_code for response in posted] == [201] * 5

    assert outbox_relay().published == 2 + 5 * 3

    on_topic = [orjson.loads(m.value()) for m in read_topic(ENTRY_TOPIC) if m.key() == a.encode()]
    assert [event["data"]["sequence"] for event in on_topic] == [1, 2, 3, 4, 5]
    assert {event["data"]["entryId"] for event in on_topic} == {
        entry["entryId"] for response in posted for entry in response.json()["entries"] if entry["accountId"] == a
    }
    token = posted[-1].json()["consistencyToken"]
    wait_until(
        lambda: api.get(f"/accounts/{b}/balance", {"consistencyToken": token}).status_code == 200,
        message="the projection to include the last transfer",
    )
    balance = api.get(f"/accounts/{b}/balance", {"consistencyToken": token}).json()
    assert balance["balance"] == sum(10 + i for i in range(5))
    assert balance["consistency"] == {"projectedSequence": 5, "ledgerSequence": 5, "upToDate": True}


def test_with_the_broker_down_the_api_keeps_accepting_and_after_it_returns_nothing_is_lost_or_doubled(
    api, broker, start_consumer, make_account
):
    source, destination = make_account(), make_account()
    assert outbox_relay().published == 2
    broker.stop()

    for i in range(20):
        assert (
            api.post("/transfers", transfer_body(source.id, destination.id, f"down-{i}"), format="json").status_code
            == 201
        )
    backlog = OutboxEvent.objects.filter(published_at__isnull=True).count()
    assert backlog == 20 * 3

    failed = outbox_relay()
    assert (failed.published, failed.failed) == (0, 1)
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == backlog
    assert outbox_relay().skipped == "backoff"
    assert f"creditledger_outbox_backlog {float(backlog)}" in api.get("/metrics").content.decode()

    broker.start()  # a new, empty broker on the same port
    start_consumer()
    # The two AccountCreated left with the old broker before any consumer read them: published again.
    assert outbox_relay(ignore_backoff=True).published == backlog + 2
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 0
    wait_until(projection_matches_ledger, message="the projections to match the ledger")
    assert ProjectedTransfer.objects.count() == 20
    assert api.get(f"/accounts/{destination.id}/balance").json()["balance"] == 20 * 100


def _database_url() -> str:
    db = connection.settings_dict
    host = db["HOST"] or "127.0.0.1"
    location = f"/{quote(host, safe='')}" if host.startswith("/") else f"{host}:{db['PORT'] or 5432}"
    credentials = db["USER"] + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{location}/{db['NAME']}"


def _consumer_process(group: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "KAFKA_BOOTSTRAP_SERVERS": settings.KAFKA["BOOTSTRAP_SERVERS"],
        "KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
    }
    env.pop("READ_DATABASE_URL", None)
    return subprocess.Popen(
        [
            sys.executable,
            str(BASE_DIR / "manage.py"),
            "consume_projections",
            "--group",
            group,
            "--batch-size",
            "5",
            "--metrics-port",
            "0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_a_consumer_killed_mid_batch_and_restarted_leaves_exact_projections(broker, make_account, make_transfer):
    accounts = [make_account() for _ in range(6)]
    for i in range(300):
        make_transfer(
            accounts[i % 6], accounts[(i * 7 + 1) % 6] if i % 6 != (i * 7 + 1) % 6 else accounts[(i + 1) % 6], 1 + i
        )
    outbox_relay()
    total = 300 * 2

    first = _consumer_process("killed")
    wait_until(lambda: ProjectedStatementLine.objects.count() > 0, message="the consumer to start applying")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert ProjectedStatementLine.objects.count() < total, "the consumer finished before it could be killed"

    second = _consumer_process("killed")
    try:
        wait_until(projection_matches_ledger, timeout=60, message="the restarted consumer to catch up")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.stderr is not None
        assert second.wait(timeout=30) == 0, second.stderr.read().decode()[-2000:]


def test_a_duplicate_delivery_is_applied_once(start_consumer, make_account, make_transfer):
    source, destination = make_account(), make_account()
    for _ in range(3):
        make_transfer(source, destination, 50)
    start_consumer()
    events = outbox_relay().published
    wait_until(projection_matches_ledger, message="the first delivery")
    before = list(ProjectedStatementLine.objects.order_by("account_id", "sequence").values())
    duplicates_before = metrics.EVENTS_DUPLICATE._value.get()

    OutboxEvent.objects.update(published_at=None)
    assert outbox_relay().published == events  # every event delivered a second time

    wait_until(
        lambda: metrics.EVENTS_DUPLICATE._value.get() - duplicates_before >= events,
        message="the consumer to see the redelivery",
    )
    assert list(ProjectedStatementLine.objects.order_by("account_id", "sequence").values()) == before
    assert ProjectedTransfer.objects.count() == 3
    assert projection_matches_ledger()


def test_poison_messages_go_to_the_dead_letter_topic_and_the_consumer_keeps_going(
    start_consumer, make_account, make_transfer
):
    kafka.topics_ensure([*ALL_TOPICS, settings.KAFKA["DEAD_LETTER_TOPIC"]])
    producer = kafka.producer_create()
    poison = [b"\xff\xfe not json", orjson.dumps({"eventId": "not-a-uuid", "type": "EntryPosted"})]
    for value in poison:
        producer.produce(ENTRY_TOPIC, key=b"poison", value=value)
    producer.flush(10)
    start_consumer()
    source, destination = make_account(), make_account()
    make_transfer(source, destination, 75)
    outbox_relay()

    wait_until(projection_matches_ledger, message="the valid events after the poison")
    dead = read_topic(settings.KAFKA["DEAD_LETTER_TOPIC"])
    assert sorted(m.value() for m in dead) == sorted(poison)
    for message in dead:
        headers = dict(message.headers())
        assert headers["dlq_source_topic"] == ENTRY_TOPIC.encode()
        assert headers["dlq_reason"]


def test_the_consumer_keeps_going_when_the_broker_restarts_empty_under_load(
    broker, start_consumer, make_account, make_transfer
):
    """Accounts busy before the restart are quiet after it, so what the old broker lost is
    not healed by a later entry: the relay publishes it again. The topics come back when the
    relay creates them, after the consumer has joined the new broker's group."""
    before, after = [make_account() for _ in range(4)], [make_account() for _ in range(4)]
    start_consumer(settings.KAFKA["CONSUMER_GROUP"])
    stop = threading.Event()

    def load() -> None:
        try:
            i = 0
            while not stop.is_set():
                make_transfer(before[i % 4], before[(i + 1) % 4], 1 + i)
                i += 1
                if i % 10 == 0:
                    outbox_relay()
        finally:
            connections.close_all()

    loader = threading.Thread(target=load)
    loader.start()
    wait_until(lambda: ProjectedStatementLine.objects.count() >= 100, message="the consumer to be busy")
    broker.stop()
    broker.start()
    stop.set()
    loader.join(timeout=60)
    for i in range(30):
        make_transfer(after[i % 4], after[(i + 1) % 4], 1 + i)

    wait_until(
        lambda: (
            outbox_relay(ignore_backoff=True).failed == 0
            and not OutboxEvent.objects.filter(published_at__isnull=True).exists()
        ),
        timeout=60,
        message="the relay to drain to the new broker",
    )
    report = projections_verify(wait=30)
    assert report.ok, report.summary_lines()


def test_dead_letters_still_go_out_after_the_broker_restarted_under_the_consumer(broker, start_consumer):
    """An idempotent producer is wedged for good by a broker that forgot it (messages time out,
    or a fatal sequence error stops the consumer): dead letters use a plain one."""
    kafka.topics_ensure([*ALL_TOPICS, settings.KAFKA["DEAD_LETTER_TOPIC"]])
    consumer = start_consumer()

    def poison(value: bytes) -> None:
        producer = kafka.producer_create()
        producer.produce(ENTRY_TOPIC, key=b"poison", value=value)
        assert producer.flush(10) == 0

    poison(b"before the restart")
    wait_until(
        lambda: len(read_topic(settings.KAFKA["DEAD_LETTER_TOPIC"], idle_seconds=0.5)) == 1,
        message="the first dead letter",
    )
    broker.stop()
    broker.start()
    kafka.topics_ensure([*ALL_TOPICS, settings.KAFKA["DEAD_LETTER_TOPIC"]])
    poison(b"after the restart")

    wait_until(
        lambda: (
            consumer.error is not None
            or [m.value() for m in read_topic(settings.KAFKA["DEAD_LETTER_TOPIC"], idle_seconds=0.5)]
            == [b"after the restart"]
        ),
        timeout=60,
        message="the dead letter sent to the new broker",
    )
    consumer.stop()  # raises what stopped it, if anything did


def test_holds_and_reversals_travel_through_kafka_into_the_read_model(start_consumer, make_account, make_transfer):
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account(overdraft_limit=0)
    make_transfer(bank, wallet, 1000)
    posted = make_transfer(wallet, shop, 300, hold=HoldRequest(timeout_seconds=600)).transfer_id
    voided = make_transfer(wallet, shop, 200, hold=HoldRequest(timeout_seconds=600)).transfer_id
    pending = make_transfer(wallet, shop, 50, hold=HoldRequest(timeout_seconds=600)).transfer_id
    hold_post(transfer_id=posted, idempotency_key="pipeline-post", amount=120)
    hold_void(transfer_id=voided, idempotency_key="pipeline-void")
    refund = transfer_reverse(idempotency_key="pipeline-refund", transfer_id=posted, amount=20).transfer_id
    start_consumer()

    published = outbox_relay().published

    kinds = set(OutboxEvent.objects.values_list("event_type", flat=True))
    assert {"TransferPending", "TransferPosted", "TransferVoided", "TransferReversed"} <= kinds
    assert published == OutboxEvent.objects.count()
    wait_until(projection_matches_ledger, message="the hold and reversal events to be applied")
    wait_until(lambda: projections_verify(limit=5).ok, message="verify_projections to be clean")
    statuses = dict(ProjectedTransfer.objects.values_list("transfer_id", "status"))
    assert (statuses[posted], statuses[voided], statuses[pending], statuses[refund]) == (
        "posted",
        "voided",
        "pending",
        "posted",
    )
    original = ProjectedTransfer.objects.get(transfer_id=posted)
    assert original.amount == 120
    assert original.reversed_amount == 20


def test_grants_travel_through_kafka_into_the_read_model(start_consumer, make_account, make_transfer, ledger_clock):
    from datetime import timedelta

    from apps.ledger.selectors import ledger_now
    from apps.ledger.services import grant_create, grant_void, grants_book_due
    from apps.projections.models import ProjectedGrant

    promotions, customer, shop = make_account(), make_account(overdraft_limit=0), make_account()
    expiring = grant_create(
        account_id=customer.id,
        funding_account_id=promotions.id,
        amount=30,
        idempotency_key="pipeline-grant-1",
        expires_at=ledger_now() + timedelta(days=1),
        description="Welcome bonus",
    ).document["grantId"]
    voided = grant_create(
        account_id=customer.id, funding_account_id=promotions.id, amount=5, idempotency_key="pipeline-grant-2"
    ).document["grantId"]
    make_transfer(customer, shop, 12, description="API usage")
    grant_void(grant_id=voided, idempotency_key="pipeline-grant-void")
    ledger_clock.advance(timedelta(days=2))
    assert grants_book_due(limit=10) == 1
    start_consumer()

    outbox_relay()

    wait_until(projection_matches_ledger, message="the grant events to be applied")
    wait_until(
        lambda: ProjectedGrant.objects.filter(status__in=["expired", "voided"]).count() == 2,
        message="the grants' final events",
    )
    projected = {str(row.grant_id): row for row in ProjectedGrant.objects.all()}
    assert (projected[expiring].status, projected[expiring].document["expired"]) == ("expired", 18)
    assert (projected[voided].status, projected[voided].document["voided"]) == ("voided", 5)
    assert {e for e in OutboxEvent.objects.values_list("event_type", flat=True) if e.startswith("Grant")} == {
        "GrantCreated",
        "GrantExpired",
        "GrantVoided",
    }
