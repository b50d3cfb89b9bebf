"""Real answers match the OpenAPI schema: transfers are rendered by SQL
(ledger_transfer_document), so the schema's serializers only describe them."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft202012Validator

from apps.api.consistency import consistency_token_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


@pytest.fixture(scope="module")
def openapi() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def assert_matches(openapi: dict, path: str, method: str, status: int, body) -> None:
    content = openapi["paths"][path][method]["responses"][str(status)]["content"]
    schema = next(iter(content.values()))["schema"]
    validator = Draft202012Validator({**schema, "components": openapi["components"]})
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, errors
    required = _resolve(openapi, schema).get("required", [])
    assert set(required) <= set(body), f"missing {set(required) - set(body)}"


def _resolve(openapi: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_transfer_answers_match_the_schema(api, openapi, make_account, sync_projections):
    source, destination = make_account(), make_account()
    body = {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": 5,
        "currency": "USD",
        "idempotencyKey": "schema-1",
        "metadata": {"order": "A-1"},
    }

    posted = api.post("/transfers", body, format="json")
    assert_matches(openapi, "/transfers", "post", 201, posted.json())
    replayed = api.post("/transfers", body, format="json")
    assert_matches(openapi, "/transfers", "post", 201, replayed.json())
    fetched = api.get(f"/transfers/{posted.json()['transferId']}")
    assert_matches(openapi, "/transfers/{transfer_id}", "get", 200, fetched.json())
    assert {key: value for key, value in posted.json().items() if key != "consistencyToken"} == fetched.json()
    reverse_path = f"/transfers/{posted.json()['transferId']}/reverse"
    reversal = api.post(reverse_path, {"idempotencyKey": "schema-refund", "amount": 2}, format="json")
    assert_matches(openapi, "/transfers/{transfer_id}/reverse", "post", 201, reversal.json())
    too_much = api.post(reverse_path, {"idempotencyKey": "schema-refund-2", "amount": 4}, format="json")
    assert too_much.status_code == 422
    assert_matches(openapi, "/transfers/{transfer_id}/reverse", "post", 422, too_much.json())
    fetched = api.get(f"/transfers/{posted.json()['transferId']}")
    assert_matches(openapi, "/transfers/{transfer_id}", "get", 200, fetched.json())
    assert fetched.json()["reversedAmount"] == 2

    sync_projections()
    assert_matches(openapi, "/transfers", "get", 200, api.get("/transfers").json())
    assert_matches(
        openapi, "/accounts/{account_id}/balance", "get", 200, api.get(f"/accounts/{destination.id}/balance").json()
    )
    assert_matches(
        openapi,
        "/accounts/{account_id}/statements",
        "get",
        200,
        api.get(f"/accounts/{destination.id}/statements").json(),
    )


def test_problem_answers_match_the_schema(api, openapi, make_account):
    source = make_account(overdraft_limit=0)
    destination = make_account()
    refused = api.post(
        "/transfers",
        {
            "from": str(source.id),
            "to": str(destination.id),
            "amount": 5,
            "currency": "USD",
            "idempotencyKey": "schema-2",
        },
        format="json",
    )
    assert refused.status_code == 422
    assert refused["Content-Type"] == "application/problem+json"
    assert_matches(openapi, "/transfers", "post", 422, refused.json())


def test_batch_answers_match_the_schema(api, openapi, make_account):
    source, destination = make_account(overdraft_limit=0), make_account()
    transfers = [
        {"from": str(destination.id), "to": str(source.id), "amount": 5, "currency": "USD", "idempotencyKey": "b-1"},
        {"from": str(source.id), "to": str(destination.id), "amount": 9, "currency": "USD", "idempotencyKey": "b-2"},
    ]

    mixed = api.post("/transfers/batch", {"atomic": False, "transfers": transfers}, format="json")
    assert [result["status"] for result in mixed.json()["results"]] == [201, 422]
    assert_matches(openapi, "/transfers/batch", "post", 200, mixed.json())
    refused = api.post("/transfers/batch", {"atomic": True, "transfers": transfers}, format="json")
    assert refused.status_code == 422
    assert_matches(openapi, "/transfers/batch", "post", 422, refused.json())


MISSING_ID = "01900000-0000-7000-8000-000000000000"


def operations(openapi: dict, method: str) -> list[str]:
    return [path for path, item in openapi["paths"].items() if method in item]


def test_every_read_refuses_an_unknown_query_parameter_with_its_documented_400(api, openapi):
    reads = operations(openapi, "get")

    for path in reads:
        response = api.get(
            path.format(account_id=MISSING_ID, transfer_id=MISSING_ID, grant_id=MISSING_ID), {"unknownParameter": "1"}
        )

        assert response.status_code == 400, (path, response.content)
        assert response.json()["code"] == "validation_error"
        assert response.json()["errors"] == [{"field": "unknownParameter", "message": "Unknown field."}]
        assert_matches(openapi, path, "get", 400, response.json())
    assert len(reads) == 12


def test_every_body_refuses_an_unknown_field_with_its_documented_400(api, openapi):
    writes = operations(openapi, "post")

    for path in writes:
        response = api.post(
            path.format(transfer_id=MISSING_ID, account_id=MISSING_ID, grant_id=MISSING_ID),
            {"unknownField": 1},
            format="json",
        )

        assert response.status_code == 400, (path, response.content)
        assert response.json()["errors"] == [{"field": "unknownField", "message": "Unknown field."}]
        assert_matches(openapi, path, "post", 400, response.json())
    assert writes == [
        "/accounts",
        "/accounts/{account_id}/grants",
        "/currencies",
        "/grants/{grant_id}/void",
        "/transfers",
        "/transfers/{transfer_id}/post",
        "/transfers/{transfer_id}/reverse",
        "/transfers/{transfer_id}/void",
        "/transfers/batch",
    ]


def test_a_read_the_projection_cannot_serve_yet_matches_its_documented_503(api, openapi, make_account, settings):
    settings.PROJECTIONS = {**settings.PROJECTIONS, "CONSISTENCY_WAIT_SECONDS": 0.01}
    account = make_account()
    token = consistency_token_for({account.id: 1})

    response = api.get(f"/accounts/{account.id}/balance", {"consistencyToken": token})

    assert response.status_code == 503
    assert_matches(openapi, "/accounts/{account_id}/balance", "get", 503, response.json())
