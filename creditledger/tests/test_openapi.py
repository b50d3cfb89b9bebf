"""The OpenAPI schema generates cleanly and is served (cookiecutter-django's test_openapi)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft202012Validator

SEED_OPERATIONS = {
    ("/accounts", "post"),
    ("/accounts", "get"),
    ("/accounts/{account_id}", "get"),
    ("/accounts/{account_id}/balance", "get"),
    ("/accounts/{account_id}/statements", "get"),
    ("/transfers", "post"),
    ("/transfers", "get"),
    ("/transfers/{transfer_id}", "get"),
    ("/currencies", "get"),
    ("/currencies", "post"),
    ("/healthz", "get"),
    ("/readyz", "get"),
}


def test_the_schema_generates_without_warnings(tmp_path):
    schema_file = tmp_path / "schema.yml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))

    schema = yaml.safe_load(schema_file.read_text())
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations >= SEED_OPERATIONS


@pytest.fixture(scope="module")
def openapi() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def schemas_in(document: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every JSON Schema of the document: components, parameters, request and response bodies."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "schema" and isinstance(value, dict):
                yield f"{path}/{key}", value
            elif key == "schemas" and path == "/components":
                yield from ((f"{path}/schemas/{name}", schema) for name, schema in value.items())
            else:
                yield from schemas_in(value, f"{path}/{key}")
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from schemas_in(value, f"{path}/{index}")


def test_every_schema_in_the_document_is_valid_json_schema_2020_12(openapi):
    """OpenAPI 3.1 schemas are JSON Schema: a `type` that lists "null" twice is invalid, and
    schemathesis refuses to generate requests from it."""
    found = dict(schemas_in(openapi))
    meta_schema = Draft202012Validator(Draft202012Validator.META_SCHEMA)

    invalid = {
        location: [error.message for error in meta_schema.iter_errors(schema)] for location, schema in found.items()
    }

    assert "/components/schemas/AccountCreateInputRequest" in found
    assert {location: messages for location, messages in invalid.items() if messages} == {}


def test_request_bodies_refuse_properties_they_do_not_declare(openapi):
    components = openapi["components"]["schemas"]
    bodies = {
        (path, method): media["schema"]["$ref"].rsplit("/", 1)[1]
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        for media in operation.get("requestBody", {}).get("content", {}).values()
    }

    # POST /transfers takes one of two forms: each refuses what it does not declare.
    forms = [
        ref["$ref"].rsplit("/", 1)[1]
        for name in bodies.values()
        for ref in components[name].get("oneOf", [{"$ref": f"#/components/schemas/{name}"}])
    ]

    assert set(bodies) == {
        ("/accounts", "post"),
        ("/accounts/{account_id}", "patch"),
        ("/currencies", "post"),
        ("/transfers", "post"),
        ("/transfers/{transfer_id}/post", "post"),
        ("/transfers/{transfer_id}/void", "post"),
        ("/transfers/batch", "post"),
        ("/transfers/{transfer_id}/reverse", "post"),
        ("/accounts/{account_id}/grants", "post"),
        ("/grants/{grant_id}/void", "post"),
    }
    assert len(forms) == 11
    assert {name: components[name]["additionalProperties"] for name in forms} == dict.fromkeys(forms, False)


def test_the_idempotency_key_has_one_documented_rule_for_the_header_and_the_body(openapi):
    create = openapi["paths"]["/transfers"]["post"]
    (header,) = [parameter for parameter in create["parameters"] if parameter["name"] == "Idempotency-Key"]
    for form in ("SingleTransferInputRequest", "MultiLegTransferInputRequest"):
        body_field = openapi["components"]["schemas"][form]["properties"]["idempotencyKey"]

        assert header["in"] == "header"
        assert {key: header["schema"][key] for key in ("type", "minLength", "maxLength", "pattern")} == {
            key: body_field[key] for key in ("type", "minLength", "maxLength", "pattern")
        }


def test_error_responses_are_documented_as_problems(tmp_path):
    schema_file = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(schema_file))
    schema = yaml.safe_load(schema_file.read_text())

    create = schema["paths"]["/transfers"]["post"]["responses"]

    assert {"201", "400", "404", "409", "413", "422"} <= set(create)
    for status in ("400", "404", "409", "413", "422"):
        schemas = [media["schema"] for media in create[status]["content"].values()]
        assert schemas == [{"$ref": "#/components/schemas/Problem"}]


@pytest.mark.django_db
def test_the_schema_is_served(client):
    response = client.get("/api/schema/")

    assert response.status_code == 200
    assert b"Credit Ledger API" in response.content


@pytest.mark.django_db
def test_the_swagger_ui_is_served(client):
    response = client.get("/api/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
