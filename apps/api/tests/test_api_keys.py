"""API keys over HTTP with LEDGER_AUTH=required: every endpoint, enumerated from the URL conf,
without a key, with a malformed, revoked or wrongly scoped one, and with the right one; a
revocation that holds at the next request; idempotency keys that belong to their owner."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from rest_framework.views import APIView

from apps.apikeys.services import REVOCATION_WAIT_SECONDS, api_key_create, api_key_revoke
from apps.apikeys.verdicts import changes_applied_wait, verdicts
from creditledger.api.exception_handler import PROBLEM_CONTENT_TYPE
from creditledger.api.scopes import PUBLIC, SCOPES, ScopeRequired, endpoint_scope

_SOME_ID = "0193a1b2-0000-7000-8000-00000000000a"


def _routes() -> Iterator[tuple[str, type[APIView]]]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, type[APIView]]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "cls", None)
                if view is not None and issubclass(view, APIView):
                    yield prefix + str(pattern.pattern), view

    yield from walk(get_resolver().url_patterns, "/")


def _endpoints() -> list[tuple[str, str, type[APIView]]]:
    """(path pattern, method, view) of every API endpoint that ScopeRequired guards."""
    endpoints: list[tuple[str, str, type[APIView]]] = []
    for route, view in _routes():
        if ScopeRequired not in view.permission_classes:
            # Only the schema and Swagger UI are public by their own permission classes.
            assert view.__module__.startswith("drf_spectacular."), f"{route} opts out of ScopeRequired"
            continue
        endpoints.extend(
            (route, method.upper(), view)
            for method in view.http_method_names
            if method not in ("options", "head") and hasattr(view, method)
        )
    return endpoints


ENDPOINTS = _endpoints()


def _path(route: str) -> str:
    return re.sub(r"<[^>]+>", _SOME_ID, route)


@pytest.fixture
def auth_required(settings) -> None:
    settings.LEDGER_AUTH = "required"


def client(printed: str | None = None, scheme: str = "Bearer") -> APIClient:
    api = APIClient()
    if printed is not None:
        api.credentials(HTTP_AUTHORIZATION=f"{scheme} {printed}")
    return api


def call(api: APIClient, method: str, path: str):
    """`method` on `path` with an empty JSON object for a body."""
    return api.generic(method, path, "{}", content_type="application/json")


def test_every_endpoint_declares_a_scope_from_the_registry_for_each_method():
    assert len(ENDPOINTS) >= 20
    for route, method, view in ENDPOINTS:
        scope = endpoint_scope(view, method)  # KeyError: a method without a scope
        assert scope is PUBLIC or SCOPES[scope.name] is scope, (route, method)


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
@pytest.mark.usefixtures("auth_required")
@pytest.mark.parametrize(("route", "method", "view"), ENDPOINTS, ids=[f"{m} {r}" for r, m, _ in ENDPOINTS])
def test_each_endpoint_answers_by_its_declared_scope(route, method, view, problem):
    path, scope = _path(route), endpoint_scope(view, method)
    if scope is PUBLIC:
        assert call(client(), method, path).status_code < 400
        return
    revoked = api_key_create(name="revoked", scopes=list(SCOPES))
    api_key_revoke(key_id=revoked.key.id)
    secret = revoked.printed.split("_", 3)[3]

    missing = call(client(), method, path)
    problem(missing, 401, "not_authenticated")
    assert missing["WWW-Authenticate"] == 'Bearer realm="creditledger"'
    invalid = [
        client(revoked.printed),
        client("not-a-key"),
        client(f"cl_live_{'0' * 32}_{secret}"),
        client(revoked.printed, scheme="Basic"),
    ]
    for api in invalid:
        refused = call(api, method, path)
        body = problem(refused, 401, "authentication_failed")
        assert refused["WWW-Authenticate"] == 'Bearer realm="creditledger", error="invalid_token"'
        assert body["detail"] == "The API key is not valid: it is malformed, unknown or revoked."

    for other in SCOPES:
        if other == scope.name:
            continue
        wrong = call(client(api_key_create(name=other, scopes=[other]).printed), method, path)
        body = problem(wrong, 403, "insufficient_scope")
        assert body["requiredScope"] == scope.name
        challenge = f'Bearer realm="creditledger", error="insufficient_scope", scope="{scope.name}"'
        assert wrong["WWW-Authenticate"] == challenge

    allowed = call(client(api_key_create(name="right", scopes=[scope.name]).printed), method, path)
    assert allowed.status_code not in (401, 403), allowed.content
    assert allowed.status_code < 500, allowed.content


def test_the_schema_names_each_operations_scope_and_its_401_and_403():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    checked = 0
    for route, method, view in ENDPOINTS:
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        if path not in schema["paths"]:
            assert route == "/metrics"  # Prometheus' text format, not the API's JSON
            continue
        operation = schema["paths"][path][method.lower()]
        scope = endpoint_scope(view, method)
        if scope is PUBLIC:
            assert "security" not in operation
            assert "401" not in operation["responses"]
        else:
            assert operation["security"] == [{"ApiKey": [scope.name]}]
            assert {"401", "403"} <= set(operation["responses"])
            checked += 1
    assert checked >= 18


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
def test_with_auth_off_the_authorization_header_is_not_read(api, make_account):
    account = make_account()
    response = client("not-a-key").get(f"/accounts/{account.id}")
    assert response.status_code == 200
    assert client().get("/metrics").status_code == 200


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
@pytest.mark.usefixtures("auth_required")
def test_metrics_answer_prometheus_text_to_an_admin_key(problem):
    admin_key = api_key_create(name="prometheus", scopes=["admin"]).printed
    scrape = client(admin_key).get(
        "/metrics", HTTP_ACCEPT="application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    )
    assert scrape.status_code == 200
    assert scrape["Content-Type"].startswith("text/plain")
    assert b"creditledger_outbox_backlog" in scrape.content
    refused = client().get("/metrics", HTTP_ACCEPT="text/plain")
    problem(refused, 401, "not_authenticated")
    assert refused["Content-Type"] == PROBLEM_CONTENT_TYPE


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
@pytest.mark.usefixtures("auth_required")
def test_a_revoked_key_stops_working_on_the_next_request_in_every_worker(make_account, run_together):
    """Every worker keeps the verdict until PostgreSQL notifies the change (ADR 0019), and a
    revocation returns once every listener has confirmed it dropped the key's verdict: the
    next request, at once, is refused."""
    account = make_account()
    created = api_key_create(name="ci", scopes=["accounts:read"])

    def fetch(_: int) -> int:
        return client(created.printed).get(f"/accounts/{account.id}").status_code

    def revoke_elsewhere(_: int) -> None:
        """As api_key_revoke in another process: on its own connection, sharing nothing with the
        workers but the database."""
        with changes_applied_wait(key_id=created.key.id, timeout=REVOCATION_WAIT_SECONDS), connection.cursor() as cur:
            cur.execute("UPDATE api_key SET revoked_at = now() WHERE id = %s", [created.key.id])

    assert fetch(0) == 200
    assert verdicts.listener_wait(timeout=10)
    assert run_together(2, fetch) == [200, 200]
    assert verdicts.get(created.key.id, created.key.secret_hash) is not None
    run_together(1, revoke_elsewhere)
    assert run_together(2, fetch) == [401, 401]
    assert fetch(0) == 401


# --- idempotency keys belong to the key's owner ---------------------------------------------


@pytest.fixture
def owners(auth_required) -> dict[str, APIClient]:
    """Alice with two keys (the second a rotation), and Bob."""
    every_scope = list(SCOPES)
    return {
        "alice": client(api_key_create(name="alice-1", owner="alice", scopes=every_scope).printed),
        "alice rotated": client(api_key_create(name="alice-2", owner="alice", scopes=every_scope).printed),
        "bob": client(api_key_create(name="bob", scopes=every_scope).printed),
    }


def _transfer(accounts, key: str, **extra: Any) -> dict[str, Any]:
    source, destination = accounts
    return {
        "from": str(source.id),
        "to": str(destination.id),
        "amount": 100,
        "currency": "USD",
        "idempotencyKey": key,
        **extra,
    }


def _postings(accounts, key: str) -> dict[str, Any]:
    single = _transfer(accounts, key)
    return {"postings": [{name: single[name] for name in ("from", "to", "amount", "currency")}], "idempotencyKey": key}


def _hold(api: APIClient, accounts) -> str:
    created = api.post("/transfers", _transfer(accounts, "the-hold", pending=True), format="json")
    assert created.status_code == 201, created.content
    return created.json()["transferId"]


def _posted(api: APIClient, accounts) -> str:
    created = api.post("/transfers", _transfer(accounts, "the-original"), format="json")
    assert created.status_code == 201, created.content
    return created.json()["transferId"]


def _grant(api: APIClient, accounts) -> str:
    source, destination = accounts
    created = api.post(
        f"/accounts/{destination.id}/grants",
        {"from": str(source.id), "amount": 50, "idempotencyKey": "the-grant"},
        format="json",
    )
    assert created.status_code == 201, created.content
    return created.json()["grantId"]


#: Each idempotent write: (what to set up as alice, and the request that uses the key "shared").
COMMANDS: dict[str, Callable[[APIClient, Any], tuple[str, dict[str, Any]]]] = {
    "POST /transfers": lambda api, accounts: ("/transfers", _transfer(accounts, "shared")),
    "POST /transfers (postings)": lambda api, accounts: ("/transfers", _postings(accounts, "shared")),
    "POST /transfers/{id}/post": lambda api, accounts: (
        f"/transfers/{_hold(api, accounts)}/post",
        {"idempotencyKey": "shared"},
    ),
    "POST /transfers/{id}/void": lambda api, accounts: (
        f"/transfers/{_hold(api, accounts)}/void",
        {"idempotencyKey": "shared"},
    ),
    "POST /transfers/{id}/reverse": lambda api, accounts: (
        f"/transfers/{_posted(api, accounts)}/reverse",
        {"idempotencyKey": "shared", "amount": 10},
    ),
    "POST /accounts/{id}/grants": lambda api, accounts: (
        f"/accounts/{accounts[1].id}/grants",
        {"from": str(accounts[0].id), "amount": 50, "idempotencyKey": "shared"},
    ),
    "POST /grants/{id}/void": lambda api, accounts: (
        f"/grants/{_grant(api, accounts)}/void",
        {"idempotencyKey": "shared"},
    ),
}


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_stored_outcome_is_replayed_only_to_its_owner(command, owners, make_account, problem):
    accounts = (make_account(), make_account())
    path, body = COMMANDS[command](owners["alice"], accounts)

    first = owners["alice"].post(path, body, format="json")
    assert first.status_code in (200, 201), first.content
    rotated = owners["alice rotated"].post(path, body, format="json")
    assert (rotated.status_code, rotated.json()) == (first.status_code, first.json())
    assert rotated["Idempotent-Replayed"] == "true"

    other = owners["bob"].post(path, body, format="json")
    refusal = problem(other, 409, "idempotency_key_reused", field="idempotencyKey")
    assert "Idempotent-Replayed" not in other
    # Nothing of the original's body: the problem's own fields only.
    assert set(refusal) == {"type", "title", "status", "detail", "code", "instance", "errors"}


@pytest.mark.django_db(transaction=True, databases=["default", "read"])
@pytest.mark.parametrize("atomic", [False, True])
def test_a_batch_item_is_replayed_only_to_its_owner(atomic, owners, make_account):
    accounts = (make_account(), make_account())
    batch = {"atomic": atomic, "transfers": [_transfer(accounts, "shared-1"), _transfer(accounts, "shared-2")]}
    first = owners["alice"].post("/transfers/batch", batch, format="json")
    assert first.status_code == 200, first.content
    posted_ids = [result["transfer"]["transferId"] for result in first.json()["results"]]

    rotated = owners["alice rotated"].post("/transfers/batch", batch, format="json")
    assert [result.get("replayed") for result in rotated.json()["results"]] == [True, True]

    other = owners["bob"].post("/transfers/batch", batch, format="json")
    assert other.status_code == (422 if atomic else 200), other.content
    items = [result.get("problem", {}).get("code") for result in other.json()["results"]]
    assert items == ["idempotency_key_reused", "idempotency_key_reused"]
    assert not any(transfer_id in other.content.decode() for transfer_id in posted_ids)
