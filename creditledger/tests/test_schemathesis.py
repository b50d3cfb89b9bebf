"""Schemathesis fuzzes every operation of the served OpenAPI schema, in-process through the
WSGI application and against the real database, with API keys required and a valid key that
holds every scope: no input may get a 5xx, and every answer must match the schema (status
code, content type, body, headers).

Bounded and reproducible: a fixed seed, deterministic generation and a fixed number of
examples per operation and phase. About a minute on a 2-core machine.
"""

from __future__ import annotations

from uuid import UUID

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application

from apps.accounts.models import Account
from apps.apikeys.services import api_key_create
from creditledger.api.scopes import SCOPES

SCHEMATHESIS_CONFIG = {
    "seed": 20261130,
    # No example database: nothing is replayed from earlier runs, so every run is the same run.
    "generation": {"max-examples": 150, "deterministic": True, "database": "none"},
    "checks": {
        # Input the schema allows may still be refused, rightly: an opaque cursor that was not
        # issued, a currency that is not registered, an account that does not exist, a
        # business rule. Input the schema refuses must be refused (negative_data_rejection).
        "positive_data_acceptance": {"enabled": False},
    },
}

# The accounts of the POST /transfers example (apps/api/transfers.py), so that the example and
# its fuzzed variants reach the posting function instead of stopping at 404.
EXAMPLE_ACCOUNT_IDS = [UUID("0193a1b2-0000-7000-8000-00000000000a"), UUID("0193a1b2-0000-7000-8000-00000000000b")]

schema = schemathesis.openapi.from_wsgi(
    "/api/schema/", get_wsgi_application(), config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
)


@pytest.fixture
def example_accounts() -> None:
    Account.objects.bulk_create([Account(id=account_id, currency_id="USD") for account_id in EXAMPLE_ACCOUNT_IDS])


@pytest.fixture
def keys_required(settings) -> None:
    """As in production; with budgets the fuzzing never reaches."""
    settings.LEDGER_AUTH = "required"
    settings.LEDGER = {**settings.LEDGER, "RATE_LIMITS": {"writes": "100000/s", "reads": "100000/s"}}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, databases=["default", "read"])
@pytest.mark.usefixtures("example_accounts", "keys_required")
@schema.parametrize()
def test_no_request_gets_a_server_error_or_an_answer_outside_the_schema(case):
    # A key per example: hypothesis runs many examples in one test, and a fixture's value would be shared.
    key = api_key_create(name="schemathesis", scopes=list(SCOPES)).printed
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"})
