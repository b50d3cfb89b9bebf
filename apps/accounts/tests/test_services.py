"""account_create and currency_create."""

from __future__ import annotations

import pytest

from apps.accounts.models import Account, AccountStatus, Currency
from apps.accounts.services import account_create, currency_create
from apps.outbox.models import OutboxEvent
from creditledger import errors

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_new_account_is_active_empty_and_announced():
    account = account_create(
        currency="USD", name="Acme", external_ref="cus_1", overdraft_limit=500, metadata={"plan": "pro"}
    )

    stored = Account.objects.get(id=account.id)
    assert (stored.currency_id, stored.name, stored.external_ref, stored.overdraft_limit, stored.metadata) == (
        "USD",
        "Acme",
        "cus_1",
        500,
        {"plan": "pro"},
    )
    assert (stored.status, stored.balance, stored.last_sequence) == (AccountStatus.ACTIVE, 0, 0)
    assert list(OutboxEvent.objects.values_list("event_type", "key")) == [("AccountCreated", str(account.id))]


def test_an_account_has_unlimited_overdraft_and_empty_metadata_unless_told_otherwise():
    account = account_create(currency="EUR")

    stored = Account.objects.get(id=account.id)
    assert (stored.overdraft_limit, stored.metadata, stored.name) == (None, {}, None)


def test_an_account_in_an_unknown_currency_is_refused_and_nothing_is_written():
    with pytest.raises(errors.UnknownCurrency) as refused:
        account_create(currency="XYZ")

    assert refused.value.field == "currency"
    assert not Account.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_a_new_currency_can_hold_accounts():
    currency = currency_create(code="GPU_HOURS", scale=3, name="GPU hours")

    assert Currency.objects.get(code="GPU_HOURS").scale == 3
    assert account_create(currency=currency.code).currency_id == "GPU_HOURS"


def test_a_currency_code_is_registered_once():
    currency_create(code="GPU_HOURS", scale=3, name="GPU hours")

    with pytest.raises(errors.Conflict) as refused:
        currency_create(code="GPU_HOURS", scale=0, name="Other")

    assert refused.value.field == "code"
    assert Currency.objects.get(code="GPU_HOURS").name == "GPU hours"
