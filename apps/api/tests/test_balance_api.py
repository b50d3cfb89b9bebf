"""GET /accounts/{id}/balance over HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from django.utils import timezone
from rest_framework.fields import DateTimeField
from rest_framework.renderers import JSONRenderer

from apps.api.accounts import AccountBalanceApi, BalanceAsOf, _balance_document
from apps.ledger.models import Entry
from apps.projections.selectors import Balance

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

MISSING_ID = "01900000-0000-7000-8000-000000000000"
MICROSECOND = timedelta(microseconds=1)


def iso_z(moment) -> str:
    """As the API writes a time: UTC, microseconds, Z."""
    return DateTimeField().to_representation(moment)


def test_a_balance_shows_what_is_left_to_spend(api, make_account, make_transfer, sync_projections):
    wallet, other = make_account(overdraft_limit=100), make_account()
    make_transfer(other, wallet, 1_000)
    make_transfer(wallet, other, 250)
    sync_projections()

    body = api.get(f"/accounts/{wallet.id}/balance").json()

    assert (body["accountId"], body["currency"], body["balance"]) == (str(wallet.id), "USD", 750)
    assert (body["overdraftLimit"], body["available"], body["lastSequence"]) == (100, 850, 2)
    # Minor units are integers in the JSON, never 750.0.
    assert all(type(body[name]) is int for name in ("balance", "pendingDebits", "pendingCredits", "available"))


def test_available_is_what_the_overdraft_rule_sees_even_while_the_read_model_catches_up(
    api, make_account, make_transfer, sync_projections
):
    wallet, other = make_account(overdraft_limit=0), make_account()
    make_transfer(other, wallet, 1_000)
    sync_projections()
    make_transfer(wallet, other, 600)  # not projected yet

    body = api.get(f"/accounts/{wallet.id}/balance").json()

    assert (body["balance"], body["available"]) == (1_000, 400)  # never the 1,000 it cannot spend
    refused = api.post(
        "/transfers",
        {"from": str(wallet.id), "to": str(other.id), "amount": 401, "currency": "USD", "idempotencyKey": "over"},
        format="json",
    )
    assert (refused.status_code, refused.json()["available"]) == (422, 400)
    sync_projections()
    caught_up = api.get(f"/accounts/{wallet.id}/balance").json()
    assert caught_up["available"] == caught_up["balance"] - caught_up["pendingDebits"] + caught_up["overdraftLimit"]


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


# --- asOf: the posted balance at an instant, from the ledger --------------------------------------


def iso(moment) -> str:
    return moment.isoformat()


def test_as_of_gives_the_posted_balance_after_the_last_entry_at_or_before_it(api, make_account, make_transfer):
    wallet, other = make_account(overdraft_limit=100), make_account()
    make_transfer(other, wallet, 1_000)
    make_transfer(wallet, other, 250)
    first, second = Entry.objects.filter(account=wallet).order_by("sequence")

    body = api.get(f"/accounts/{wallet.id}/balance", {"asOf": iso(second.created_at - MICROSECOND)}).json()

    # Nothing was projected: this is the ledger.
    assert body == {
        "accountId": str(wallet.id),
        "currency": "USD",
        "balance": 1_000,
        "available": 1_100,
        "overdraftLimit": 100,
        "pendingDebits": 0,
        "pendingCredits": 0,
        "lastSequence": 1,
        "updatedAt": iso_z(first.created_at),
        "consistency": {"projectedSequence": 1, "ledgerSequence": 1, "upToDate": True},
        "expiringSoon": None,
        "asOf": iso_z(second.created_at - MICROSECOND),
    }
    at_second = api.get(f"/accounts/{wallet.id}/balance", {"asOf": iso(second.created_at)}).json()
    assert (at_second["balance"], at_second["lastSequence"]) == (750, 2)


def test_as_of_before_the_first_entry_is_zero(api, make_account, make_transfer):
    wallet, other = make_account(), make_account()
    make_transfer(other, wallet, 5)
    first = Entry.objects.get(account=wallet)

    body = api.get(f"/accounts/{wallet.id}/balance", {"asOf": iso(first.created_at - MICROSECOND)}).json()

    assert (body["balance"], body["lastSequence"], body["updatedAt"]) == (0, 0, None)


def test_as_of_in_the_future_gives_the_current_posted_balance(api, make_account, make_transfer):
    wallet, other = make_account(), make_account()
    make_transfer(other, wallet, 42)

    body = api.get(f"/accounts/{wallet.id}/balance", {"asOf": "2999-01-01T00:00:00Z"}).json()

    assert (body["balance"], body["lastSequence"], body["asOf"]) == (42, 1, "2999-01-01T00:00:00Z")


@pytest.mark.parametrize("order", ["credit first", "debit first"])
def test_as_of_at_the_time_of_a_transfer_through_an_account_twice_counts_both_entries(
    api, make_account, make_transfer, order
):
    """One transaction's entries on an account share its time: the balance at that time is
    after the last of them, whatever order the postings came in."""
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account()
    make_transfer(bank, wallet, 15)
    credit = {"from": str(bank.id), "to": str(wallet.id), "amount": 15, "currency": "USD"}
    debit = {"from": str(wallet.id), "to": str(shop.id), "amount": 10, "currency": "USD"}
    postings = [credit, debit] if order == "credit first" else [debit, credit]
    answer = api.post("/transfers", {"postings": postings, "idempotencyKey": "twice"}, format="json")
    assert answer.status_code == 201, answer.content
    second, third = Entry.objects.filter(account=wallet, sequence__gt=1).order_by("sequence")
    assert second.created_at == third.created_at

    body = api.get(f"/accounts/{wallet.id}/balance", {"asOf": iso(second.created_at)}).json()
    lines = api.get(f"/accounts/{wallet.id}/statements", {"asOf": iso(second.created_at - MICROSECOND)}).json()

    assert (body["balance"], body["lastSequence"]) == (20, 3)
    assert lines["openingBalance"] == 15


def test_as_of_counts_the_holds_pending_at_that_instant_not_today(api, make_account, make_transfer):
    """Each hold counts from when it was placed until it was voided, posted or expired."""
    wallet, shop = make_account(overdraft_limit=0), make_account()
    make_transfer(shop, wallet, 100)

    def hold(amount: int, key: str, **extra) -> str:
        body = {"from": str(wallet.id), "to": str(shop.id), "amount": amount, "currency": "USD"}
        answer = api.post("/transfers", {**body, "idempotencyKey": key, "pending": True, **extra}, format="json")
        assert answer.status_code == 201, answer.content
        return answer.json()["transferId"]

    def command(transfer_id: str, verb: str) -> None:
        answer = api.post(
            f"/transfers/{transfer_id}/{verb}", {"idempotencyKey": f"{verb}-{transfer_id}"}, format="json"
        )
        assert answer.status_code == 200, answer.content

    def at(moment) -> tuple[int, int, int, int | None]:
        body = api.get(f"/accounts/{wallet.id}/balance", {"asOf": iso(moment)}).json()
        credited = api.get(f"/accounts/{shop.id}/balance", {"asOf": iso(moment)}).json()
        return body["balance"], body["pendingDebits"], credited["pendingCredits"], body["available"]

    instants = [timezone.now()]
    voided, posted = hold(30, "h1"), hold(20, "h2")
    instants.append(timezone.now())
    hold(40, "h3", timeoutSeconds=2)
    instants.append(timezone.now())
    command(voided, "void")
    instants.append(timezone.now())
    command(posted, "post")
    instants.append(timezone.now())
    time.sleep(2.1)  # the third hold expires
    instants.append(timezone.now())

    assert at(instants[0]) == (100, 0, 0, 100)
    assert at(instants[1]) == (100, 50, 50, 50)
    assert at(instants[2]) == (100, 90, 90, 10)
    assert at(instants[3]) == (100, 60, 60, 40)
    assert at(instants[4]) == (80, 40, 40, 40)
    assert at(instants[5]) == (80, 0, 0, 80)
    assert at(datetime(2020, 1, 1, tzinfo=UTC)) == (0, 0, 0, 0)


def test_as_of_is_read_in_utc_whatever_the_offset(api, make_account):
    wallet = make_account()

    body = api.get(f"/accounts/{wallet.id}/balance", {"asOf": "2026-11-24T01:30:00.5+02:00"}).json()

    assert body["asOf"] == "2026-11-23T23:30:00.500000Z"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "as_of",
    [
        "yesterday",
        "",
        "2026-11-23",
        "2026-11-23T23:32:20",  # no offset: the server's time zone would decide
        "2026-11-23T23:32:20 01:00",  # an unencoded + arrives as a space
        "2026-02-30T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "1700000000",
    ],
)
def test_an_invalid_as_of_is_a_400_naming_it(api, make_account, problem, as_of):
    wallet = make_account()

    problem(api.get(f"/accounts/{wallet.id}/balance", {"asOf": as_of}), 400, "validation_error", field="asOf")


def test_as_of_of_an_unknown_account_is_a_404(api, problem):
    problem(api.get(f"/accounts/{MISSING_ID}/balance", {"asOf": "2026-01-01T00:00:00Z"}), 404, "account_not_found")


def test_without_as_of_the_answer_has_no_as_of(api, make_account):
    wallet = make_account()

    assert "asOf" not in api.get(f"/accounts/{wallet.id}/balance").json()


def test_a_balance_is_one_ledger_query_and_one_read_model_query(
    api, make_account, make_transfer, sync_projections, django_assert_num_queries
):
    wallet, other = make_account(overdraft_limit=0), make_account()
    make_transfer(other, wallet, 40)
    sync_projections()

    with django_assert_num_queries(1, using="default"), django_assert_num_queries(1, using="read"):
        response = api.get(f"/accounts/{wallet.id}/balance")
    assert (response.status_code, response.json()["balance"]) == (200, 40)

    with django_assert_num_queries(1, using="default"), django_assert_num_queries(0, using="read"):
        response = api.get(f"/accounts/{wallet.id}/balance", {"asOf": iso(timezone.now())})
    assert (response.status_code, response.json()["balance"]) == (200, 40)


_POSTED = datetime(2026, 11, 30, 21, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "balance",
    [
        Balance(
            account_id=UUID(MISSING_ID),
            currency="USD",
            balance=-5,
            overdraft_limit=None,
            projected_sequence=0,
            ledger_sequence=0,
            updated_at=None,
            pending_debits=0,
            pending_credits=0,
            ledger_balance=-5,
        ),
        Balance(
            account_id=UUID(MISSING_ID),
            currency="CREDITS",
            balance=70,
            overdraft_limit=10,
            projected_sequence=3,
            ledger_sequence=4,
            updated_at=_POSTED,
            pending_debits=2,
            pending_credits=1,
            ledger_balance=65,
            expiring_amount=50,
            expiring_at=_POSTED.replace(microsecond=0),
        ),
        BalanceAsOf(
            account_id=UUID(MISSING_ID),
            currency="USD",
            balance=9,
            overdraft_limit=0,
            projected_sequence=2,
            ledger_sequence=2,
            updated_at=_POSTED,
            pending_debits=0,
            pending_credits=0,
            ledger_balance=9,
            as_of=_POSTED + timedelta(days=1),
        ),
    ],
)
def test_the_balance_answer_is_what_its_documented_serializer_writes(balance):
    """The view builds the answer itself (it is cheaper); the schema comes from the serializer."""
    renderer = JSONRenderer()
    documented = AccountBalanceApi.BalanceOutputSerializer(balance).data

    assert renderer.render(_balance_document(balance)) == renderer.render(documented)
