"""GET /accounts/{id}/balance over HTTP."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

MISSING_ID = "01900000-0000-7000-8000-000000000000"


def test_a_balance_shows_what_is_left_to_spend(api, make_account, make_transfer, sync_projections):
    wallet, other = make_account(overdraft_limit=100), make_account()
    make_transfer(other, wallet, 1_000)
    make_transfer(wallet, other, 250)
    sync_projections()

    body = api.get(f"/accounts/{wallet.id}/balance").json()

    assert (body["accountId"], body["currency"], body["balance"]) == (str(wallet.id), "USD", 750)
    assert (body["overdraftLimit"], body["available"], body["lastSequence"]) == (100, 850, 2)


def test_an_unlimited_overdraft_has_no_available_limit(api, make_account):
    account = make_account("EUR")

    body = api.get(f"/accounts/{account.id}/balance").json()

    assert (body["currency"], body["balance"], body["overdraftLimit"], body["available"]) == ("EUR", 0, None, None)


def test_the_balance_of_an_unknown_account_is_a_404(api, problem):
    body = problem(api.get(f"/accounts/{MISSING_ID}/balance"), 404, "account_not_found")

    assert MISSING_ID in body["detail"]


def test_a_malformed_account_id_is_a_404_that_says_why(api, problem):
    body = problem(api.get("/accounts/12345/balance"), 404, "account_not_found")

    assert "not a valid account id" in body["detail"]


@pytest.mark.django_db  # refused before anything could commit
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"currency": "USD"}, "currency"),
        ({"consistencytoken": "eyJ9"}, "consistencytoken"),  # misspelt: the read would not wait
        ({"consistencyToken": ["eyJ9", "eyJ9"]}, "consistencyToken"),
    ],
)
def test_unknown_or_repeated_balance_parameters_are_a_400_as_on_every_other_read(
    api, make_account, problem, params, field
):
    account = make_account()

    problem(api.get(f"/accounts/{account.id}/balance", params), 400, "validation_error", field=field)


def test_an_empty_consistency_token_reads_without_waiting(api, make_account):
    account = make_account()

    response = api.get(f"/accounts/{account.id}/balance", {"consistencyToken": ""})

    assert response.status_code == 200
