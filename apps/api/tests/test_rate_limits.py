"""Rate limits per API key: past the budget of writes (or reads) per second, 429 problem+json
with Retry-After, nothing applied and nothing written; other keys and the other budget go on."""

from __future__ import annotations

import time

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.accounts.models import Account
from apps.apikeys.services import api_key_create
from creditledger.api import throttling

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
    # The estimate of the last minute stays over budget until half of this minute's weight has
    # faded in the next one: at most 90 s from now.
    assert 1 <= int(refused["Retry-After"]) <= 90
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


def test_after_retry_after_the_key_is_served_again(settings, problem):
    settings.LEDGER_AUTH = "required"
    settings.LEDGER = {**settings.LEDGER, "RATE_LIMITS": {"writes": "3/s", "reads": "300/s"}}
    api = keyed()
    answers = [open_account(api)]
    # Three in a second, and a few more if a second turns while they are counted.
    while answers[-1].status_code == 201 and len(answers) < 8:
        answers.append(open_account(api))
    problem(answers[-1], 429, "throttled")
    admitted = len(answers) - 1
    assert admitted >= 3

    time.sleep(int(answers[-1]["Retry-After"]))
    assert open_account(api).status_code == 201
    assert Account.objects.count() == admitted + 1


def test_concurrent_requests_of_one_key_are_counted_exactly(settings, run_together):
    """Sixteen workers at once against a budget of ten: Redis counts atomically, and the
    database cache's claims take turns, so exactly ten are admitted, where DRF's list of request
    times let concurrent requests overwrite each other."""
    settings.LEDGER_AUTH = "required"
    settings.LEDGER = {**settings.LEDGER, "RATE_LIMITS": {"writes": "100/s", "reads": "10/min"}}
    api_key = api_key_create(name="client", scopes=["accounts:read"]).printed

    def read(_: int) -> int:
        return APIClient().get("/currencies", HTTP_AUTHORIZATION=f"Bearer {api_key}").status_code

    statuses = run_together(16, read)
    assert sorted(statuses) == [200] * 10 + [429] * 6


def test_a_process_admits_from_its_slice_of_the_budget_and_never_past_the_budget(settings, monkeypatch, problem):
    """A process claims 2 % of a budget at a time and admits from it without asking the cache;
    another process claims its own slices from what is left, and the key's total stays within
    the budget: the first process's leftover is still its to admit."""
    settings.LEDGER_AUTH = "required"
    settings.LEDGER = {**settings.LEDGER, "RATE_LIMITS": {"writes": "100/s", "reads": "100/day"}}
    api = keyed()
    first, second = throttling._Leases(), throttling._Leases()

    monkeypatch.setattr(throttling, "_leases", first)
    assert api.get("/currencies").status_code == 200
    counter = next(iter(first._remaining))
    assert caches["throttle"].get(counter) == 2  # one admitted, one more leased to this process

    monkeypatch.setattr(throttling, "_leases", second)
    answers = [api.get("/currencies") for _ in range(99)]
    assert [a.status_code for a in answers[:98]] == [200] * 98
    problem(answers[98], 429, "throttled")
    assert caches["throttle"].get(counter) == 100

    monkeypatch.setattr(throttling, "_leases", first)
    assert api.get("/currencies").status_code == 200
    problem(api.get("/currencies"), 429, "throttled")


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
