"""The OpenAPI schema generates cleanly and is served (cookiecutter-django's test_openapi)."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command

SEED_OPERATIONS = {
    ("/accounts", "post"), ("/accounts", "get"), ("/accounts/{account_id}", "get"),
    ("/accounts/{account_id}/balance", "get"), ("/accounts/{account_id}/statements", "get"),
    ("/transfers", "post"), ("/transfers", "get"), ("/transfers/{transfer_id}", "get"),
    ("/currencies", "get"), ("/currencies", "post"), ("/healthz", "get"), ("/readyz", "get"),
}


def test_the_schema_generates_without_warnings(tmp_path):
    schema_file = tmp_path / "schema.yml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))

    schema = yaml.safe_load(schema_file.read_text())
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations >= SEED_OPERATIONS


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
