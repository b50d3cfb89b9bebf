"""API keys: what is kept, what authenticates, and that an unknown id costs what a wrong secret does."""

from __future__ import annotations

import hmac
import statistics
import time
from datetime import timedelta
from unittest import mock
from uuid import UUID

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys.models import ApiKey
from apps.apikeys.services import KEY_PREFIX, api_key_authenticate, api_key_create, api_key_revoke
from creditledger import errors

pytestmark = pytest.mark.django_db


def test_a_new_key_is_printed_once_and_only_its_hash_is_kept():
    created = api_key_create(name="billing", scopes=["transfers:write", "accounts:read"])
    assert created.printed.startswith(KEY_PREFIX)
    key_hex, secret = created.printed.removeprefix(KEY_PREFIX).split("_", 1)
    assert key_hex == created.key.id.hex
    assert len(secret) >= 43
    row = ApiKey.objects.get(id=created.key.id)
    assert secret not in repr(row.__dict__)
    assert row.owner == "billing"
    assert row.scopes == ["accounts:read", "transfers:write"]
    assert api_key_authenticate(presented=created.printed) == row


def test_the_owner_is_given_or_the_name():
    assert api_key_create(name="ci", scopes=["admin"], owner="acme").key.owner == "acme"
    assert api_key_create(name="ci", scopes=["admin"]).key.owner == "ci"


@pytest.mark.parametrize("scopes", [[], ["transfers:write", "transfers:delete"]])
def test_a_key_needs_known_scopes(scopes):
    with pytest.raises(errors.InvalidRequest):
        api_key_create(name="bad", scopes=scopes)
    assert not ApiKey.objects.exists()


def test_a_wrong_secret_an_unknown_id_a_malformed_key_and_a_revoked_key_do_not_authenticate():
    created = api_key_create(name="billing", scopes=["transfers:read"])
    key_hex, secret = created.printed[len(KEY_PREFIX) :].split("_", 1)
    other_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert api_key_authenticate(presented=f"{KEY_PREFIX}{key_hex}_{other_secret}") is None
    assert api_key_authenticate(presented=f"{KEY_PREFIX}{'0' * 32}_{secret}") is None
    for malformed in ("", secret, created.printed + "!", f"cl_test_{key_hex}_{secret}", created.printed.upper()):
        assert api_key_authenticate(presented=malformed) is None
    assert api_key_authenticate(presented=created.printed) is not None
    api_key_revoke(key_id=created.key.id)
    assert api_key_authenticate(presented=created.printed) is None


def test_revoking_an_unknown_key_is_not_found():
    created = api_key_create(name="billing", scopes=["transfers:read"])
    with pytest.raises(errors.NotFound):
        api_key_revoke(key_id=UUID(int=created.key.id.int ^ 1))


def test_the_last_use_is_written_at_most_once_a_minute(settings):
    settings.LEDGER = {**settings.LEDGER, "API_KEY_CACHE_SECONDS": 0}
    created = api_key_create(name="billing", scopes=["transfers:read"])
    with CaptureQueriesContext(connection) as first:
        api_key_authenticate(presented=created.printed)
    assert [query["sql"].split()[0] for query in first.captured_queries] == ["SELECT", "UPDATE"]
    used = ApiKey.objects.get(id=created.key.id).last_used_at
    assert used is not None

    with CaptureQueriesContext(connection) as again:
        api_key_authenticate(presented=created.printed)
    assert [query["sql"].split()[0] for query in again.captured_queries] == ["SELECT"]

    ApiKey.objects.filter(id=created.key.id).update(last_used_at=timezone.now() - timedelta(seconds=61))
    api_key_authenticate(presented=created.printed)
    later = ApiKey.objects.get(id=created.key.id).last_used_at
    assert later is not None
    assert later > used


def test_a_verdict_is_kept_no_longer_than_the_cache_time(listening, settings):
    """The ceiling for a notification that went missing: here the revocation is never notified,
    since this test's transaction, which holds it, never commits."""
    settings.LEDGER = {**settings.LEDGER, "API_KEY_CACHE_SECONDS": 0.5}
    created = api_key_create(name="billing", scopes=["transfers:read"])
    assert api_key_authenticate(presented=created.printed) is not None
    ApiKey.objects.filter(id=created.key.id).update(revoked_at=timezone.now())

    with CaptureQueriesContext(connection) as cached:
        assert api_key_authenticate(presented=created.printed) is not None
    assert cached.captured_queries == []
    time.sleep(0.6)
    assert api_key_authenticate(presented=created.printed) is None


def test_a_revocation_in_this_process_holds_at_once_and_a_wrong_secret_is_never_cached(listening):
    """At once: before the notification, which in this test's transaction never comes."""
    created = api_key_create(name="billing", scopes=["transfers:read"])
    key_hex, secret = created.printed[len(KEY_PREFIX) :].split("_", 1)
    assert api_key_authenticate(presented=created.printed) is not None
    wrong_secret = f"{KEY_PREFIX}{key_hex}_{secret[::-1]}"
    assert api_key_authenticate(presented=wrong_secret) is None
    with CaptureQueriesContext(connection) as cached:
        assert api_key_authenticate(presented=created.printed) is not None
        assert api_key_authenticate(presented=wrong_secret) is None
    assert [query["sql"].split()[0] for query in cached.captured_queries] == ["SELECT"]

    api_key_revoke(key_id=created.key.id)
    assert api_key_authenticate(presented=created.printed) is None


def _attempt_path(presented: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The queries an attempt runs and the lengths of what it compares, through the real
    compare_digest (wrapped, not replaced)."""
    with (
        CaptureQueriesContext(connection) as queries,
        mock.patch("apps.apikeys.services.hmac.compare_digest", wraps=hmac.compare_digest) as compare,
    ):
        assert api_key_authenticate(presented=presented) is None
    key_hex = presented.split("_")[2]
    statements = [query["sql"].replace(key_hex, "<id>") for query in queries.captured_queries]
    return statements, [(len(a), len(b)) for (a, b), _ in compare.call_args_list]


def test_an_unknown_key_id_takes_the_path_of_a_wrong_secret():
    created = api_key_create(name="billing", scopes=["transfers:read"])
    key_hex, secret = created.printed[len(KEY_PREFIX) :].split("_", 1)
    wrong_secret = f"{KEY_PREFIX}{key_hex}_{secret[::-1]}"
    unknown_id = f"{KEY_PREFIX}{'f' * 32}_{secret}"

    assert _attempt_path(wrong_secret) == _attempt_path(unknown_id)
    assert _attempt_path(wrong_secret)[1] == [(64, 64)]


def test_an_unknown_key_id_takes_as_long_as_a_wrong_secret():
    """Timed, interleaved, on medians: the two differ by the row the lookup finds, not by any
    work on the secret. A bound of 1.5x leaves room for a busy machine."""
    created = api_key_create(name="billing", scopes=["transfers:read"])
    key_hex, secret = created.printed[len(KEY_PREFIX) :].split("_", 1)
    attempts = {
        "wrong secret": f"{KEY_PREFIX}{key_hex}_{secret[::-1]}",
        "unknown id": f"{KEY_PREFIX}{'f' * 32}_{secret}",
    }
    timings: dict[str, list[float]] = {name: [] for name in attempts}
    for _ in range(200):
        for name, presented in attempts.items():
            started = time.perf_counter()
            api_key_authenticate(presented=presented)
            timings[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    assert max(medians.values()) < 1.5 * min(medians.values()), medians
