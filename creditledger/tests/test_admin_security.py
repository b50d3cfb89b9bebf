"""The admin's hardening (issue 12, section 5): its URL path, login throttling (django-axes, ADR
0020), sessions that expire, staff password rules, and groups that may do only what they are for.

Not transactional, as in apps/ledger/tests/test_admin.py: the groups come from data migrations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.middleware import SessionMiddleware
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import Account
from apps.apikeys.services import api_key_create
from config.settings.base import TOP_LEVEL_PATHS_OUTSIDE_THE_ADMIN, admin_url_path
from creditledger.admin import AdminMessageMiddleware
from creditledger.devstack import BASE_DIR

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "quiet-harbour-lantern-47"


def django_in_subprocess(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`code` after django.setup() under the local settings, in a fresh interpreter with only `env`."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "LEDGER_"))}
    environment.update({"DJANGO_SETTINGS_MODULE": "config.settings.local", **env})
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


# --- 1. The admin's URL path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("admin/", "admin/"),
        ("admin", "admin/"),
        ("/ops/ledger-admin//", "ops/ledger-admin/"),
        (" backstage ", "backstage/"),
    ],
)
def test_the_admin_url_is_normalised_to_one_trailing_slash(raw, path):
    assert admin_url_path(raw) == path


@pytest.mark.parametrize(
    "raw", ["", "/", "ops//admin", "../admin", "ops/./admin", "my admin", "admin?x=1", "api/admin"]
)
def test_a_bad_admin_url_is_refused(raw):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_ADMIN_URL"):
        admin_url_path(raw)


@pytest.mark.parametrize("taken", sorted(TOP_LEVEL_PATHS_OUTSIDE_THE_ADMIN))
def test_the_admin_may_not_shadow_the_api(taken):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_ADMIN_URL"):
        admin_url_path(f"{taken}/admin/")


def test_the_paths_the_admin_may_not_take_are_those_the_url_conf_serves():
    def first_segments(patterns: list[Any], prefix: str) -> set[str]:
        found: set[str] = set()
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver) and pattern.app_name != "admin":
                found |= first_segments(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route:
                found.add(route.split("/")[0])
        return found

    served = first_segments(get_resolver().url_patterns, "")

    assert served | {settings.STATIC_URL.strip("/")} == TOP_LEVEL_PATHS_OUTSIDE_THE_ADMIN


def test_the_admin_is_served_where_django_admin_url_says():
    done = django_in_subprocess(
        "from django.urls import reverse; print(reverse('admin:index'), reverse('admin:login'))",
        DJANGO_ADMIN_URL="/ops/ledger-admin",
    )
    assert done.stdout.split() == ["/ops/ledger-admin/", "/ops/ledger-admin/login/"], done.stderr


def test_the_service_refuses_to_start_with_a_bad_admin_url():
    done = django_in_subprocess("print('started')", DJANGO_ADMIN_URL="transfers/")
    assert done.returncode != 0
    assert "started" not in done.stdout
    assert "ImproperlyConfigured: DJANGO_ADMIN_URL must be" in done.stderr


def test_by_default_the_admin_is_at_admin():
    assert reverse("admin:index") == "/admin/"


# --- 2. Login throttling ----------------------------------------------------------------------------


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("jane", password=STRONG_PASSWORD, is_staff=True)


def log_in(password: str, username: str = "jane", address: str = "192.0.2.10") -> tuple[Client, Any]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})
    return client, response


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_five_failed_logins_lock_that_username_out_from_that_address(staff):
    answers = [log_in("wrong")[1].status_code for _ in range(5)]
    client, locked = log_in(STRONG_PASSWORD)

    assert answers == [200, 200, 200, 200, 429]  # the login form again, then the lockout page
    assert locked.status_code == 429
    assert not logged_in(client)
    page = locked.content.decode()
    assert "Too many failed logins" in page
    assert "jane" in page
    assert STRONG_PASSWORD not in page


def test_a_lockout_holds_for_that_username_and_address_only(staff):
    User.objects.create_user("omar", password=STRONG_PASSWORD, is_staff=True)
    for _ in range(5):
        log_in("wrong")

    elsewhere, from_elsewhere = log_in(STRONG_PASSWORD, address="198.51.100.7")
    colleague, colleague_response = log_in(STRONG_PASSWORD, username="omar")

    assert from_elsewhere.status_code == 302
    assert logged_in(elsewhere)
    assert colleague_response.status_code == 302
    assert logged_in(colleague)


def test_a_lockout_ends_after_15_minutes(staff):
    for _ in range(5):
        log_in("wrong")
    assert log_in(STRONG_PASSWORD)[1].status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=15, seconds=1))
    client, response = log_in(STRONG_PASSWORD)

    assert response.status_code == 302
    assert logged_in(client)


def test_a_successful_login_forgets_the_failures_before_it(staff):
    for _ in range(4):
        log_in("wrong")
    assert log_in(STRONG_PASSWORD)[1].status_code == 302

    answers = [log_in("wrong")[1].status_code for _ in range(4)]

    assert answers == [200, 200, 200, 200]
    assert log_in(STRONG_PASSWORD)[1].status_code == 302


def test_api_key_failures_are_not_admin_logins(settings, staff, make_account):
    settings.LEDGER_AUTH = "required"
    account = make_account()
    good = APIClient(
        REMOTE_ADDR="192.0.2.10",
        HTTP_AUTHORIZATION=f"Bearer {api_key_create(name='app', scopes=['accounts:read']).printed}",
    )
    bad = APIClient(REMOTE_ADDR="192.0.2.10", HTTP_AUTHORIZATION="Bearer cl_live_nope_nope")

    refused = {bad.get(f"/accounts/{account.id}").status_code for _ in range(10)}

    assert refused == {401}
    assert good.get(f"/accounts/{account.id}").status_code == 200
    assert not AccessAttempt.objects.exists()
    assert log_in(STRONG_PASSWORD)[1].status_code == 302


def test_axes_checks_before_djangos_own_backend():
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


# --- 3. Sessions expire -----------------------------------------------------------------------------


def test_an_admin_session_lasts_8_hours_and_ends_with_the_browser(staff):
    client, _ = log_in(STRONG_PASSWORD)

    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert settings.SESSION_COOKIE_AGE == 8 * 60 * 60
    assert cookie["max-age"] == ""  # a browser-session cookie
    assert cookie["expires"] == ""
    assert client.session.get_expiry_age() == 8 * 60 * 60
    assert client.get(reverse("admin:index")).status_code == 200

    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_admin_keeps_its_messages_and_the_api_builds_no_message_storage(make_account):
    seen: dict[str, bool] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen[request.path] = hasattr(request, "_messages")
        return HttpResponse()

    chain = SessionMiddleware(AdminMessageMiddleware(view))
    admin_paths = [reverse("admin:index"), reverse("admin:login")]
    api_paths = ["/transfers", f"/accounts/{make_account().id}"]
    for path in admin_paths + api_paths:
        chain(RequestFactory().get(path))

    assert seen == {**dict.fromkeys(admin_paths, True), **dict.fromkeys(api_paths, False)}


def test_the_session_age_comes_from_the_environment_and_must_be_positive():
    print_age = "from django.conf import settings; print(settings.SESSION_COOKIE_AGE)"
    assert django_in_subprocess(print_age, DJANGO_SESSION_COOKIE_AGE="1800").stdout.strip() == "1800"
    for bad in ("0", "-5", "8h"):
        refused = django_in_subprocess(print_age, DJANGO_SESSION_COOKIE_AGE=bad)
        assert refused.returncode != 0
        assert "ImproperlyConfigured: DJANGO_SESSION_COOKIE_AGE must be" in refused.stderr


# --- 4. Staff passwords -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weak",
    ["Tr0ub4dor&3", "password1234", "739164820573", "jane.doe.admin"],
    ids=["shorter-than-12", "common", "numeric", "like-the-username"],
)
def test_a_weak_staff_password_is_refused(weak):
    user = User(username="jane.doe.admin", email="jane.doe@example.com", is_staff=True)

    with pytest.raises(ValidationError):
        validate_password(weak, user)
    validate_password(STRONG_PASSWORD, user)


def test_the_admin_refuses_a_weak_password_for_a_staff_user(admin_client, staff):
    url = reverse("admin:auth_user_password_change", args=[staff.pk])

    weak = admin_client.post(url, {"usable_password": "true", "password1": "short1", "password2": "short1"})
    new_password = "another-" + STRONG_PASSWORD
    strong = admin_client.post(url, {"usable_password": "true", "password1": new_password, "password2": new_password})

    assert weak.status_code == 200
    assert "This password is too short. It must contain at least 12 characters." in weak.content.decode()
    assert strong.status_code == 302
    staff.refresh_from_db()
    assert staff.check_password(new_password)


def test_staff_cannot_change_their_own_password_to_a_weak_one(staff):
    client, _ = log_in(STRONG_PASSWORD)

    response = client.post(
        reverse("admin:password_change"),
        {"old_password": STRONG_PASSWORD, "new_password1": "password1234", "new_password2": "password1234"},
    )

    assert response.status_code == 200
    assert "This password is too common." in response.content.decode()
    staff.refresh_from_db()
    assert staff.check_password(STRONG_PASSWORD)


# --- 5. What the support groups may do --------------------------------------------------------------


def staff_in(*groups: str) -> User:
    user = User.objects.create_user("-".join(groups) or "staff", is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


def registered_models() -> list[type[Model]]:
    return sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.mark.parametrize("groups", [("support",), ("support-lead",), ("support", "support-lead")])
def test_support_groups_may_add_change_or_delete_nothing_in_any_admin_page(groups):
    user = staff_in(*groups)
    request = RequestFactory().get("/")
    request.user = user
    client = Client()
    client.force_login(user)

    for model in registered_models():
        model_admin = admin.site._registry[model]
        label = model._meta.label
        assert not model_admin.has_add_permission(request), label
        assert not model_admin.has_change_permission(request), label
        assert not model_admin.has_delete_permission(request), label
        opts = model._meta
        assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 403, label
        # No action on a list they see (axes' "clean up expired attempts" is on a list they do not).
        if model_admin.has_view_permission(request):
            assert model_admin.get_actions(request) == {}, label
        else:
            assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).status_code == 403

    covered = {model._meta.label for model in registered_models()}
    assert {"apikeys.ApiKey", "ledger.CreditGrant", "accounts.Account", "auth.User", "axes.AccessAttempt"} <= covered


def test_support_cannot_change_delete_or_revoke_an_api_key_or_a_grant_by_posting(make_account):
    created = api_key_create(name="billing", scopes=["admin"])
    client = Client()
    client.force_login(staff_in("support", "support-lead"))

    for url, data in [
        (reverse("admin:apikeys_apikey_change", args=[created.key.pk]), {"name": "renamed", "scopes": ["admin"]}),
        (reverse("admin:apikeys_apikey_delete", args=[created.key.pk]), {"post": "yes"}),
        (reverse("admin:auth_user_add"), {"username": "mallory", "password1": "x", "password2": "x"}),
    ]:
        assert client.post(url, data).status_code == 403, url
    client.post(
        reverse("admin:apikeys_apikey_changelist"), {"action": "revoke", "_selected_action": [str(created.key.pk)]}
    )

    created.key.refresh_from_db()
    assert (created.key.name, created.key.revoked_at) == ("billing", None)
    assert not User.objects.filter(username="mallory").exists()


def test_a_support_lead_may_freeze_and_unfreeze_but_not_edit_an_account(make_account):
    account = make_account(name="Alice")
    client = Client()
    client.force_login(staff_in("support-lead"))
    status_url = reverse("admin:accounts_account_status", args=[account.pk])

    edited = client.post(reverse("admin:accounts_account_change", args=[account.pk]), {"name": "Mallory"})
    frozen = client.post(status_url, {"reason": "card reported stolen"})
    unfrozen = client.post(status_url, {"reason": "card found"})

    assert edited.status_code == 403
    assert (frozen.status_code, unfrozen.status_code) == (302, 302)
    account = Account.objects.get(pk=account.pk)
    assert (account.name, account.status) == ("Alice", "active")
