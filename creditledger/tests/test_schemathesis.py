"""Schemathesis fuzzes every operation of the served OpenAPI schema, in-process through the
WSGI application and against the real database: no input may get a 5xx, and every answer
must match the schema (status code, content type, body, headers).

Bounded and reproducible: a fixed seed, deterministic generation and a fixed number of
examples per operation and phase. About a minute on a 2-core machine.
"""

from __future__ import annotations

from uuid import UUID

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application

from apps.accounts.models import Account

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


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, databases=["default", "read"])
@pytest.mark.usefixtures("example_accounts")
@schema.parametrize()
def test_no_request_gets_a_server_error_or_an_answer_outside_the_schema(case):
    case.call_and_validate()
