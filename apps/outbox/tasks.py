"""Celery entry points of the outbox: thin wrappers around relay.py."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.outbox.models import OutboxDelivery, OutboxEvent
from apps.outbox.relay import outbox_relay
from creditledger import metrics

logger = logging.getLogger(__name__)


@shared_task(name="apps.outbox.tasks.relay_outbox", ignore_result=True)
def relay_outbox(shard: int = 0) -> dict:
    result = outbox_relay(shard=shard)
    return {"published": result.published, "failed": result.failed, "skipped": result.skipped}


@shared_task(name="apps.outbox.tasks.prune_outbox", ignore_result=True)
def prune_outbox() -> int:
    """Delete rows published longer ago than the retention, with their deliveries."""
    cutoff = timezone.now() - timedelta(hours=settings.OUTBOX["RETENTION_HOURS"])
    pruned = OutboxEvent.objects.filter(published_at__lt=cutoff)
    with transaction.atomic(durable=True):
        OutboxDelivery.objects.filter(outbox_id__in=pruned.values("id")).delete()
        deleted, _ = pruned.delete()
    if deleted:
        logger.info("pruned %d published outbox rows", deleted)
    return deleted


class _Debounce:
    lock = threading.Lock()
    scheduled_until = 0.0


def relay_kick() -> None:
    """Schedule a drain of every relay shard shortly after a commit that wrote outbox rows, at
    most once per debounce window in this process: the drains run after the window, so they
    see every row committed before they were scheduled."""
    window = settings.OUTBOX["KICK_DEBOUNCE_SECONDS"]
    now = time.monotonic()
    with _Debounce.lock:
        if now < _Debounce.scheduled_until:
            return
        _Debounce.scheduled_until = now + window
    try:
        for shard in range(settings.OUTBOX["SHARDS"]):
            relay_outbox.apply_async(args=(shard,), countdown=window, expires=window + 5, retry=False)
    except Exception:  # the broker is down: beat's next run drains instead
        metrics.RELAY_KICK_FAILURES.inc()
        logger.warning("could not kick the outbox relay; beat will drain it", exc_info=True)
