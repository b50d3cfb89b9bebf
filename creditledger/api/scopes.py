"""The scope registry: every scope an API key may hold, declared once, and how an endpoint
declares the scope each of its methods needs.

Everything else reads it: the permission that checks a request (`ScopeRequired`), the
OpenAPI schema's security requirements (creditledger.api.schema.ScopedAutoSchema), the key
commands and admin (which refuse a scope it lacks), and the test that tries every endpoint
with every wrong scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from django.conf import settings
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from creditledger import errors


@dataclass(frozen=True)
class Scope:
    name: str
    description: str


ACCOUNTS_READ = Scope("accounts:read", "Read accounts, balances, statements, grants and explanations.")
ACCOUNTS_WRITE = Scope("accounts:write", "Open, change, freeze and close accounts.")
TRANSFERS_READ = Scope("transfers:read", "Read transfers.")
TRANSFERS_WRITE = Scope("transfers:write", "Post transfers, batches, hold commands and reversals.")
GRANTS_WRITE = Scope("grants:write", "Grant credits and void grants.")
CURRENCIES_WRITE = Scope("currencies:write", "Register currencies and credit units.")
ADMIN = Scope("admin", "Operate the service: the web process's /metrics.")

SCOPES: dict[str, Scope] = {
    scope.name: scope
    for scope in (ACCOUNTS_READ, ACCOUNTS_WRITE, TRANSFERS_READ, TRANSFERS_WRITE, GRANTS_WRITE, CURRENCIES_WRITE, ADMIN)
}


class ScopedCredential(Protocol):
    """What the authentication class puts in `request.auth` (apps.apikeys.models.ApiKey)."""

    id: Any
    scopes: list[str]
    owner: str


#: What an endpoint declares for a method anyone may call, with or without a key.
PUBLIC = None

#: LEDGER_AUTH's value that needs keys; the other is "off" (config/settings/base.py).
AUTH_REQUIRED = "required"


def auth_required() -> bool:
    """Read at each request, so that a test (or override_settings) can switch it."""
    return settings.LEDGER_AUTH == AUTH_REQUIRED


def scopes_parse(names: list[str] | tuple[str, ...]) -> list[str]:
    """Scope names checked against the registry, each once, in the registry's order."""
    unknown = sorted(set(names) - set(SCOPES))
    if unknown:
        raise errors.InvalidRequest(f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(SCOPES)}.")
    if not names:
        raise errors.InvalidRequest(f"Give at least one scope of: {', '.join(SCOPES)}.")
    return [name for name in SCOPES if name in names]


def endpoint_scope(view: Any, method: str) -> Scope | None:
    """The scope `view` declares for `method` (HEAD as GET); PUBLIC (None) for a public one.
    Raises KeyError for a method the view does not declare (it answers 405 to a valid key)."""
    declared: Mapping[str, Scope | None] = view.required_scopes
    return declared["GET" if method == "HEAD" else method]


_NO_KEY = "Send an API key: Authorization: Bearer <key>."


class ScopeRequired(BasePermission):
    """With LEDGER_AUTH=required, the request's key must hold the scope its endpoint declares
    for the method (`required_scopes = {"GET": ACCOUNTS_READ, ...}` on the view). No key, or
    an invalid one, is a 401; a key without the scope, a 403. A method the view does not
    declare (OPTIONS, or one it does not allow) needs any valid key. A view that declares
    nothing fails closed: it needs a key, whatever the method."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not auth_required():
            return True
        try:
            scope = endpoint_scope(view, request.method or "GET")
        except (AttributeError, KeyError):
            scope = None
            if request.auth is None:
                raise errors.NotAuthenticated(_NO_KEY) from None
        if scope is PUBLIC:
            return True
        if request.auth is None:
            raise errors.NotAuthenticated(_NO_KEY)
        credential = cast(ScopedCredential, request.auth)
        if scope.name not in credential.scopes:
            raise errors.ScopeMissing(
                f"This API key lacks the scope {scope.name} that {request.method} {request.path} needs.",
                requiredScope=scope.name,
            )
        return True
