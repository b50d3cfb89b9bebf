"""OpenAPI helpers: every documented error response uses the one problem+json shape,
request bodies that refuse unknown fields say so, and each operation names the API key
scope it needs."""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import serializers

from creditledger.api.scopes import PUBLIC, SCOPES, Scope, endpoint_scope


class StrictInputSchema(OpenApiSerializerExtension):
    """`additionalProperties: false` on every StrictInputSerializer request body."""

    target_class = "creditledger.api.serializers.StrictInputSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction == "request":
            schema["additionalProperties"] = False
        return schema


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="The offending field, dotted for nested ones.")
    message = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    type = serializers.URLField(help_text="Stable URI for this kind of problem.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Machine-readable code, e.g. insufficient_funds.")
    instance = serializers.CharField(required=False)
    # The metaclass moves declared fields out of the class, so Serializer.errors stays a property.
    errors = FieldErrorSerializer(many=True, required=False)  # type: ignore[assignment]  # a field named like it


_DESCRIPTIONS = {
    400: "Invalid request: malformed JSON, wrong types, out-of-range values or unknown currency.",
    404: "Not found.",
    409: "Conflict: the idempotency key was used with a different request.",
    401: "No API key, or one that is malformed, unknown or revoked (only with LEDGER_AUTH=required); the "
    "WWW-Authenticate header names the Bearer scheme.",
    403: "The API key lacks the scope this operation needs (requiredScope).",
    413: "Request body too large.",
    429: "The API key's budget of writes or reads per second is spent (only with LEDGER_AUTH=required): nothing "
    "was applied; retry after the Retry-After header.",
    422: "Business rule violated: insufficient funds, currency mismatch, account not active, same account.",
    503: "The database is unavailable or overloaded, or the read model has not caught up; retry after the "
    "Retry-After header.",
}

_EXAMPLES = {
    400: {
        "type": "https://creditledger.dev/problems/validation-error",
        "title": "The request is invalid",
        "status": 400,
        "detail": "One or more fields are invalid.",
        "code": "validation_error",
        "errors": [{"field": "amount", "message": "Must be at least 1."}],
    },
    404: {
        "type": "https://creditledger.dev/problems/account-not-found",
        "title": "Account not found",
        "status": 404,
        "detail": "No account 0193a1b2-0000-7000-8000-000000000000.",
        "code": "account_not_found",
    },
    409: {
        "type": "https://creditledger.dev/problems/idempotency-key-reused",
        "title": "Idempotency key reused with a different request",
        "status": 409,
        "detail": "Idempotency key 'demo-1' was first used with a different request body.",
        "code": "idempotency_key_reused",
    },
    401: {
        "type": "https://creditledger.dev/problems/authentication-failed",
        "title": "Authentication failed",
        "status": 401,
        "detail": "The API key is not valid: it is malformed, unknown or revoked.",
        "code": "authentication_failed",
    },
    403: {
        "type": "https://creditledger.dev/problems/insufficient-scope",
        "title": "The API key lacks the scope",
        "status": 403,
        "detail": "This API key lacks the scope transfers:write that POST /transfers needs.",
        "code": "insufficient_scope",
        "requiredScope": "transfers:write",
    },
    429: {
        "type": "https://creditledger.dev/problems/throttled",
        "title": "Too many requests",
        "status": 429,
        "detail": "Request was throttled. Expected available in 1 second.",
        "code": "throttled",
    },
    413: {
        "type": "https://creditledger.dev/problems/request-too-large",
        "title": "Request body too large",
        "status": 413,
        "detail": "The request body is larger than the 65536 bytes this endpoint accepts (MAX_REQUEST_BODY_BYTES).",
        "code": "request_too_large",
    },
    422: {
        "type": "https://creditledger.dev/problems/insufficient-funds",
        "title": "Insufficient funds",
        "status": 422,
        "detail": "Account 0193a1b2-... has 500 available; the transfer needs 1234.",
        "code": "insufficient_funds",
        "available": 500,
    },
    503: {
        "type": "https://creditledger.dev/problems/service-unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "The database is unavailable or overloaded; retry after the Retry-After delay.",
        "code": "service_unavailable",
        "retryAfter": 1,
    },
}


def problem_responses(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    """Documented error responses, served as application/problem+json."""
    return {
        (status, "application/problem+json"): OpenApiResponse(
            response=ProblemSerializer,
            description=_DESCRIPTIONS[status],
            examples=[
                OpenApiExample(
                    f"{status} problem", value=_EXAMPLES[status], response_only=True, status_codes=[str(status)]
                )
            ],
        )
        for status in statuses
    }


API_KEY_SCHEME = "ApiKey"
_API_KEY_SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "cl_live_<id>_<secret>",
    "description": "An API key (`python manage.py api_key_create`), as `Authorization: Bearer <key>`. Needed when "
    "the service runs with LEDGER_AUTH=required (production); each operation lists the one scope it needs. Scopes: "
    + " ".join(f"`{scope.name}`: {scope.description}" for scope in SCOPES.values()),
}


class ScopedAutoSchema(AutoSchema):
    """Each operation's security requirement is the bearer API key with the scope its view
    declares (creditledger.api.scopes), with the 401, 403 and 429 it may answer; a public one
    has none."""

    def _scope(self) -> Scope | None:
        try:
            return endpoint_scope(self.view, self.method)
        except (AttributeError, KeyError):
            return PUBLIC

    def get_auth(self) -> list[dict[str, list[str]]]:
        scope = self._scope()
        if scope is PUBLIC:
            return []
        self.registry.register_on_missing(
            ResolvedComponent(
                name=API_KEY_SCHEME,
                type=ResolvedComponent.SECURITY_SCHEMA,
                object=API_KEY_SCHEME,
                schema=_API_KEY_SECURITY_SCHEME,
            )
        )
        return [{API_KEY_SCHEME: [scope.name]}]

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        bodies = super()._get_response_bodies(direction)
        if self._scope() is not PUBLIC:
            for (status, media_type), response in problem_responses(401, 403, 429).items():
                bodies[str(status)] = self._get_response_for_code(
                    response, str(status), media_types=[media_type], direction=direction
                )
        return bodies
