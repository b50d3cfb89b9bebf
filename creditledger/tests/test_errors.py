"""The error hierarchy and the one handler that renders every error as RFC 9457 problem+json."""

from __future__ import annotations

import pytest
from django.db import connection

from creditledger import errors
from creditledger.api.exception_handler import PROBLEM_TYPE_BASE

pytestmark = pytest.mark.django_db

ALL_ERRORS = [errors.LedgerError, *errors._all_subclasses(errors.LedgerError)]


def test_every_error_has_its_own_code():
    codes = [error.code for error in ALL_ERRORS]

    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("error_class", ALL_ERRORS, ids=lambda error_class: error_class.__name__)
def test_every_error_survives_being_stored_as_an_idempotent_outcome(error_class):
    error = error_class("Something specific.", field="amount", available=5, accountCurrency="EUR")

    again = errors.LedgerError.from_outcome(error.as_outcome())

    assert type(again) is error_class
    assert (again.detail, again.field, again.params) == ("Something specific.", "amount", error.params)
    assert 400 <= again.status < 600


# --- over HTTP ----------------------------------------------------------------------------------


def test_an_unknown_path_is_a_problem_404(api, problem):
    body = problem(api.get("/no/such/endpoint"), 404, "not_found")

    assert body["instance"] == "/no/such/endpoint"
    assert "/no/such/endpoint" in body["detail"]


def test_an_unsupported_method_is_a_problem_405(api, problem):
    body = problem(api.delete("/accounts"), 405, "method_not_allowed")

    assert "DELETE" in body["detail"]


def test_an_unsupported_media_type_is_a_problem_415(api, problem):
    problem(api.generic("POST", "/transfers", "amount=5", content_type="text/plain"), 415, "unsupported_media_type")


def test_an_unacceptable_accept_header_is_a_problem_406(api, problem):
    problem(api.get("/accounts", HTTP_ACCEPT="application/xml"), 406, "not_acceptable")


def test_a_problem_names_the_request_path_as_its_instance(api, problem):
    body = problem(api.get("/transfers/nope"), 404, "transfer_not_found")

    assert body["instance"] == "/transfers/nope"
    assert body["type"] == PROBLEM_TYPE_BASE + "transfer-not-found"


def test_json_nested_too_deeply_is_a_malformed_request(api, problem):
    raw = "[" * 20_000 + "]" * 20_000  # well under the upload limit

    problem(api.generic("POST", "/currencies", raw, content_type="application/json"), 400, "malformed_request")


def test_healthz_answers_ok(api):
    response = api.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_answers_ready_when_the_database_answers(api):
    response = api.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ready"})


@pytest.mark.django_db(transaction=True)
def test_readyz_is_a_problem_503_when_the_database_is_unreachable(api, problem):
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = 1  # nothing listens there
    try:
        response = api.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port

    problem(response, 503, "service_unavailable")
    assert api.get("/readyz").status_code == 200
