"""account_create, account_update and currency_create."""

from __future__ import annotations

import pytest

from apps.accounts.models import Account, AccountChange, AccountStatus, Currency
from apps.accounts.services import account_create, account_update, currency_create
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


# --- account_update -------------------------------------------------------------------------


def updates() -> list[dict]:
    return [row.payload["data"] for row in OutboxEvent.objects.filter(event_type="AccountUpdated").order_by("id")]


def test_an_update_changes_only_the_given_fields_and_announces_them(make_account):
    account = make_account(name="Acme", metadata={"plan": "free"}, overdraft_limit=0)

    updated = account_update(account_id=account.id, name="Acme Inc", overdraft_limit=None, reason="upgrade")

    stored = Account.objects.get(id=account.id)
    assert (stored.name, stored.overdraft_limit, stored.metadata, stored.status) == (
        "Acme Inc",
        None,
        {"plan": "free"},
        AccountStatus.ACTIVE,
    )
    assert updated.updated_at == stored.updated_at > account.updated_at
    assert updates() == [
        {
            "accountId": str(account.id),
            "changedFields": ["name", "overdraftLimit"],
            "status": "active",
            "name": "Acme Inc",
            "overdraftLimit": None,
            "reason": "upgrade",
        }
    ]
    (change,) = AccountChange.objects.filter(account=account)
    assert (change.changes, change.reason, change.changed_by, change.created_at) == (
        {"name": "Acme Inc", "overdraftLimit": None},
        "upgrade",
        None,
        stored.updated_at,
    )


def test_asking_for_the_values_an_account_has_changes_nothing(make_account):
    account = make_account(name="Acme", metadata={"plan": "pro"})

    account_update(account_id=account.id, name="Acme", metadata={"plan": "pro"}, status="active")

    assert Account.objects.get(id=account.id).updated_at == account.updated_at
    assert updates() == []
    assert not AccountChange.objects.exists()


def test_only_the_fields_that_differ_are_announced(make_account):
    account = make_account(name="Acme")

    account_update(account_id=account.id, name="Acme", metadata={"plan": "pro"})

    assert updates() == [
        {"accountId": str(account.id), "changedFields": ["metadata"], "status": "active", "metadata": {"plan": "pro"}}
    ]


def test_an_update_without_any_field_is_refused():
    with pytest.raises(errors.InvalidRequest):
        account_update(account_id=Account().id, reason="nothing")


def test_an_unknown_account_cannot_be_updated():
    with pytest.raises(errors.AccountNotFound):
        account_update(account_id=Account().id, name="ghost")


@pytest.mark.parametrize(
    ("path", "final"),
    [
        (["frozen"], "frozen"),
        (["frozen", "active"], "active"),
        (["frozen", "closed"], "closed"),
    ],
)
def test_the_status_goes_active_to_frozen_and_back_or_frozen_to_closed(make_account, path, final):
    account = make_account()

    for status in path:
        account_update(account_id=account.id, status=status)

    assert Account.objects.get(id=account.id).status == final
    assert [data["status"] for data in updates()] == path


@pytest.mark.parametrize("start", [[], ["frozen"]])
def test_an_empty_active_or_frozen_account_closes(make_account, start):
    account = make_account()
    for status in start:
        account_update(account_id=account.id, status=status)

    closed = account_update(account_id=account.id, status="closed")

    assert closed.status == Account.objects.get(id=account.id).status == "closed"


@pytest.mark.parametrize("target", ["active", "frozen"])
def test_a_closed_account_never_reopens(make_account, target):
    account = make_account()
    account_update(account_id=account.id, status="closed")

    with pytest.raises(errors.AccountClosed):
        account_update(account_id=account.id, status=target)

    assert Account.objects.get(id=account.id).status == "closed"


def test_a_frozen_account_can_neither_be_debited_nor_credited(make_account, make_transfer):
    frozen, other = make_account(), make_account()
    account_update(account_id=frozen.id, status="frozen")

    for source, destination, field in ((frozen, other, "from"), (other, frozen, "to")):
        with pytest.raises(errors.AccountNotActive) as refused:
            make_transfer(source, destination, 10)
        assert (refused.value.field, refused.value.params) == (field, {"accountStatus": "frozen"})


def test_an_account_with_a_balance_cannot_close(make_account, make_transfer):
    account, other = make_account(), make_account()
    make_transfer(other, account, 30)
    account_update(account_id=account.id, status="frozen")

    with pytest.raises(errors.AccountNotEmpty) as refused:
        account_update(account_id=account.id, status="closed")

    assert (refused.value.field, refused.value.params) == (
        "status",
        {"balance": 30, "pendingDebits": 0, "pendingCredits": 0},
    )
    assert Account.objects.get(id=account.id).status == AccountStatus.FROZEN


def test_an_emptied_account_can_close(make_account, make_transfer):
    account, other = make_account(), make_account()
    make_transfer(other, account, 30)
    make_transfer(account, other, 30)
    account_update(account_id=account.id, status="frozen")

    account_update(account_id=account.id, status="closed", reason="customer left")

    assert Account.objects.get(id=account.id).status == AccountStatus.CLOSED
    assert updates()[-1]["reason"] == "customer left"


def test_a_closed_account_never_changes_but_the_same_request_again_is_fine(make_account):
    account = make_account(name="Acme")
    account_update(account_id=account.id, status="frozen")
    account_update(account_id=account.id, status="closed")
    announced = len(updates())

    account_update(account_id=account.id, status="closed")  # a retry: nothing to change
    for change in ({"name": "Other"}, {"metadata": {"a": 1}}, {"overdraft_limit": 0}, {"status": "frozen"}):
        with pytest.raises(errors.AccountClosed) as refused:
            account_update(account_id=account.id, **change)
        assert refused.value.params == {"accountStatus": "closed"}

    stored = Account.objects.get(id=account.id)
    assert (stored.name, stored.status, stored.overdraft_limit) == ("Acme", AccountStatus.CLOSED, None)
    assert len(updates()) == announced


@pytest.mark.parametrize(("limit", "accepted"), [(99, False), (100, True), (None, True)])
def test_the_overdraft_limit_cannot_go_below_what_the_balance_needs(make_account, make_transfer, limit, accepted):
    account, other = make_account(), make_account()
    make_transfer(account, other, 100)  # unlimited overdraft: the balance is now -100

    if accepted:
        account_update(account_id=account.id, overdraft_limit=limit)
        assert Account.objects.get(id=account.id).overdraft_limit == limit
    else:
        with pytest.raises(errors.OverdraftLimitBelowBalance) as refused:
            account_update(account_id=account.id, overdraft_limit=limit)
        assert (refused.value.field, refused.value.params) == (
            "overdraftLimit",
            {"balance": -100, "minimumOverdraftLimit": 100},
        )
        assert Account.objects.get(id=account.id).overdraft_limit is None


def test_a_refused_update_changes_nothing_not_even_its_acceptable_fields(make_account, make_transfer):
    account, other = make_account(name="Acme"), make_account()
    make_transfer(other, account, 5)

    with pytest.raises(errors.AccountNotEmpty):
        account_update(account_id=account.id, name="Other", status="closed")

    assert Account.objects.get(id=account.id).name == "Acme"
    assert updates() == []
    assert not AccountChange.objects.exists()
