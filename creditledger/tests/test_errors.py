"""The error hierarchy and the one handler that renders every error as RFC 9457 problem+json."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import psycopg
import pytest
from django.db import OperationalError, connection
from django.db.backends.postgresql.base import DatabaseWrapper
from psycopg import sql

from apps.api.consistency import consistency_token_for
from creditledger import errors
from creditledger.api.exception_handler import PROBLEM_TYPE_BASE

pytestmark = pytest.mark.django_db

ALL_ERRORS: list[type[errors.LedgerError]] = [errors.LedgerError, *errors._all_subclasses(errors.LedgerError)]


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


# --- the database unavailable or saturated: 503 with Retry-After, nothing written ------------------


@contextmanager
def postgresql_out_of_connections() -> Iterator[None]:
    """The default connection reconnects as a role that PostgreSQL has no connection slot left
    for: it refuses with `FATAL: too many connections for role`, as it refuses everyone with
    `too many clients already` once max_connections is reached."""
    role = f"saturated_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 0").format(sql.Identifier(role)))
    saved = {key: connection.settings_dict[key] for key in ("USER", "PASSWORD")}
    connection.close()
    connection.settings_dict.update(USER=role, PASSWORD="")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@contextmanager
def connection_pool_exhausted() -> Iterator[None]:
    """Django's psycopg pool, one connection large, held by someone else: the next request
    waits for it and gets psycopg_pool.PoolTimeout."""
    postgresql = cast(DatabaseWrapper, connection)  # the test settings use the postgresql backend
    postgresql.close()
    options = postgresql.settings_dict["OPTIONS"]
    options["pool"] = {"min_size": 0, "max_size": 1, "timeout": 0.2}
    held = None
    try:
        postgresql.pool.open()
        # Opening the one connection may take longer than the requests' 0.2 s on a busy machine.
        held = postgresql.pool.getconn(timeout=30)
        yield
    finally:
        # Undone even when taking the connection failed: a pool left in the settings would be
        # every later test's connection.
        if held is not None:
            postgresql.pool.putconn(held)
        postgresql.close()
        postgresql.close_pool()
        del options["pool"]


def open_account(api):
    return api.post("/accounts", {"currency": "USD"}, format="json")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("saturation", [postgresql_out_of_connections, connection_pool_exhausted])
def test_a_request_the_database_cannot_take_now_is_a_503_with_retry_after(
    api, problem, ledger_state, caplog, saturation
):
    before = ledger_state()

    with caplog.at_level(logging.INFO, logger="django.request"), saturation():
        response = open_account(api)

    body = problem(response, 503, "service_unavailable")
    assert response["Retry-After"] == "1"
    assert body["retryAfter"] == 1
    assert "retry" in body["detail"]
    assert ledger_state() == before
    assert open_account(api).status_code == 201
    (line,) = [record for record in caplog.records if record.name == "django.request"]
    assert (line.levelno, line.exc_info) == (logging.WARNING, None)
    assert "/accounts (service_unavailable: " in line.getMessage()


@pytest.mark.django_db(transaction=True)
def test_the_saturation_test_really_meets_a_full_postgresql():
    """The 53300 refusal the test above relies on, seen directly."""
    with postgresql_out_of_connections(), pytest.raises(OperationalError, match="too many connections"):
        connection.ensure_connection()


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_a_lock_the_transfer_cannot_get_in_time_is_a_503_and_nothing_is_half_written(
    api, problem, make_account, ledger_state, idempotency_records
):
    source, destination = make_account(), make_account()
    body = {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": 5,
        "currency": "USD",
        "idempotencyKey": "busy-1",
    }
    before = ledger_state()
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    options["options"] = "-c lock_timeout=100"
    try:
        with psycopg.connect(**connection.get_connection_params()) as other:
            other.execute("SELECT 1 FROM account WHERE id = %s FOR UPDATE", [destination.id])
            response = api.post("/transfers", body, format="json")
    finally:
        connection.close()
        del options["options"]

    problem(response, 503, "service_unavailable")
    assert response["Retry-After"] == "1"
    assert ledger_state() == before
    assert idempotency_records() == 0
    retried = api.post("/transfers", body, format="json")
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers


# --- expected answers log one line ---------------------------------------------------------------


def request_log_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "django.request"]


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_a_read_the_projection_cannot_serve_yet_logs_one_warning_line(api, make_account, settings, caplog):
    settings.PROJECTIONS = {**settings.PROJECTIONS, "CONSISTENCY_WAIT_SECONDS": 0.01}
    account = make_account()
    path = f"/accounts/{account.id}/balance"

    with caplog.at_level(logging.INFO, logger="django.request"):
        response = api.get(path, {"consistencyToken": consistency_token_for({account.id: 3})})

    assert response.status_code == 503
    (line,) = request_log_lines(caplog)
    assert (line.levelno, line.exc_info) == (logging.WARNING, None)
    assert line.getMessage() == (
        f"Service Unavailable: {path} (projection_not_ready: The read model has reached entry 0 of account "
        f"{account.id}, not yet 3.)"
    )


@pytest.mark.django_db(transaction=True)
def test_readyz_logs_one_warning_line_when_the_database_is_unreachable(api, caplog):
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = 1
    try:
        with caplog.at_level(logging.INFO, logger="django.request"):
            response = api.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port

    assert response.status_code == 503
    (line,) = request_log_lines(caplog)
    assert (line.levelno, line.exc_info) == (logging.WARNING, None)
    assert line.getMessage() == (
        "Service Unavailable: /readyz (service_unavailable: Database unreachable: OperationalError)"
    )
