"""Celery entry points of the ledger: thin wrappers around services.py."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.ledger.services import grants_book_due, holds_expire


@shared_task(name="apps.ledger.tasks.expire_holds", ignore_result=True)
def expire_holds() -> int:
    """Release the holds past their expiry, a batch per run (beat runs it every second)."""
    return holds_expire(limit=settings.LEDGER["HOLD_EXPIRY_BATCH"])


@shared_task(name="apps.ledger.tasks.book_grants_due", ignore_result=True)
def book_grants_due() -> int:
    """Book grant activations and expiries due on idle accounts, a batch per run (beat runs it
    every second); an account's own commands book them first when it is active."""
    return grants_book_due(limit=settings.LEDGER["GRANT_BOOKING_BATCH"])
