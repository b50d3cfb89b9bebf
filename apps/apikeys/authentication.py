"""`Authorization: Bearer <key>` for DRF, when LEDGER_AUTH=required (ADR 0019)."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_authenticate
from creditledger import errors
from creditledger.actor import actor_set, api_key_actor
from creditledger.api.exception_handler import bearer_challenge
from creditledger.api.scopes import auth_required

_INVALID = "The API key is not valid: it is malformed, unknown or revoked."


class ApiKeyAuthentication(BaseAuthentication):
    """`request.auth` is the ApiKey; `request.user` stays None. With LEDGER_AUTH=off the
    Authorization header is not read at all, and every request is anonymous."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        if not auth_required():
            return None
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, presented = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise errors.AuthenticationFailed(_INVALID)
        key = api_key_authenticate(presented=presented.strip())
        if key is None:
            raise errors.AuthenticationFailed(_INVALID)
        actor_set(api_key_actor(key.id))
        return None, key

    def authenticate_header(self, request: Request) -> str:
        return bearer_challenge(errors.NotAuthenticated(""))
