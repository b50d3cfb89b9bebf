"""API keys in the admin: created by staff with add_apikey (the key shown once), revoked by
staff with revoke_apikey, never edited or deleted."""

import re

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.apikeys.models import ApiKey
from apps.apikeys.services import KEY_PREFIX, api_key_authenticate, api_key_create

pytestmark = pytest.mark.django_db


def staff_client(username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="apikeys", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_staff_with_the_add_permission_create_a_key_and_see_it_once():
    staff = staff_client("ops", "view_apikey", "add_apikey")

    response = staff.post(
        reverse("admin:apikeys_apikey_add"),
        {"name": "billing", "owner": "acme", "scopes": ["transfers:write", "accounts:read"]},
        follow=True,
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert not list(get_messages(response.wsgi_request))  # a message would carry it in a cookie
    assert all(KEY_PREFIX not in morsel.value for morsel in response.cookies.values())
    shown = re.search(r'<code id="api-key">(cl_live_[^<]+)</code>', response.content.decode())
    assert shown is not None
    printed = shown[1]
    key = api_key_authenticate(presented=printed)
    assert key is not None
    assert (key.owner, key.scopes) == ("acme", ["accounts:read", "transfers:write"])
    page = staff.get(reverse("admin:apikeys_apikey_change", args=[key.pk])).content.decode()
    assert "billing" in page
    assert printed not in page
    assert key.secret_hash not in page


def test_staff_without_the_add_permission_cannot_create_one():
    staff = staff_client("viewer", "view_apikey")
    response = staff.post(reverse("admin:apikeys_apikey_add"), {"name": "x", "scopes": ["admin"]})
    assert response.status_code == 403
    assert not ApiKey.objects.exists()


def test_revoking_needs_the_revoke_permission():
    created = api_key_create(name="old", scopes=["admin"])
    action = {"action": "revoke", "_selected_action": [str(created.key.id)]}
    changelist = reverse("admin:apikeys_apikey_changelist")

    staff_client("viewer", "view_apikey").post(changelist, action)
    assert api_key_authenticate(presented=created.printed) is not None

    staff_client("ops", "view_apikey", "revoke_apikey").post(changelist, action)
    assert api_key_authenticate(presented=created.printed) is None


def test_an_action_on_an_id_that_is_not_one_changes_nothing_and_says_so():
    created = api_key_create(name="old", scopes=["admin"])
    staff = staff_client("ops", "view_apikey", "revoke_apikey")

    response = staff.post(
        reverse("admin:apikeys_apikey_changelist"),
        {"action": "revoke", "_selected_action": [str(created.key.id), "not-a-uuid"]},
        follow=True,
    )

    assert response.status_code == 200
    assert [str(message) for message in get_messages(response.wsgi_request)] == [
        "Not an id of this list: no items have been changed."
    ]
    assert api_key_authenticate(presented=created.printed) is not None


def test_nobody_edits_or_deletes_a_key():
    created = api_key_create(name="old", scopes=["admin"])
    superuser = User.objects.create_superuser("root")
    client = Client()
    client.force_login(superuser)
    client.post(reverse("admin:apikeys_apikey_change", args=[created.key.pk]), {"name": "renamed", "scopes": ["admin"]})
    client.post(reverse("admin:apikeys_apikey_delete", args=[created.key.pk]), {"post": "yes"})
    assert ApiKey.objects.get(pk=created.key.pk).name == "old"


def test_creating_and_revoking_a_key_are_in_the_admins_log_with_who_did_it():
    staff = staff_client("ops", "view_apikey", "add_apikey", "revoke_apikey")
    staff.post(reverse("admin:apikeys_apikey_add"), {"name": "billing", "owner": "acme", "scopes": ["accounts:read"]})
    key = ApiKey.objects.get(name="billing")
    action = {"action": "revoke", "_selected_action": [str(key.id)]}

    staff.post(reverse("admin:apikeys_apikey_changelist"), action)
    staff.post(reverse("admin:apikeys_apikey_changelist"), action)  # already revoked: nothing to log

    entries = LogEntry.objects.filter(object_id=str(key.id)).order_by("id")
    assert [(e.user.username, e.action_flag, e.get_change_message()) for e in entries] == [
        ("ops", ADDITION, "Created the API key with scopes accounts:read, owner acme."),
        ("ops", CHANGE, "Revoked the API key."),
    ]
    history = staff.get(reverse("admin:apikeys_apikey_history", args=[key.id])).content.decode()
    assert "Revoked the API key." in history
    assert KEY_PREFIX not in "".join(e.change_message for e in entries)
