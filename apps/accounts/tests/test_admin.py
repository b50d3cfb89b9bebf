"""The one write the admin allows: a support lead freezes or unfreezes an account, with a reason.

Not transactional, as in apps/ledger/tests/test_admin.py: the groups come from data migrations.
"""

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from apps.accounts.models import Account, AccountChange, AccountStatus
from apps.accounts.services import account_update
from apps.outbox.models import OutboxEvent

pytestmark = pytest.mark.django_db


def staff_client(username: str, *groups: str) -> Client:
    user = User.objects.create_user(username, is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=groups))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def lead() -> Client:
    return staff_client("lead", "support", "support-lead")


def status_url(account: Account) -> str:
    return reverse("admin:accounts_account_status", args=[account.pk])


def change_url(account: Account) -> str:
    return reverse("admin:accounts_account_change", args=[account.pk])


def updates() -> list[dict]:
    return [row.payload["data"] for row in OutboxEvent.objects.filter(event_type="AccountUpdated").order_by("id")]


def test_the_support_lead_group_may_view_accounts():
    group = Group.objects.get(name="support-lead")

    assert set(group.permissions.values_list("content_type__app_label", "codename")) == {("accounts", "view_account")}


def test_a_support_lead_freezes_an_account_with_a_reason_that_is_kept(lead, make_account):
    account = make_account()

    page = lead.get(status_url(account))
    response = lead.post(status_url(account), {"reason": "card reported stolen"})

    assert page.status_code == 200
    assert "will be frozen" in page.content.decode()
    assert response.status_code == 302
    assert response["Location"] == change_url(account)
    assert Account.objects.get(id=account.id).status == AccountStatus.FROZEN
    assert updates() == [
        {
            "accountId": str(account.id),
            "changedFields": ["status"],
            "status": "frozen",
            "reason": "card reported stolen",
        }
    ]
    (change,) = AccountChange.objects.filter(account=account)
    assert (change.changes, change.reason, change.changed_by) == ({"status": "frozen"}, "card reported stolen", "lead")
    assert change.actor == "user:lead"
    (event,) = OutboxEvent.objects.filter(event_type="AccountUpdated")
    assert event.payload["actor"] == "user:lead"
    history = lead.get(change_url(account)).content.decode()
    assert "The account is now frozen." in history  # the admin's messages (creditledger.admin.AdminMessageMiddleware)
    assert "card reported stolen" in history
    assert "user:lead" in history
    assert "Unfreeze" in history


def test_a_support_lead_unfreezes_a_frozen_account(lead, make_account):
    account = make_account()
    account_update(account_id=account.id, status="frozen", reason="review")

    lead.post(status_url(account), {"reason": "review done"})

    assert Account.objects.get(id=account.id).status == AccountStatus.ACTIVE
    assert [(data["status"], data["reason"]) for data in updates()] == [("frozen", "review"), ("active", "review done")]


def test_the_reason_is_required(lead, make_account):
    account = make_account()

    response = lead.post(status_url(account), {"reason": ""})

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert Account.objects.get(id=account.id).status == AccountStatus.ACTIVE
    assert updates() == []


def test_a_closed_account_cannot_be_unfrozen(lead, make_account):
    account = make_account()
    account_update(account_id=account.id, status="frozen")
    account_update(account_id=account.id, status="closed")

    response = lead.post(status_url(account), {"reason": "reopen"})

    assert response.status_code == 302
    assert Account.objects.get(id=account.id).status == AccountStatus.CLOSED
    assert "Freeze" not in lead.get(change_url(account)).content.decode()


@pytest.mark.parametrize("groups", [("support",), ()])
def test_staff_outside_the_support_lead_group_cannot_freeze(make_account, groups):
    account = make_account()
    client = staff_client("agent", *groups)

    assert client.get(status_url(account)).status_code == 403
    assert client.post(status_url(account), {"reason": "just because"}).status_code == 403
    assert Account.objects.get(id=account.id).status == AccountStatus.ACTIVE
    assert updates() == []


def test_support_sees_no_freeze_button(make_account):
    account = make_account()

    page = staff_client("agent", "support").get(change_url(account)).content.decode()

    assert status_url(account) not in page


def test_a_superuser_is_no_support_lead(make_account):
    account = make_account()
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="unused"))

    assert client.post(status_url(account), {"reason": "I can do anything"}).status_code == 403
    assert Account.objects.get(id=account.id).status == AccountStatus.ACTIVE


def test_freezing_and_unfreezing_are_in_the_admins_log_with_the_lead_and_the_reason(lead, make_account):
    account = make_account(name="Alice")

    lead.post(status_url(account), {"reason": "card reported stolen"})
    lead.post(status_url(account), {"reason": "card found"})

    entries = LogEntry.objects.filter(object_id=str(account.pk)).order_by("id")
    assert [(e.user.username, e.action_flag, e.get_change_message()) for e in entries] == [
        ("lead", CHANGE, "Froze the account: card reported stolen"),
        ("lead", CHANGE, "Unfroze the account: card found"),
    ]
    history = lead.get(reverse("admin:accounts_account_history", args=[account.pk])).content.decode()
    assert "Froze the account: card reported stolen" in history
    assert "Unfroze the account: card found" in history
    recent = lead.get(reverse("admin:index")).content.decode()
    assert change_url(account) in recent  # "Recent actions" links the account


def test_a_refused_freeze_is_not_logged(lead, make_account):
    account = make_account()

    lead.post(status_url(account), {"reason": ""})

    assert not LogEntry.objects.exists()
