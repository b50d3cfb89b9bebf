"""The one place that turns errors into RFC 9457 problem+json responses."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import JsonResponse
from django.utils.log import log_response
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from creditledger import errors

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://creditledger.dev/problems/"


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    errors_list: list[dict[str, str]] | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors_list:
        body["errors"] = errors_list
    if params:
        body.update(params)
    return body


def ledger_error_body(error: errors.LedgerError, instance: str | None = None) -> dict[str, Any]:
    field_errors = [{"field": error.field, "message": error.detail}] if error.field else None
    return problem_body(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        instance=instance,
        errors_list=field_errors,
        params=error.params,
    )


def batch_item_problem(error: errors.LedgerError, instance: str | None = None) -> dict[str, Any]:
    """One refused item of a batch: its status and problem as POST /transfers would answer."""
    item: dict[str, Any] = {"status": error.status, "problem": ledger_error_body(error, instance)}
    if error.replayed:
        item["replayed"] = True
    return item


def _batch_refused_results(exc: errors.BatchRefused, instance: str | None) -> list[dict[str, Any]]:
    """Every item of a refused atomic batch: `refused` with its problem, `rolled_back` (it would
    have been posted) or `replayed` (its key already holds that transfer, unchanged)."""
    results: list[dict[str, Any]] = []
    for result in exc.results:
        if isinstance(result, errors.LedgerError):
            results.append({"outcome": "refused", **batch_item_problem(result, instance)})
        else:
            results.append({"outcome": "rolled_back" if result == "posted" else "replayed"})
    return results


def bearer_challenge(error: errors.NotAuthenticated | errors.ScopeMissing) -> str:
    """The WWW-Authenticate header of a 401 or 403 (RFC 6750, section 3)."""
    challenge = 'Bearer realm="creditledger"'
    if isinstance(error, errors.AuthenticationFailed):
        challenge += ', error="invalid_token"'
    elif isinstance(error, errors.ScopeMissing):
        challenge += f', error="insufficient_scope", scope="{error.params["requiredScope"]}"'
    return challenge


def _flatten_validation(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """DRF's nested error dict as a flat list of {field, message}: `postings[2].amount`. (A list
    serializer's errors come as a dict keyed by the item's index.)"""
    if isinstance(detail, dict):
        flat: list[dict[str, str]] = []
        for key, value in detail.items():
            if key == "non_field_errors":
                name = prefix
            elif isinstance(key, int):
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            flat.extend(_flatten_validation(value, name))
        return flat
    if isinstance(detail, list):
        flat = []
        for index, value in enumerate(detail):
            if isinstance(value, (dict, list)):
                flat.extend(_flatten_validation(value, f"{prefix}[{index}]"))
            else:
                flat.extend(_flatten_validation(value, prefix))
        return flat
    return [{"field": prefix or "body", "message": str(detail)}]


_DRF_CODES: dict[type[drf_exceptions.APIException], tuple[str, str]] = {
    drf_exceptions.ParseError: ("malformed_request", "Malformed request body"),
    drf_exceptions.UnsupportedMediaType: ("unsupported_media_type", "Unsupported media type"),
    drf_exceptions.MethodNotAllowed: ("method_not_allowed", "Method not allowed"),
    drf_exceptions.NotAcceptable: ("not_acceptable", "Not acceptable"),
    drf_exceptions.NotFound: ("not_found", "Not found"),
    drf_exceptions.NotAuthenticated: ("not_authenticated", "Authentication required"),
    drf_exceptions.AuthenticationFailed: ("authentication_failed", "Authentication failed"),
    drf_exceptions.PermissionDenied: ("permission_denied", "Permission denied"),
    drf_exceptions.Throttled: ("throttled", "Too many requests"),
}


# What an OperationalError says about the database when it is not the request's fault: no
# SQLSTATE (it could not be reached, the connection was lost, or Django's connection pool
# timed out: psycopg_pool.PoolTimeout), class 08 (connection exception), 53 (insufficient
# resources: too many connections, out of memory, disk full), 57 (shutdown, statement
# timeout), a lock timeout, or a serialization failure or deadlock that outlived the retries
# of creditledger.db.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
_UNAVAILABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
DATABASE_RETRY_AFTER_SECONDS = 1


def _database_unavailable(exc: Exception) -> bool:
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    instance = request.path if request is not None else None
    headers: dict[str, str] = {}
    log_detail = None

    if _database_unavailable(exc):
        # The transaction was rolled back: nothing is written, and a retry is safe.
        log_detail = f"{type(exc.__cause__ or exc).__name__}: {exc}"
        exc = errors.ServiceUnavailable(
            "The database is unavailable or overloaded; retry after the Retry-After delay.",
            retryAfter=DATABASE_RETRY_AFTER_SECONDS,
        )

    if isinstance(exc, errors.LedgerError):
        body = ledger_error_body(exc, instance)
        if isinstance(exc, errors.BatchRefused):
            body["results"] = _batch_refused_results(exc, instance)
        if exc.replayed:
            headers["Idempotent-Replayed"] = "true"
        if isinstance(exc, (errors.NotAuthenticated, errors.ScopeMissing)):
            headers["WWW-Authenticate"] = bearer_challenge(exc)
        retry_after = exc.params.get("retryAfter") if exc.params else None
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
    elif isinstance(exc, drf_exceptions.ValidationError):
        body = problem_body(
            status=400,
            code="validation_error",
            title="The request is invalid",
            detail="One or more fields are invalid.",
            instance=instance,
            errors_list=_flatten_validation(exc.detail),
        )
    elif isinstance(exc, RequestDataTooBig):
        body = problem_body(
            status=413,
            code="request_too_large",
            title="Request body too large",
            detail=too_large_detail(exc),
            instance=instance,
        )
    elif isinstance(exc, drf_exceptions.APIException):
        code, title = _DRF_CODES.get(type(exc), ("error", "Error"))
        body = problem_body(status=exc.status_code, code=code, title=title, detail=str(exc.detail), instance=instance)
        if isinstance(exc, drf_exceptions.Throttled):
            wait: int | None = exc.wait  # type: ignore[attr-defined]  # the DRF stubs lack Throttled.wait
            if wait:
                headers["Retry-After"] = str(math.ceil(wait))  # whole seconds, never 0
    else:
        return None  # a bug: let Django log it and answer 500

    response = Response(body, status=body["status"], headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    if response.status_code == 503 and request is not None:
        _log_unavailable(request, response, body, log_detail)
    return response


def _log_unavailable(request: Request, response: Response, body: dict[str, Any], log_detail: str | None) -> None:
    """One warning line instead of Django's error line: the client was told when to retry, and
    an operator needs the reason, not a traceback. Django does not log a response twice."""
    detail = " ".join((log_detail or body["detail"]).split())  # a psycopg message spans lines
    log_response(
        "%s: %s (%s: %s)",
        response.reason_phrase,
        request.path,
        body["code"],
        detail,
        response=response,
        request=request,
        level="warning",
    )


def not_found_view(request, exception=None) -> JsonResponse:
    body = problem_body(
        status=404,
        code="not_found",
        title="Not found",
        detail=f"No endpoint at {request.path}.",
        instance=request.path,
    )
    return JsonResponse(body, status=404, content_type=PROBLEM_CONTENT_TYPE)


def server_error_view(request) -> JsonResponse:
    body = problem_body(
        status=500,
        code="internal_error",
        title="Internal server error",
        detail="An unexpected error occurred; it has been logged.",
        instance=request.path,
    )
    return JsonResponse(body, status=500, content_type=PROBLEM_CONTENT_TYPE)


def too_large_detail(exc: RequestDataTooBig) -> str:
    """Django's own refusal names its setting; an operator sets it as MAX_REQUEST_BODY_BYTES."""
    if "DATA_UPLOAD_MAX_MEMORY_SIZE" in str(exc):
        return (
            f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes this endpoint "
            "accepts (MAX_REQUEST_BODY_BYTES)."
        )
    return str(exc)


def bad_request_view(request, exception=None) -> JsonResponse:
    too_big = isinstance(exception, RequestDataTooBig)
    body = problem_body(
        status=413 if too_big else 400,
        code="request_too_large" if too_big else "bad_request",
        title="Request body too large" if too_big else "Bad request",
        detail=too_large_detail(exception) if too_big else str(exception) if exception else "Bad request.",
        instance=request.path,
    )
    return JsonResponse(body, status=body["status"], content_type=PROBLEM_CONTENT_TYPE)
