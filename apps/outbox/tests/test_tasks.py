"""Celery entry points: pruning, and the commit-time kick drained by a real worker on the
configured broker (Redis in CI, kombu's SQLAlchemy transport on PostgreSQL under a bare `make test`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from apps.outbox import tasks
from apps.outbox.models import OutboxDelivery, OutboxEvent
from creditledger.celery import app
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def test_prune_deletes_only_rows_published_before_the_retention_with_their_deliveries(settings, make_account):
    settings.OUTBOX = {**settings.OUTBOX, "RETENTION_HOURS": 1}
    for _ in range(3):
        make_account()
    old, recent, unpublished = OutboxEvent.objects.order_by("id")
    OutboxEvent.objects.filter(id=old.id).update(published_at=timezone.now() - timedelta(hours=2))
    OutboxEvent.objects.filter(id=recent.id).update(published_at=timezone.now() - timedelta(minutes=10))
    OutboxDelivery.objects.bulk_create(
        [OutboxDelivery(outbox_id=row.id, relay_position=row.id, partition=0) for row in (old, recent)]
    )

    assert tasks.prune_outbox() == 1
    assert set(OutboxEvent.objects.values_list("id", flat=True)) == {recent.id, unpublished.id}
    assert list(OutboxDelivery.objects.values_list("outbox_id", flat=True)) == [recent.id]


def test_a_burst_of_commits_kicks_the_relay_once_per_window(settings, monkeypatch, make_account):
    settings.OUTBOX = {**settings.OUTBOX, "KICK_DEBOUNCE_SECONDS": 60}
    monkeypatch.setattr(tasks._Debounce, "scheduled_until", 0.0)
    sent = []
    monkeypatch.setattr(tasks.relay_outbox, "apply_async", lambda **options: sent.append(options))

    for _ in range(5):
        make_account()

    assert len(sent) == 1
    assert sent[0]["countdown"] == 60


def test_a_commit_kicks_a_worker_that_drains_the_outbox_without_beat(broker, settings, monkeypatch, make_account):
    settings.OUTBOX = {**settings.OUTBOX, "KICK_DEBOUNCE_SECONDS": 0.05}
    monkeypatch.setattr(tasks._Debounce, "scheduled_until", 0.0)
    app.control.purge()  # kicks left on the broker by earlier tests
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        account = make_account()
        wait_until(
            lambda: OutboxEvent.objects.filter(key=str(account.id), published_at__isnull=False).exists(),
            timeout=15,
            message="the kicked relay to publish the account's event",
        )
