"""Rate limits per API key: past the budget of writes (or reads) per second, 429 problem+json
with Retry-After, nothing applied and nothing written; other keys and the other budget go on."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.accounts.models import Account
from apps.apikeys.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


@pytest.fixture
def budgets(settings) -> None:
    settings.LEDGER_AUTH = "required"
    settings.LEDGER = {**settings.LEDGER, "RATE_LIMITS": {"writes": "2/min", "reads": "3/min"}}


def keyed() -> APIClient:
    api = APIClient()
    printed = api_key_create(name="client", scopes=["accounts:read", "accounts:write"]).printed
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {printed}")
    return api


def open_account(api: APIClient):
    return api.post("/accounts", {"currency": "USD"}, format="json")


@pytest.mark.usefixtures("budgets")
def test_past_its_write_budget_a_key_gets_429_and_nothing_is_applied(problem):
    api = keyed()
    assert [open_account(api).status_code for _ in range(2)] == [201, 201]

    with CaptureQueriesContext(connection) as queries:
        refused = open_account(api)

    body = problem(refused, 429, "throttled")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "available in" in body["detail"]
    assert Account.objects.count() == 2
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []
    # Reads have a budget of their own, and another key its own budgets.
    assert api.get("/accounts").status_code == 200
    assert open_account(keyed()).status_code == 201


@pytest.mark.usefixtures("budgets")
def test_past_its_read_budget_a_key_gets_429(problem):
    api = keyed()
    assert [api.get("/currencies").status_code for _ in range(3)] == [200, 200, 200]
    problem(api.get("/currencies"), 429, "throttled")
    assert open_account(api).status_code == 201


def test_without_keys_nothing_is_counted(settings):
    settings.LEDGER = {**settings.LEDGER, "RATE_LIMITS": {"writes": "1/min", "reads": "1/min"}}
    api = APIClient()
    assert [open_account(api).status_code for _ in range(3)] == [201, 201, 201]
    assert [api.get("/accounts").status_code for _ in range(3)] == [200, 200, 200]


def test_without_its_cache_a_limit_lets_requests_through_and_says_so(settings, caplog):
    """A Redis outage takes the rate limits down, not the API (nothing listens on port 1)."""
    settings.LEDGER_AUTH = "required"
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {"BACKEND": "creditledger.cache.SharedClientRedisCache", "LOCATION": "redis://127.0.0.1:1/0"},
    }
    api = keyed()

    assert open_account(api).status_code == 201
    assert api.get("/accounts").status_code == 200
    assert "rate limit writes not applied: its cache is unavailable" in caplog.text
    assert "rate limit reads not applied: its cache is unavailable" in caplog.text
