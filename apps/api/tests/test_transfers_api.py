"""POST/GET /transfers and GET /transfers/{id} over HTTP: every way a transfer is refused,
idempotency with Stripe's semantics, and pagination of the list.

Transactional: each posted transfer really commits, so PostgreSQL's deferred checks run.
"""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from django.conf import settings
from django.utils import timezone

from apps.accounts.models import Account, AccountStatus
from apps.ledger.models import IdempotencyRecord, Transfer

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])
# For requests refused before anything could commit: no need for the slower transactional test.
refused_before_commit = pytest.mark.django_db

MISSING_ID = "01900000-0000-7000-8000-000000000000"
INT64_MAX = 2**63 - 1

TRANSFER_FIELDS = {
    "transferId",
    "from",
    "to",
    "amount",
    "currency",
    "status",
    "idempotencyKey",
    "metadata",
    "createdAt",
    "entries",
}


def post_transfer(api, body, **headers):
    return api.post("/transfers", body, format="json", **headers)


@pytest.fixture
def source(make_account) -> Account:
    return make_account()


@pytest.fixture
def destination(make_account) -> Account:
    return make_account()


@pytest.fixture
def body(source, destination) -> dict:
    return {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": 1234,
        "currency": "USD",
        "idempotencyKey": "pay-1",
    }


def balances(*accounts: Account) -> tuple[int, ...]:
    return tuple(Account.objects.get(id=account.id).balance for account in accounts)


def fund(make_transfer, make_account, account: Account, amount: int) -> None:
    make_transfer(make_account(account.currency_id), account, amount)


# --- posting ------------------------------------------------------------------------------------


def test_a_posted_transfer_answers_201_with_its_two_entries(api, body, source, destination):
    response = post_transfer(api, body | {"metadata": {"invoice": "in_1"}})

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    posted = response.json()
    assert set(posted) >= TRANSFER_FIELDS
    assert UUID(posted["transferId"])
    assert {
        key: posted[key] for key in ("from", "to", "amount", "currency", "status", "idempotencyKey", "metadata")
    } == {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": 1234,
        "currency": "USD",
        "status": "posted",
        "idempotencyKey": "pay-1",
        "metadata": {"invoice": "in_1"},
    }
    assert [
        (entry["accountId"], entry["amount"], entry["sequence"], entry["balanceAfter"]) for entry in posted["entries"]
    ] == [
        (str(source.id), -1234, 1, -1234),
        (str(destination.id), 1234, 1, 1234),
    ]
    assert balances(source, destination) == (-1234, 1234)


def test_a_transfer_reads_back_as_it_was_posted(api, body):
    posted = post_transfer(api, body).json()

    fetched = api.get(f"/transfers/{posted['transferId']}")

    assert fetched.status_code == 200
    assert {key: fetched.json()[key] for key in TRANSFER_FIELDS} == {key: posted[key] for key in TRANSFER_FIELDS}


def test_the_largest_amount_2_63_minus_1_is_accepted_and_the_next_unit_is_out_of_range(
    api, body, make_account, problem, ledger_state, destination
):
    other = make_account()
    response = post_transfer(api, body | {"amount": INT64_MAX})

    assert response.status_code == 201
    assert response.json()["amount"] == INT64_MAX
    before = ledger_state()
    one_more = body | {"from": str(other.id), "amount": 1, "idempotencyKey": "pay-2"}
    problem(post_transfer(api, one_more), 422, "balance_out_of_range", field="amount")
    assert ledger_state() == before
    assert balances(destination) == (INT64_MAX,)


# --- 400: the request itself is wrong -----------------------------------------------------------


@refused_before_commit
@pytest.mark.parametrize("amount", ["1234", "12.34", 12.5, 12.0, True, False, None, [1234], {"value": 1234}])
def test_an_amount_that_is_not_a_json_integer_is_a_400(api, body, problem, ledger_state, amount):
    before = ledger_state()

    problem(post_transfer(api, body | {"amount": amount}), 400, "validation_error", field="amount")

    assert ledger_state() == before


@refused_before_commit
@pytest.mark.parametrize("amount", [0, -1, -1234, 2**63, 2**64, 10**30])
def test_an_amount_outside_1_to_2_63_minus_1_is_a_400(api, body, problem, ledger_state, amount):
    before = ledger_state()

    problem(post_transfer(api, body | {"amount": amount}), 400, "validation_error", field="amount")

    assert ledger_state() == before


@refused_before_commit
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": None}, "currency"),
        ({"from": "not-a-uuid"}, "from"),
        ({"to": "01900000-0000-7000-8000"}, "to"),
        ({"to": 42}, "to"),
        ({"to": True}, "to"),
        ({"from": None}, "from"),
        ({"overdraftlimit": 0}, "overdraftlimit"),
        ({"amt": 5}, "amt"),
        ({"metadata": ["a"]}, "metadata"),
        ({"metadata": {"n": 2**64}}, "metadata"),
        ({"metadata": {"note": "a\x00b"}}, "metadata"),
        ({"idempotencyKey": "k" * 256}, "idempotencyKey"),
        ({"idempotencyKey": ""}, "idempotencyKey"),
    ],
)
def test_invalid_fields_are_a_400_that_names_them(api, body, problem, ledger_state, idempotency_records, change, field):
    before = ledger_state()

    problem(post_transfer(api, body | change), 400, "validation_error", field=field)

    assert ledger_state() == before
    assert idempotency_records() == 0


@refused_before_commit
@pytest.mark.parametrize("missing", ["from", "to", "amount", "currency"])
def test_each_required_field_is_required(api, body, problem, missing):
    del body[missing]

    problem(post_transfer(api, body), 400, "validation_error", field=missing)


@refused_before_commit
def test_metadata_over_the_limit_is_a_400(api, body, problem, ledger_state):
    before = ledger_state()
    metadata = {"blob": "x" * settings.LEDGER["METADATA_MAX_BYTES"]}

    response = problem(post_transfer(api, body | {"metadata": metadata}), 400, "validation_error", field="metadata")

    assert str(settings.LEDGER["METADATA_MAX_BYTES"]) in response["errors"][0]["message"]
    assert ledger_state() == before


@refused_before_commit
def test_a_body_over_the_upload_limit_is_a_413(api, body, problem, ledger_state):
    before = ledger_state()
    raw = json.dumps(body | {"metadata": {"blob": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}})

    body = problem(api.generic("POST", "/transfers", raw, content_type="application/json"), 413, "request_too_large")

    assert body["detail"] == (
        f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes this endpoint accepts "
        "(MAX_REQUEST_BODY_BYTES)."
    )
    assert ledger_state() == before


@refused_before_commit
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"amount": 1', "malformed_request"),
        ("[]", "validation_error"),
        ("1234", "validation_error"),
        ('"transfer"', "validation_error"),
        ("null", "validation_error"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(api, problem, ledger_state, raw, code):
    before = ledger_state()

    problem(api.generic("POST", "/transfers", raw, content_type="application/json"), 400, code)

    assert ledger_state() == before


@refused_before_commit
@pytest.mark.parametrize(
    ("raw", "duplicate"),
    [
        (
            (
                '{"from": "%(from)s", "to": "%(to)s", "amount": 5, "amount": 5000, "currency": "USD", '
                '"idempotencyKey": "dup"}'
            ),
            "amount",
        ),
        (
            (
                '{"from": "%(from)s", "to": "%(to)s", "amount": 5, "currency": "USD", "idempotencyKey": "dup",'
                ' "metadata": {"order": "A-1", "order": "A-2"}}'
            ),
            "order",
        ),
    ],
)
def test_a_key_given_twice_in_any_json_object_is_a_malformed_request(
    api, body, problem, ledger_state, idempotency_records, raw, duplicate
):
    before = ledger_state()

    response = problem(
        api.generic("POST", "/transfers", raw % body, content_type="application/json"), 400, "malformed_request"
    )

    assert repr(duplicate) in response["detail"]
    assert ledger_state() == before
    assert idempotency_records() == 0


@refused_before_commit
def test_an_unknown_currency_is_a_400(api, body, problem, ledger_state, idempotency_records):
    before = ledger_state()

    problem(post_transfer(api, body | {"currency": "XYZ"}), 400, "unknown_currency", field="currency")

    assert ledger_state() == before
    assert idempotency_records() == 0


# --- 404 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["from", "to"])
def test_an_unknown_account_is_a_404_that_names_the_side(api, body, problem, ledger_state, side):
    before = ledger_state()

    response = problem(post_transfer(api, body | {side: MISSING_ID}), 404, "account_not_found", field=side)

    assert MISSING_ID in response["detail"]
    assert ledger_state() == before


@refused_before_commit
def test_an_unknown_transfer_is_a_404(api, problem):
    response = problem(api.get(f"/transfers/{MISSING_ID}"), 404, "transfer_not_found")

    assert MISSING_ID in response["detail"]


@refused_before_commit
@pytest.mark.parametrize("raw_id", ["abc", "1", "01900000-0000-7000-8000-00000000000z"])
def test_a_malformed_transfer_id_is_a_404_that_says_why(api, problem, raw_id):
    response = problem(api.get(f"/transfers/{raw_id}"), 404, "transfer_not_found")

    assert "not a valid transfer id" in response["detail"]


# --- 422: business rules ------------------------------------------------------------------------


def test_insufficient_funds_is_a_422_with_the_available_amount(
    api, body, make_account, make_transfer, problem, ledger_state
):
    wallet = make_account(overdraft_limit=100)
    fund(make_transfer, make_account, wallet, 1000)
    before = ledger_state()

    response = problem(
        post_transfer(api, body | {"from": str(wallet.id), "amount": 1101}), 422, "insufficient_funds", field="amount"
    )

    assert (response["available"], response["requested"]) == (1100, 1101)
    assert ledger_state() == before
    assert (
        post_transfer(api, body | {"from": str(wallet.id), "amount": 1100, "idempotencyKey": "pay-2"}).status_code
        == 201
    )
    assert balances(wallet) == (-100,)


@pytest.mark.parametrize("side", ["from", "to"])
def test_a_currency_mismatch_is_a_422(api, body, make_account, problem, ledger_state, side):
    euros = make_account("EUR")
    before = ledger_state()

    response = problem(post_transfer(api, body | {side: str(euros.id)}), 422, "currency_mismatch", field=side)

    assert response["accountCurrency"] == "EUR"
    assert ledger_state() == before


@pytest.mark.parametrize("status", [AccountStatus.FROZEN, AccountStatus.CLOSED])
@pytest.mark.parametrize("side", ["from", "to"])
def test_a_frozen_or_closed_account_is_a_422(api, body, problem, ledger_state, status, side):
    Account.objects.filter(id=body[side]).update(status=status)
    before = ledger_state()

    response = problem(post_transfer(api, body), 422, "account_not_active", field=side)

    assert response["accountStatus"] == status
    assert ledger_state() == before


def test_a_transfer_to_the_same_account_is_a_422(api, body, problem, ledger_state):
    before = ledger_state()

    problem(post_transfer(api, body | {"to": body["from"]}), 422, "same_account", field="to")

    assert ledger_state() == before


# --- idempotency -------------------------------------------------------------------------------


def test_the_same_key_and_body_replays_the_first_answer(api, body, destination):
    first = post_transfer(api, body)
    again = post_transfer(api, dict(reversed(body.items())))  # same request, other key order

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == 1
    assert balances(destination) == (1234,)


def test_a_stored_422_is_replayed_even_after_the_account_was_funded(
    api, body, make_account, make_transfer, problem, source
):
    Account.objects.filter(id=source.id).update(overdraft_limit=0)
    first = post_transfer(api, body)
    problem(first, 422, "insufficient_funds")
    fund(make_transfer, make_account, source, 10_000)

    again = post_transfer(api, body)

    assert again.status_code == 422
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert balances(source) == (10_000,)
    assert post_transfer(api, body | {"idempotencyKey": "pay-2"}).status_code == 201  # a new key goes through


def test_a_stored_404_is_replayed(api, body, problem):
    first = post_transfer(api, body | {"to": MISSING_ID})
    again = post_transfer(api, body | {"to": MISSING_ID})

    problem(first, 404, "account_not_found")
    assert (again.status_code, again.json()) == (404, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("change", [{"amount": 1235}, {"currency": "EUR"}, {"metadata": {"a": 1}}, "swap"])
def test_the_same_key_with_another_body_is_a_409_that_changes_nothing(api, body, problem, ledger_state, change):
    post_transfer(api, body)
    before = ledger_state()
    other = body | {"from": body["to"], "to": body["from"]} if change == "swap" else body | change

    response = problem(post_transfer(api, other), 409, "idempotency_key_reused", field="idempotencyKey")

    assert "pay-1" in response["detail"]
    assert ledger_state() == before
    assert post_transfer(api, body).status_code == 201  # the original request still replays


def test_the_key_may_come_in_the_idempotency_key_header(api, body):
    del body["idempotencyKey"]

    first = post_transfer(api, body, HTTP_IDEMPOTENCY_KEY="hdr-1")
    again = post_transfer(api, body | {"idempotencyKey": "hdr-1"})  # same key, given the other way

    assert first.status_code == again.status_code == 201
    assert first.json()["idempotencyKey"] == "hdr-1"
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == 1


def test_the_same_key_in_header_and_body_is_accepted(api, body):
    assert post_transfer(api, body, HTTP_IDEMPOTENCY_KEY=body["idempotencyKey"]).status_code == 201


@refused_before_commit
@pytest.mark.parametrize(
    ("header", "field"), [("pay-2", "idempotencyKey"), ("k" * 256, "Idempotency-Key"), ("", "Idempotency-Key")]
)
def test_a_header_key_that_differs_or_is_out_of_range_is_a_400(
    api, body, problem, ledger_state, idempotency_records, header, field
):
    before = ledger_state()

    problem(post_transfer(api, body, HTTP_IDEMPOTENCY_KEY=header), 400, "invalid_request", field=field)

    assert ledger_state() == before
    assert idempotency_records() == 0


@refused_before_commit
def test_a_missing_key_is_a_400(api, body, problem, ledger_state):
    del body["idempotencyKey"]
    before = ledger_state()

    problem(post_transfer(api, body), 400, "invalid_request", field="idempotencyKey")

    assert ledger_state() == before


# One rule for the body field and the header: 1-255 printable ASCII characters, spaces only
# between others. Nothing is trimmed, so a key is never silently turned into another one.
INVALID_KEYS = ["pay\x001", "\x00", "pay\n1", "pay\t1", "pay\x7f1", "pay\x851", " pay-1", "pay-1 ", "paiement-é"]


@refused_before_commit
@pytest.mark.parametrize("key", [1234, 12.5, True, None, ["pay-1"], {"key": "pay-1"}, *INVALID_KEYS])
def test_a_body_key_that_is_not_a_printable_ascii_string_is_a_400(
    api, body, problem, ledger_state, idempotency_records, key
):
    before = ledger_state()

    problem(post_transfer(api, body | {"idempotencyKey": key}), 400, "validation_error", field="idempotencyKey")

    assert ledger_state() == before
    assert idempotency_records() == 0


@refused_before_commit
@pytest.mark.parametrize("key", INVALID_KEYS)
def test_a_header_key_is_held_to_the_same_rule_as_the_body_key(
    api, body, problem, ledger_state, idempotency_records, key
):
    del body["idempotencyKey"]
    before = ledger_state()

    response = problem(
        post_transfer(api, body, HTTP_IDEMPOTENCY_KEY=key), 400, "invalid_request", field="Idempotency-Key"
    )

    assert "printable ASCII" in response["detail"]
    assert ledger_state() == before
    assert idempotency_records() == 0


@pytest.mark.parametrize("key", ["k", "order 42 / attempt 1", "~!@#$%^&*()_+{}|:<>?", "k" * 255])
def test_any_printable_ascii_key_works_in_the_header_and_the_body_alike(api, body, key):
    del body["idempotencyKey"]

    first = post_transfer(api, body, HTTP_IDEMPOTENCY_KEY=key)
    again = post_transfer(api, body | {"idempotencyKey": key})

    assert first.status_code == again.status_code == 201
    assert first.json()["idempotencyKey"] == key
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == 1


def test_a_validation_error_is_not_stored_so_the_key_stays_usable(api, body, problem):
    problem(post_transfer(api, body | {"amount": "1234"}), 400, "validation_error")
    problem(post_transfer(api, body | {"currency": "XYZ"}), 400, "unknown_currency")

    response = post_transfer(api, body)

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert IdempotencyRecord.objects.get(key="pay-1").transfer_id == UUID(response.json()["transferId"])


# --- the list -----------------------------------------------------------------------------------


def list_ids(api, **params) -> list[str]:
    response = api.get("/transfers", params)
    assert response.status_code == 200, response.content
    return [transfer["transferId"] for transfer in response.json()["data"]]


def test_transfers_are_listed_newest_first_and_a_cursor_walks_each_exactly_once(
    api, source, destination, make_transfer, sync_projections
):
    posted = [str(make_transfer(source, destination, amount).transfer.id) for amount in range(1, 8)]
    sync_projections()

    seen, cursor, pages = [], None, 0
    while True:
        page = api.get("/transfers", {"limit": 3} | ({"cursor": cursor} if cursor else {})).json()
        seen += [transfer["transferId"] for transfer in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert seen == posted[::-1]
    assert pages == 3


def test_a_listed_transfer_looks_like_the_posted_one(api, body, sync_projections):
    posted = post_transfer(api, body | {"metadata": {"invoice": "in_1"}}).json()
    sync_projections()

    (listed,) = api.get("/transfers").json()["data"]

    assert {key: listed[key] for key in TRANSFER_FIELDS} == {key: posted[key] for key in TRANSFER_FIELDS}


def test_transfers_can_be_filtered_by_account_currency_and_status(api, make_account, make_transfer, sync_projections):
    a, b, c = make_account(), make_account(), make_account()
    euro_1, euro_2 = make_account("EUR"), make_account("EUR")
    a_to_b = str(make_transfer(a, b, 1).transfer.id)
    b_to_c = str(make_transfer(b, c, 1).transfer.id)
    c_to_a = str(make_transfer(c, a, 1).transfer.id)
    euros = str(make_transfer(euro_1, euro_2, 1).transfer.id)
    sync_projections()

    assert list_ids(api, account=str(a.id)) == [c_to_a, a_to_b]
    assert list_ids(api, account=str(b.id)) == [b_to_c, a_to_b]
    assert list_ids(api, currency="EUR") == [euros]
    assert list_ids(api, currency="USD") == [c_to_a, b_to_c, a_to_b]
    assert list_ids(api, status="posted") == [euros, c_to_a, b_to_c, a_to_b]
    assert list_ids(api, account=str(a.id), currency="EUR") == []


def test_transfers_can_be_filtered_by_a_time_range(api, source, destination, make_transfer, sync_projections):
    first = str(make_transfer(source, destination, 1).transfer.id)
    between_1_and_2 = timezone.now()
    second = str(make_transfer(source, destination, 2).transfer.id)
    between_2_and_3 = timezone.now()
    third = str(make_transfer(source, destination, 3).transfer.id)
    sync_projections()

    assert list_ids(api, **{"from": between_1_and_2.isoformat()}) == [third, second]
    assert list_ids(api, to=between_1_and_2.isoformat()) == [first]
    assert list_ids(api, **{"from": between_1_and_2.isoformat(), "to": between_2_and_3.isoformat()}) == [second]
    assert list_ids(api, **{"from": between_2_and_3.isoformat(), "to": between_1_and_2.isoformat()}) == []


@refused_before_commit
def test_listing_the_transfers_of_an_unknown_account_is_a_404(api, problem):
    problem(api.get("/transfers", {"account": MISSING_ID}), 404, "account_not_found")


@refused_before_commit
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"account": "abc"}, "account"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01T00:00:00Z"}, "to"),
        ({"status": "reversed"}, "status"),
        ({"currency": "eur"}, "currency"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "eyJhZnRlciI6IDV9"}, "cursor"),  # {"after": 5}: not a transfer id
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": -1}, "limit"),
        ({"page": 2}, "page"),
        ({"limit": [10, 20]}, "limit"),
        ({"status": ["posted", "posted"]}, "status"),
    ],
)
def test_bad_list_parameters_are_a_400(api, problem, params, field):
    problem(api.get("/transfers", params), 400, "validation_error", field=field)


def test_fetching_a_transfer_refuses_query_parameters(api, body, problem):
    transfer_id = post_transfer(api, body).json()["transferId"]

    refused = problem(
        api.get(f"/transfers/{transfer_id}", {"expand": "entries"}), 400, "validation_error", field="expand"
    )

    assert refused["errors"] == [{"field": "expand", "message": "Unknown field."}]


# --- multi-leg transfers ------------------------------------------------------------------------


@pytest.fixture
def trade(make_account) -> dict[str, Account]:
    """A buyer and a shop, each with a USD and a CREDITS account."""
    return {
        "buyer_usd": make_account("USD"),
        "shop_usd": make_account("USD"),
        "shop_credits": make_account("CREDITS"),
        "buyer_credits": make_account("CREDITS"),
    }


def leg(source: Account, destination: Account, amount: int, currency: str | None = None) -> dict:
    return {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": amount,
        "currency": currency or source.currency_id,
    }


@pytest.fixture
def buy(trade) -> dict:
    """Buy 1,000 CREDITS for 10 USD."""
    return {
        "postings": [
            leg(trade["buyer_usd"], trade["shop_usd"], 1000),
            leg(trade["shop_credits"], trade["buyer_credits"], 1000),
        ],
        "description": "Buy 1,000 CREDITS for 10 USD",
        "idempotencyKey": "buy-1",
    }


def test_postings_in_two_currencies_are_posted_together(api, trade, buy):
    response = post_transfer(api, buy)

    assert response.status_code == 201
    posted = response.json()
    assert {key: posted[key] for key in ("from", "to", "amount", "currency", "status", "description")} == {
        "from": None,
        "to": None,
        "amount": None,
        "currency": None,
        "status": "posted",
        "description": "Buy 1,000 CREDITS for 10 USD",
    }
    assert posted["postings"] == buy["postings"]
    assert [(entry["accountId"], entry["amount"]) for entry in posted["entries"]] == [
        (str(trade["buyer_usd"].id), -1000),
        (str(trade["shop_usd"].id), 1000),
        (str(trade["shop_credits"].id), -1000),
        (str(trade["buyer_credits"].id), 1000),
    ]
    assert balances(*trade.values()) == (-1000, 1000, -1000, 1000)
    assert api.get(f"/transfers/{posted['transferId']}").json() == {
        key: value for key, value in posted.items() if key != "consistencyToken"
    }


def test_the_single_form_also_lists_its_one_posting_and_takes_a_description(api, body, source, destination):
    posted = post_transfer(api, body | {"description": "Rent, March"}).json()

    assert (posted["from"], posted["amount"], posted["description"]) == (str(source.id), 1234, "Rent, March")
    assert posted["postings"] == [leg(source, destination, 1234)]


@refused_before_commit
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"postings": []}, "postings"),
        ({"postings": "x"}, "postings"),
        ({"postings": [{"to": MISSING_ID, "amount": 1, "currency": "USD"}]}, "postings[0].from"),
        ({"postings": [{"from": "nope", "to": MISSING_ID, "amount": 1, "currency": "USD"}]}, "postings[0].from"),
        ({"postings": [{"from": MISSING_ID, "to": MISSING_ID, "amount": 0, "currency": "USD"}]}, "postings[0].amount"),
        (
            {"postings": [{"from": MISSING_ID, "to": MISSING_ID, "amount": 1, "currency": "usd"}]},
            "postings[0].currency",
        ),
        (
            {"postings": [{"from": MISSING_ID, "to": MISSING_ID, "amount": 1, "currency": "USD", "x": 1}]},
            "postings[0].x",
        ),
        ({"postings": [{"from": MISSING_ID, "to": MISSING_ID, "amount": 1, "currency": "USD"}] * 101}, "postings"),
        ({"amount": 5}, "amount"),
        ({"description": "x" * 501}, "description"),
        ({"description": 5}, "description"),
    ],
)
def test_invalid_postings_are_a_400_that_names_the_posting(api, buy, problem, ledger_state, change, field):
    before = ledger_state()

    problem(post_transfer(api, buy | change), 400, "validation_error", field=field)

    assert ledger_state() == before
    assert not IdempotencyRecord.objects.exists()


@refused_before_commit
def test_an_amount_out_of_range_in_one_posting_names_it(api, buy, problem):
    buy["postings"][1]["amount"] = INT64_MAX + 1

    problem(post_transfer(api, buy), 400, "validation_error", field="postings[1].amount")


@refused_before_commit
def test_neither_form_is_a_400(api, problem):
    response = problem(post_transfer(api, {"idempotencyKey": "k"}), 400, "validation_error")

    assert {error["field"] for error in response["errors"]} == {"from", "to", "amount", "currency"}


def test_an_unknown_currency_in_a_posting_is_a_400_that_keeps_the_key(api, buy, problem):
    buy["postings"][1]["currency"] = "NOPE"

    problem(post_transfer(api, buy), 400, "unknown_currency", field="postings[1].currency")

    assert not IdempotencyRecord.objects.exists()


def test_insufficient_funds_names_the_posting_and_moves_nothing(api, trade, buy, make_account, problem):
    wallet = make_account("USD", overdraft_limit=0)
    buy["postings"].append(leg(wallet, trade["shop_usd"], 1))

    response = problem(post_transfer(api, buy), 422, "insufficient_funds", field="postings[2].amount")

    assert (response["available"], response["requested"]) == (0, 1)
    assert balances(*trade.values(), wallet) == (0, 0, 0, 0, 0)
    assert not Transfer.objects.exists()
    replayed = post_transfer(api, buy)
    assert replayed.status_code == 422
    assert replayed.headers["Idempotent-Replayed"] == "true"


def test_a_currency_mismatch_names_the_posting(api, trade, buy, problem):
    buy["postings"][1]["currency"] = "USD"

    problem(post_transfer(api, buy), 422, "currency_mismatch", field="postings[1].from")

    assert balances(*trade.values()) == (0, 0, 0, 0)


def test_a_frozen_account_names_the_posting(api, trade, buy, problem):
    Account.objects.filter(id=trade["buyer_credits"].id).update(status=AccountStatus.FROZEN)

    problem(post_transfer(api, buy), 422, "account_not_active", field="postings[1].to")

    assert balances(*trade.values()) == (0, 0, 0, 0)


def test_multi_leg_replays_and_conflicts(api, buy, problem):
    first = post_transfer(api, buy)
    again = post_transfer(api, buy)

    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    reordered = buy | {"postings": buy["postings"][::-1]}
    problem(post_transfer(api, reordered), 409, "idempotency_key_reused", field="idempotencyKey")
    problem(post_transfer(api, buy | {"description": "other"}), 409, "idempotency_key_reused")
    assert Transfer.objects.count() == 1


def test_a_description_of_500_characters_is_kept(api, body):
    posted = post_transfer(api, body | {"description": "é" * 500})

    assert posted.status_code == 201
    assert posted.json()["description"] == "é" * 500


def test_the_list_finds_a_multi_leg_transfer_by_any_of_its_accounts_and_currencies(
    api, trade, buy, body, sync_projections
):
    posted = post_transfer(api, buy).json()
    post_transfer(api, body)
    sync_projections()

    for account in trade.values():
        listed = api.get("/transfers", {"account": str(account.id)}).json()["data"]
        assert [transfer["transferId"] for transfer in listed] == [posted["transferId"]]
    credits = api.get("/transfers", {"currency": "CREDITS"}).json()["data"]
    assert [transfer["transferId"] for transfer in credits] == [posted["transferId"]]
    (listed,) = credits
    assert {key: listed[key] for key in TRANSFER_FIELDS | {"postings", "description"}} == {
        key: posted[key] for key in TRANSFER_FIELDS | {"postings", "description"}
    }


def test_statement_lines_carry_their_transfer_description(api, trade, buy, sync_projections):
    post_transfer(api, buy)
    sync_projections()

    lines = api.get(f"/accounts/{trade['buyer_credits'].id}/statements").json()["data"]

    assert [(line["amount"], line["description"]) for line in lines] == [(1000, "Buy 1,000 CREDITS for 10 USD")]
