"""Fixtures shared by every app's tests. Everything talks to a real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Account
from apps.accounts.services import account_create
from apps.ledger.services import TransferOutcome, transfer_create

_keys = itertools.count()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def make_account() -> Callable[..., Account]:
    def make(currency: str = "USD", **kwargs: Any) -> Account:
        return account_create(currency=currency, **kwargs)

    return make


@pytest.fixture
def make_transfer() -> Callable[..., TransferOutcome]:
    """Post a transfer through the service, with a fresh idempotency key unless given one."""

    def make(source: Account, destination: Account, amount: int, **kwargs: Any) -> TransferOutcome:
        kwargs.setdefault("idempotency_key", f"test-{next(_keys)}")
        kwargs.setdefault("currency", source.currency_id)
        return transfer_create(from_account_id=source.id, to_account_id=destination.id, amount=amount, **kwargs)

    return make
