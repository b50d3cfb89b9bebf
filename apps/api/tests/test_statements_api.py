"""GET /accounts/{id}/statements over HTTP: entries in sequence order with the running balance."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from apps.api.accounts import StatementLineSerializer, _statement_line_document
from apps.projections.selectors import StatementLine

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

MISSING_ID = "01900000-0000-7000-8000-000000000000"


def lines(api, account, **params) -> list[dict]:
    response = api.get(f"/accounts/{account.id}/statements", params)
    assert response.status_code == 200, response.content
    return response.json()["data"]


def test_a_statement_lists_every_entry_in_sequence_order_with_its_running_balance(
    api, make_account, make_transfer, sync_projections
):
    account, other = make_account(), make_account()
    received = make_transfer(other, account, 500).transfer
    paid = make_transfer(account, other, 120).transfer
    make_transfer(other, account, 7)
    sync_projections()

    response = api.get(f"/accounts/{account.id}/statements")

    assert response.status_code == 200
    body = response.json()
    assert (body["accountId"], body["currency"], body["nextCursor"]) == (str(account.id), "USD", None)
    assert [(line["sequence"], line["amount"], line["side"], line["balanceAfter"]) for line in body["data"]] == [
        (1, 500, "credit", 500),
        (2, -120, "debit", 380),
        (3, 7, "credit", 387),
    ]
    assert [line["transferId"] for line in body["data"][:2]] == [str(received.id), str(paid.id)]
    assert {line["counterparty"] for line in body["data"]} == {str(other.id)}


def test_an_account_without_entries_has_an_empty_statement(api, make_account):
    account = make_account("JPY")

    response = api.get(f"/accounts/{account.id}/statements")

    assert response.json() == {"accountId": str(account.id), "currency": "JPY", "data": [], "nextCursor": None}


def test_a_cursor_walks_every_line_exactly_once(api, make_account, make_transfer, sync_projections):
    account, other = make_account(), make_account()
    for amount in range(1, 11):
        make_transfer(other, account, amount)
    sync_projections()

    sequences, cursor, pages = [], None, 0
    while True:
        page = api.get(
            f"/accounts/{account.id}/statements", {"limit": 4} | ({"cursor": cursor} if cursor else {})
        ).json()
        sequences += [line["sequence"] for line in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert sequences == list(range(1, 11))
    assert pages == 3


def test_a_statement_can_be_limited_to_a_time_range(api, make_account, make_transfer, sync_projections):
    account, other = make_account(), make_account()
    make_transfer(other, account, 1)
    after_first = timezone.now()
    make_transfer(other, account, 2)
    after_second = timezone.now()
    make_transfer(other, account, 3)
    sync_projections()

    def sequences(**params):
        return [line["sequence"] for line in lines(api, account, **params)]

    assert sequences(**{"from": after_first.isoformat()}) == [2, 3]
    assert sequences(to=after_first.isoformat()) == [1]
    assert sequences(**{"from": after_first.isoformat(), "to": after_second.isoformat()}) == [2]


def test_the_statement_of_an_unknown_account_is_a_404(api, problem):
    body = problem(api.get(f"/accounts/{MISSING_ID}/statements"), 404, "account_not_found")

    assert MISSING_ID in body["detail"]


def test_a_malformed_account_id_is_a_404_that_says_why(api, problem):
    body = problem(api.get("/accounts/not-an-id/statements"), 404, "account_not_found")

    assert "not a valid account id" in body["detail"]


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.django_db  # refused before anything could commit
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": _cursor(b'{"after": "01900000-0000-7000-8000-000000000000"}')}, "cursor"),  # an id, not a sequence
        ({"cursor": _cursor(b'{"after": true}')}, "cursor"),
        ({"cursor": _cursor(b'{"before": 3}')}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"from": "last week"}, "from"),
        ({"to": "2026-02-30T00:00:00Z"}, "to"),
        ({"order": "desc"}, "order"),
        ({"consistencytoken": "eyJ9"}, "consistencytoken"),
        ({"limit": [10, 20]}, "limit"),
    ],
)
def test_bad_statement_parameters_are_a_400(api, make_account, problem, params, field):
    account = make_account()

    problem(api.get(f"/accounts/{account.id}/statements", params), 400, "validation_error", field=field)


def test_as_of_adds_the_opening_balance_from_the_ledger(api, make_account, make_transfer, sync_projections):
    account, other = make_account(), make_account()
    make_transfer(other, account, 500)
    make_transfer(account, other, 120)
    make_transfer(other, account, 7)
    sync_projections()
    _, second, third = api.get(f"/accounts/{account.id}/statements").json()["data"]

    response = api.get(f"/accounts/{account.id}/statements", {"asOf": second["createdAt"], "from": third["createdAt"]})

    body = response.json()
    assert (body["accountId"], body["currency"], body["openingBalance"]) == (str(account.id), "USD", 380)
    assert [(line["sequence"], line["amount"], line["balanceAfter"]) for line in body["data"]] == [(3, 7, 387)]
    before_any = api.get(f"/accounts/{account.id}/statements", {"asOf": "2000-01-01T00:00:00Z"}).json()
    assert before_any["openingBalance"] == 0
    assert len(before_any["data"]) == 3


def test_as_of_starts_the_statement_there_so_its_lines_add_up_from_the_opening_balance(
    api, make_account, make_transfer, sync_projections
):
    account, other = make_account(), make_account()
    make_transfer(other, account, 100)
    make_transfer(other, account, 50)
    make_transfer(account, other, 30)
    sync_projections()
    first, *_ = api.get(f"/accounts/{account.id}/statements").json()["data"]

    body = api.get(f"/accounts/{account.id}/statements", {"asOf": first["createdAt"], "limit": 1}).json()
    rest = api.get(
        f"/accounts/{account.id}/statements", {"asOf": first["createdAt"], "cursor": body["nextCursor"]}
    ).json()

    lines = body["data"] + rest["data"]
    assert body["openingBalance"] == 100
    assert [(line["sequence"], line["amount"]) for line in lines] == [(2, 50), (3, -30)]
    assert body["openingBalance"] + sum(line["amount"] for line in lines) == lines[-1]["balanceAfter"] == 120
    assert rest["nextCursor"] is None


def test_without_as_of_a_statement_has_no_opening_balance(api, make_account):
    account = make_account()

    assert "openingBalance" not in api.get(f"/accounts/{account.id}/statements").json()


@pytest.mark.django_db
def test_an_invalid_as_of_on_a_statement_is_a_400_naming_it(api, make_account, problem):
    account = make_account()

    response = api.get(f"/accounts/{account.id}/statements", {"asOf": "2026-11-23"})

    problem(response, 400, "validation_error", field="asOf")


def test_a_statement_page_is_one_account_query_and_one_read_model_query(
    api, make_account, make_transfer, sync_projections, django_assert_num_queries
):
    account, other = make_account(), make_account()
    start = timezone.now()
    for amount in (5, 6, 7):
        make_transfer(other, account, amount)
    sync_projections()
    params = {"limit": 2, "from": start.isoformat(), "to": timezone.now().isoformat()}

    with django_assert_num_queries(1, using="default"), django_assert_num_queries(1, using="read"):
        response = api.get(f"/accounts/{account.id}/statements", params)
    assert [line["amount"] for line in response.json()["data"]] == [5, 6]

    # The opening balance is one more, from the ledger.
    with django_assert_num_queries(2, using="default"), django_assert_num_queries(1, using="read"):
        response = api.get(f"/accounts/{account.id}/statements", {**params, "asOf": start.isoformat()})
    assert response.json()["openingBalance"] == 0


@pytest.mark.parametrize("description", [None, "Top-up \u00e9 \u2028"])
def test_a_statement_line_is_what_its_documented_serializer_writes(description):
    """The view builds each line itself (it is cheaper); the schema comes from the serializer."""
    line = StatementLine(
        entry_id=uuid4(),
        transfer_id=uuid4(),
        sequence=7,
        amount=-300,
        balance_after=-120,
        counterparty_id=uuid4(),
        description=description,
        created_at=datetime(2026, 11, 30, 21, 0, 0, tzinfo=UTC),
    )
    renderer = JSONRenderer()

    assert renderer.render(_statement_line_document(line)) == renderer.render(StatementLineSerializer(line).data)
