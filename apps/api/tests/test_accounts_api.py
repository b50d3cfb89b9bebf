"""POST/GET /accounts, GET/PATCH /accounts/{id} and GET/POST /currencies over HTTP."""

from __future__ import annotations

import base64
import json
from uuid import UUID

import pytest
from django.conf import settings

from apps.accounts.models import Account, AccountStatus

pytestmark = pytest.mark.django_db

MISSING_ID = "01900000-0000-7000-8000-000000000000"
INT64_MAX = 2**63 - 1


def post_account(api, body, **extra):
    return api.post("/accounts", body, format="json", **extra)


def post_raw(api, raw: str | bytes):
    return api.generic("POST", "/accounts", raw, content_type="application/json")


def cursor_for(position) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")


# --- opening accounts ---------------------------------------------------------------------------


def test_open_an_account_with_defaults(api):
    response = post_account(api, {"currency": "USD"})

    assert response.status_code == 201
    body = response.json()
    assert UUID(body["accountId"])
    assert body == {
        "accountId": body["accountId"],
        "currency": "USD",
        "name": None,
        "externalRef": None,
        "status": "active",
        "overdraftLimit": None,
        "pendingDebits": 0,
        "pendingCredits": 0,
        "metadata": {},
        "createdAt": body["createdAt"],
        "updatedAt": body["updatedAt"],
    }
    account = Account.objects.get(id=body["accountId"])
    assert (account.balance, account.overdraft_limit) == (0, None)


def test_open_an_account_with_every_field_and_read_it_back(api):
    body = {
        "currency": "CREDITS",
        "name": "Acme prepaid",
        "externalRef": "cus_123",
        "overdraftLimit": 0,
        "metadata": {"plan": "pro", "seats": 5},
    }

    created = post_account(api, body)
    fetched = api.get(f"/accounts/{created.json()['accountId']}")

    assert created.status_code == 201
    assert fetched.status_code == 200
    assert fetched.json() == created.json()
    assert {key: created.json()[key] for key in body} == body


def test_a_new_account_gets_the_deployments_default_overdraft_limit_unless_it_gives_one(api, settings):
    assert post_account(api, {"currency": "USD"}).json()["overdraftLimit"] is None  # unlimited, as the seed

    settings.LEDGER = {**settings.LEDGER, "DEFAULT_OVERDRAFT_LIMIT": 0}
    assert post_account(api, {"currency": "USD"}).json()["overdraftLimit"] == 0
    assert post_account(api, {"currency": "USD", "overdraftLimit": None}).json()["overdraftLimit"] is None
    assert post_account(api, {"currency": "USD", "overdraftLimit": 500}).json()["overdraftLimit"] == 500


@pytest.mark.parametrize("limit", [0, 1, INT64_MAX, None])
def test_any_overdraft_limit_from_zero_to_2_63_minus_1_or_null_is_accepted(api, limit):
    response = post_account(api, {"currency": "USD", "overdraftLimit": limit})

    assert response.status_code == 201
    assert response.json()["overdraftLimit"] == limit


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "currency"),
        ({"currency": None}, "currency"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"currency": "USD", "overdraftlimit": 0}, "overdraftlimit"),
        ({"currency": "USD", "balance": 100}, "balance"),
        ({"currency": "USD", "overdraftLimit": -1}, "overdraftLimit"),
        ({"currency": "USD", "overdraftLimit": 1.5}, "overdraftLimit"),
        ({"currency": "USD", "overdraftLimit": "10"}, "overdraftLimit"),
        ({"currency": "USD", "overdraftLimit": True}, "overdraftLimit"),
        ({"currency": "USD", "overdraftLimit": 2**63}, "overdraftLimit"),
        ({"currency": "USD", "name": "x" * 201}, "name"),
        ({"currency": "USD", "externalRef": ["cus_1"]}, "externalRef"),
        ({"currency": "USD", "externalRef": 123}, "externalRef"),
        ({"currency": "USD", "name": True}, "name"),
        ({"currency": "USD", "name": "Acme\x00"}, "name"),
        ({"currency": "USD", "name": "Acme\nInc"}, "name"),
        ({"currency": "USD", "externalRef": "cus_\x1b[31m1"}, "externalRef"),
        ({"currency": "USD", "externalRef": "cus_1\x85"}, "externalRef"),
        ({"currency": "USD", "metadata": ["a"]}, "metadata"),
        ({"currency": "USD", "metadata": "plan=pro"}, "metadata"),
        ({"currency": "USD", "metadata": {"blob": "x" * 4096}}, "metadata"),
        ({"currency": "USD", "metadata": {"n": 2**64}}, "metadata"),
    ],
)
def test_invalid_fields_are_named_and_nothing_is_created(api, problem, ledger_state, body, field):
    before = ledger_state()

    response = post_account(api, body)

    problem(response, 400, "validation_error", field=field)
    assert ledger_state() == before


def test_a_lowercase_currency_is_explained(api, problem):
    body = problem(post_account(api, {"currency": "usd"}), 400, "validation_error", field="currency")

    assert "uppercase" in body["errors"][0]["message"]


def test_metadata_nested_too_deep_to_store_is_invalid(api, problem):
    nested: dict = {}
    for _ in range(300):
        nested = {"n": nested}

    problem(post_account(api, {"currency": "USD", "metadata": nested}), 400, "validation_error", field="metadata")


@pytest.mark.parametrize(
    "metadata",
    [
        '{"n": 100000000000000000000}',
        '{"n": 1e400}',
        '{"n": [-1e400]}',
        '{"s": "a\\u0000b"}',
        '{"a\\u0000b": 1}',
        '{"s": "\\ud800"}',
    ],
)
def test_metadata_postgresql_cannot_store_is_a_400(api, problem, ledger_state, metadata):
    before = ledger_state()

    response = post_raw(api, '{"currency": "USD", "metadata": ' + metadata + "}")

    problem(response, 400, "validation_error", field="metadata")
    assert ledger_state() == before


def test_metadata_up_to_the_limit_is_accepted(api):
    limit = settings.LEDGER["METADATA_MAX_BYTES"]
    metadata = {"blob": "x" * (limit - len('{"blob":""}'))}

    response = post_account(api, {"currency": "USD", "metadata": metadata})

    assert response.status_code == 201
    assert response.json()["metadata"] == metadata


def test_an_unknown_currency_is_a_400_that_points_at_the_currency(api, problem, ledger_state):
    before = ledger_state()

    body = problem(post_account(api, {"currency": "XYZ"}), 400, "unknown_currency", field="currency")

    assert "XYZ" in body["detail"]
    assert ledger_state() == before


@pytest.mark.parametrize("raw", ["{", '{"currency": "USD",}', "currency=USD", "NaN", '{"currency": "USD"} x'])
def test_malformed_json_is_a_400(api, problem, ledger_state, raw):
    before = ledger_state()

    problem(post_raw(api, raw), 400, "malformed_request")

    assert ledger_state() == before


def test_json_nested_deeper_than_the_parser_handles_is_a_400(api, problem):
    raw = '{"currency": "USD", "metadata": {"x": ' + "[" * 5000 + "]" * 5000 + "}}"

    problem(post_raw(api, raw), 400, "malformed_request")


@pytest.mark.parametrize(
    ("raw", "duplicate"),
    [
        ('{"currency": "USD", "currency": "EUR"}', "currency"),
        ('{"currency": "USD", "overdraftLimit": 0, "overdraftLimit": null}', "overdraftLimit"),
        ('{"currency": "USD", "metadata": {"plan": {"seats": 5, "seats": 50}}}', "seats"),
        ('{"currency": "USD", "metadata": {"items": [{"sku": "a"}, {"sku": "a", "sku": "b"}]}}', "sku"),
    ],
)
def test_a_key_given_twice_in_any_json_object_is_a_malformed_request(api, problem, ledger_state, raw, duplicate):
    before = ledger_state()

    body = problem(post_raw(api, raw), 400, "malformed_request")

    assert repr(duplicate) in body["detail"]
    assert ledger_state() == before


def test_the_same_key_in_different_objects_is_not_a_duplicate(api):
    raw = '{"currency": "USD", "name": "Acme", "metadata": {"name": "billing", "contact": {"name": "Ada"}}}'

    response = post_raw(api, raw)

    assert response.status_code == 201
    assert response.json()["metadata"] == {"name": "billing", "contact": {"name": "Ada"}}


@pytest.mark.parametrize("raw", ["[]", '[{"currency": "USD"}]', '"USD"', "42", "null", ""])
def test_a_body_that_is_not_a_json_object_is_a_400(api, problem, ledger_state, raw):
    before = ledger_state()

    body = problem(post_raw(api, raw), 400, "validation_error")

    assert body["errors"][0]["field"] in {"body", "currency"}
    assert ledger_state() == before


def test_a_body_over_the_upload_limit_is_a_413(api, problem, ledger_state):
    before = ledger_state()
    raw = json.dumps({"currency": "USD", "name": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})

    problem(post_raw(api, raw), 413, "request_too_large")

    assert ledger_state() == before


def test_a_body_just_under_the_upload_limit_is_parsed(api, problem):
    raw = json.dumps({"currency": "USD", "name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 100)})
    assert len(raw) <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    problem(post_raw(api, raw), 400, "validation_error", field="name")  # too long a name, not too big a body


def test_a_non_json_content_type_is_a_415(api, problem):
    response = api.generic("POST", "/accounts", "currency=USD", content_type="application/x-www-form-urlencoded")

    problem(response, 415, "unsupported_media_type")


# --- reading accounts ---------------------------------------------------------------------------


def test_an_unknown_account_is_a_404(api, problem):
    body = problem(api.get(f"/accounts/{MISSING_ID}"), 404, "account_not_found")

    assert MISSING_ID in body["detail"]


@pytest.mark.parametrize("raw_id", ["abc", "123", "01900000-0000-7000-8000-00000000000g", "%20"])
def test_a_malformed_account_id_is_a_404_that_says_why(api, problem, raw_id):
    body = problem(api.get(f"/accounts/{raw_id}"), 404, "account_not_found")

    assert "not a valid account id" in body["detail"]


def test_accounts_are_listed_newest_first_and_a_cursor_walks_each_exactly_once(api, make_account):
    created = [str(make_account().id) for _ in range(7)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = api.get("/accounts", params)
        assert response.status_code == 200
        page = response.json()
        seen += [account["accountId"] for account in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert seen == created[::-1]
    assert pages == 3


def test_an_exactly_full_last_page_has_no_next_cursor(api, make_account):
    for _ in range(4):
        make_account()

    first = api.get("/accounts", {"limit": 2}).json()
    second = api.get("/accounts", {"limit": 2, "cursor": first["nextCursor"]}).json()

    assert len(second["data"]) == 2
    assert second["nextCursor"] is None


def test_the_default_page_holds_fifty_accounts(api, make_account):
    for _ in range(51):
        make_account()

    page = api.get("/accounts").json()

    assert len(page["data"]) == 50
    assert page["nextCursor"] is not None


def test_accounts_can_be_filtered_by_currency_status_and_external_ref(api, make_account):
    usd, eur, frozen, tagged = (
        make_account("USD"),
        make_account("EUR"),
        make_account("USD"),
        make_account("USD", external_ref="cus_9"),
    )
    Account.objects.filter(id=frozen.id).update(status=AccountStatus.FROZEN)

    def ids(**params):
        response = api.get("/accounts", params)
        assert response.status_code == 200
        return {account["accountId"] for account in response.json()["data"]}

    assert ids(currency="EUR") == {str(eur.id)}
    assert ids(currency="USD") == {str(usd.id), str(frozen.id), str(tagged.id)}
    assert ids(status="frozen") == {str(frozen.id)}
    assert ids(status="active", currency="USD") == {str(usd.id), str(tagged.id)}
    assert ids(externalRef="cus_9") == {str(tagged.id)}
    assert ids(externalRef="cus_none") == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": cursor_for(5)}, "cursor"),
        ({"cursor": cursor_for("not-a-uuid")}, "cursor"),
        ({"cursor": cursor_for(None)}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"[1, 2]").decode()}, "cursor"),
        ({"status": "deleted"}, "status"),
        ({"currency": "usd"}, "currency"),
        ({"sort": "name"}, "sort"),
        ({"externalRef": "cus_\x001"}, "externalRef"),
        ({"currency": ["USD", "EUR"]}, "currency"),
        ({"limit": ["5", "500"]}, "limit"),
    ],
)
def test_bad_list_parameters_are_a_400(api, problem, params, field):
    problem(api.get("/accounts", params), 400, "validation_error", field=field)


@pytest.mark.parametrize("path", ["/currencies", f"/accounts/{MISSING_ID}"])
def test_reads_without_parameters_refuse_unknown_ones(api, problem, path):
    body = problem(api.get(path, {"format": "json"}), 400, "validation_error", field="format")

    assert body["errors"] == [{"field": "format", "message": "Unknown field."}]


def test_the_largest_page_is_accepted(api, make_account):
    make_account()

    assert api.get("/accounts", {"limit": 500}).status_code == 200


# --- currencies --------------------------------------------------------------------------------


def test_the_seeded_currencies_are_listed_in_code_order(api):
    response = api.get("/currencies")

    assert response.status_code == 200
    assert response.json()["nextCursor"] is None
    currencies = response.json()["data"]
    codes = [currency["code"] for currency in currencies]
    assert codes == sorted(codes)
    by_code = {currency["code"]: currency for currency in currencies}
    assert by_code["USD"] == {"code": "USD", "scale": 2, "name": "US Dollar"}
    assert by_code["JPY"]["scale"] == 0
    assert "CREDITS" in by_code


@pytest.mark.parametrize("position", ["\u0000", "usd", "", "A" * 17, "US D"])
def test_a_currency_cursor_that_is_no_code_is_a_400(api, problem, position):
    cursor = base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")

    body = problem(api.get("/currencies", {"cursor": cursor}), 400, "validation_error")

    assert body["errors"][0]["field"] == "cursor"


def test_a_registered_credit_unit_can_hold_accounts(api):
    created = api.post("/currencies", {"code": "GPU_HOURS", "scale": 3, "name": "GPU hours"}, format="json")
    account = post_account(api, {"currency": "GPU_HOURS"})

    assert created.status_code == 201
    assert created.json() == {"code": "GPU_HOURS", "scale": 3, "name": "GPU hours"}
    assert "GPU_HOURS" in [currency["code"] for currency in api.get("/currencies").json()["data"]]
    assert account.status_code == 201


def test_registering_an_existing_currency_is_a_409(api, problem):
    body = problem(
        api.post("/currencies", {"code": "USD", "scale": 0, "name": "Other"}, format="json"),
        409,
        "conflict",
        field="code",
    )

    assert "USD" in body["detail"]
    assert api.get("/currencies").json()["data"][0]  # still listable
    assert {c["code"]: c["scale"] for c in api.get("/currencies").json()["data"]}["USD"] == 2


def test_currencies_are_paged_like_the_other_lists(api, problem):
    for index in range(3):
        assert (
            api.post("/currencies", {"code": f"ZZ_{index}", "scale": 0, "name": "Z"}, format="json").status_code == 201
        )
    every = [currency["code"] for currency in api.get("/currencies", {"limit": 500}).json()["data"]]

    seen, cursor = [], None
    while True:
        page = api.get("/currencies", {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["data"]) <= 2
        seen += [currency["code"] for currency in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == every
    assert every[-3:] == ["ZZ_0", "ZZ_1", "ZZ_2"]
    problem(api.get("/currencies", {"cursor": "nonsense"}), 400, "validation_error", field="cursor")
    problem(api.get("/currencies", {"limit": 501}), 400, "validation_error", field="limit")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "gpu", "scale": 0, "name": "GPU"}, "code"),
        ({"code": "G", "scale": 0, "name": "GPU"}, "code"),
        ({"code": "GPU", "scale": 19, "name": "GPU"}, "scale"),
        ({"code": "GPU", "scale": -1, "name": "GPU"}, "scale"),
        ({"code": "GPU", "scale": 0}, "name"),
        ({"code": "GPU", "scale": 0, "name": "GPU", "symbol": "G"}, "symbol"),
        ({"code": "GPU", "scale": 0, "name": 0}, "name"),
        ({"code": "GPU", "scale": 0, "name": "GPU\x00"}, "name"),
    ],
)
def test_invalid_currencies_are_a_400(api, problem, body, field):
    problem(api.post("/currencies", body, format="json"), 400, "validation_error", field=field)

    assert "GPU" not in [currency["code"] for currency in api.get("/currencies").json()["data"]]


# --- PATCH /accounts/{id} --------------------------------------------------------------------------


def patch_account(api, account_id, body):
    return api.patch(f"/accounts/{account_id}", body, format="json")


def test_a_patch_answers_the_account_as_get_shows_it(api, make_account):
    account = make_account(name="Acme", overdraft_limit=0)

    response = patch_account(
        api, account.id, {"name": "Acme Inc", "metadata": {"plan": "pro"}, "overdraftLimit": 500, "status": "frozen"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body == api.get(f"/accounts/{account.id}").json()
    assert (body["name"], body["metadata"], body["overdraftLimit"], body["status"]) == (
        "Acme Inc",
        {"plan": "pro"},
        500,
        "frozen",
    )


def test_the_same_patch_twice_gives_the_same_answer(api, make_account):
    account = make_account()

    first = patch_account(api, account.id, {"status": "frozen", "reason": "review"})
    second = patch_account(api, account.id, {"status": "frozen", "reason": "review"})

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json() == second.json()


def test_null_name_and_overdraft_limit_are_values(api, make_account):
    account = make_account(name="Acme", overdraft_limit=0)

    body = patch_account(api, account.id, {"name": None, "overdraftLimit": None}).json()

    assert (body["name"], body["overdraftLimit"]) == (None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"reason": "nothing else"}, "body"),
        ({"status": "deleted"}, "status"),
        ({"status": None}, "status"),
        ({"overdraftLimit": -1}, "overdraftLimit"),
        ({"overdraftLimit": "10"}, "overdraftLimit"),
        ({"metadata": None}, "metadata"),
        ({"metadata": ["a"]}, "metadata"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"currency": "EUR"}, "currency"),
        ({"externalRef": "cus_2"}, "externalRef"),
        ({"balance": 0}, "balance"),
        ({"status": "frozen", "reason": "x" * 501}, "reason"),
    ],
)
def test_invalid_patches_are_named_and_change_nothing(api, make_account, problem, ledger_state, body, field):
    account = make_account(name="Acme")
    before = ledger_state()

    problem(patch_account(api, account.id, body), 400, "validation_error", field=field)

    assert ledger_state() == before
    assert Account.objects.get(id=account.id).name == "Acme"


def test_patching_an_unknown_or_malformed_account_is_a_404(api, problem):
    problem(patch_account(api, MISSING_ID, {"name": "x"}), 404, "account_not_found")
    problem(patch_account(api, "nope", {"name": "x"}), 404, "account_not_found")


def test_a_patch_takes_no_query_parameters(api, make_account, problem):
    account = make_account()

    response = api.patch(f"/accounts/{account.id}?status=frozen", {"name": "x"}, format="json")

    problem(response, 400, "validation_error", field="status")


def test_closing_an_account_with_a_balance_is_a_422(api, make_account, make_transfer, problem):
    account, other = make_account(), make_account()
    make_transfer(other, account, 70)
    patch_account(api, account.id, {"status": "frozen"})

    body = problem(patch_account(api, account.id, {"status": "closed"}), 422, "account_not_empty", field="status")

    assert body["balance"] == 70


def test_an_empty_active_account_closes_at_once(api, make_account):
    account = make_account()

    answer = patch_account(api, account.id, {"status": "closed"})

    assert answer.status_code == 200, answer.json()
    assert answer.json()["status"] == "closed"
    assert api.get(f"/accounts/{account.id}").json()["status"] == "closed"


def test_a_closed_account_refuses_every_change(api, make_account, problem):
    account = make_account()
    patch_account(api, account.id, {"status": "frozen"})
    assert patch_account(api, account.id, {"status": "closed"}).status_code == 200

    problem(patch_account(api, account.id, {"name": "reopened"}), 422, "account_closed")
    problem(patch_account(api, account.id, {"status": "active"}), 422, "account_closed")
    assert patch_account(api, account.id, {"status": "closed"}).status_code == 200  # the same request again


def test_an_overdraft_limit_below_the_balance_is_a_422(api, make_account, make_transfer, problem):
    account, other = make_account(), make_account()
    make_transfer(account, other, 250)

    response = patch_account(api, account.id, {"overdraftLimit": 100})

    body = problem(response, 422, "overdraft_limit_below_balance", field="overdraftLimit")

    assert (body["balance"], body["minimumOverdraftLimit"]) == (-250, 250)
    assert patch_account(api, account.id, {"overdraftLimit": 250}).json()["overdraftLimit"] == 250


def test_a_frozen_account_refuses_transfers_until_unfrozen(api, make_account, problem):
    account, other = make_account(), make_account()
    patch_account(api, account.id, {"status": "frozen"})
    transfer = {"from": str(other.id), "to": str(account.id), "amount": 5, "currency": "USD"}

    refused = api.post("/transfers", {**transfer, "idempotencyKey": "frozen-1"}, format="json")
    patch_account(api, account.id, {"status": "active"})
    posted = api.post("/transfers", {**transfer, "idempotencyKey": "frozen-2"}, format="json")

    assert problem(refused, 422, "account_not_active", field="to")["accountStatus"] == "frozen"
    assert posted.status_code == 201
