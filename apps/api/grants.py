"""Credit grants and the balance explanation (docs/credits.md): thin views over
apps.ledger.services (grant_create, grant_void), selectors and explanation."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.selectors import account_get
from apps.api.transfers import IDEMPOTENCY_PARAMETER, REPLAYED_HEADER, request_idempotency_key, request_owner
from apps.ledger import selectors, services
from apps.ledger.explanation import DEFAULT_CHANGES, MAX_CHANGES, account_explanation
from apps.ledger.models import (
    DESCRIPTION_MAX_LENGTH,
    GRANT_PRIORITY_DEFAULT,
    GRANT_PRIORITY_MAX,
    GRANT_PRIORITY_MIN,
    GrantStatus,
)
from creditledger import errors
from creditledger.api.fields import (
    IdempotencyKeyField,
    InstantField,
    MetadataField,
    MinorUnitsField,
    StrictCharField,
    UUIDStringField,
)
from creditledger.api.ids import parse_path_id
from creditledger.api.schema import problem_responses
from creditledger.api.scopes import ACCOUNTS_READ, GRANTS_WRITE
from creditledger.api.serializers import (
    NoQueryParameters,
    StrictInputSerializer,
    input_validate,
    keyword_fields,
    query_params_validate,
)

_ACCOUNT_ID_PARAMETER = OpenApiParameter("account_id", str, OpenApiParameter.PATH, description="Account id (UUID).")
_GRANT_ID_PARAMETER = OpenApiParameter("grant_id", str, OpenApiParameter.PATH, description="Grant id (UUID).")


@keyword_fields(**{"from": serializers.UUIDField(help_text="The funding account, debited by the grant.")})
class GrantOutputSerializer(serializers.Serializer):
    grantId = serializers.UUIDField()
    accountId = serializers.UUIDField()
    transferId = serializers.UUIDField(help_text="The transfer that funds the grant (pending until effectiveAt).")
    expireTo = serializers.UUIDField(help_text="Receives what expires (breakage).")
    currency = serializers.CharField()
    amount = serializers.IntegerField(help_text="Granted, in minor units.")
    remaining = serializers.IntegerField(help_text="What debits may still draw (from effectiveAt).")
    consumed = serializers.IntegerField(help_text="Drawn by debits and posted holds, less what reversals restored.")
    reserved = serializers.IntegerField(help_text="Reserved by open holds.")
    expired = serializers.IntegerField(help_text="Moved to expireTo at expiry.")
    voided = serializers.IntegerField(help_text="Moved back to the funding account by a void.")
    priority = serializers.IntegerField(help_text="0-100; lower burns first.")
    effectiveAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField(allow_null=True)
    status = serializers.ChoiceField(choices=GrantStatus.choices)
    description = serializers.CharField(allow_null=True)
    metadata = serializers.DictField()
    createdAt = serializers.DateTimeField()


class GrantHistorySerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="draw, reserve, post, release, restore, expire or void.")
    amount = serializers.IntegerField()
    transferId = serializers.UUIDField()
    entryId = serializers.UUIDField(allow_null=True)
    createdAt = serializers.DateTimeField()
    description = serializers.CharField(allow_null=True, help_text="The transfer's description.")


class GrantDetailOutputSerializer(GrantOutputSerializer):
    history = GrantHistorySerializer(many=True, help_text="Every movement of the grant's credits, oldest first.")


def _grant_response(outcome: services.GrantOutcome, status_code: int) -> Response:
    headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
    return Response(outcome.document, status=status_code, headers=headers)


class AccountGrantsApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ, "POST": GRANTS_WRITE}

    @keyword_fields(**{"from": UUIDStringField(help_text="The funding account (an issuer such as promotions).")})
    class GrantCreateInputSerializer(StrictInputSerializer):
        amount = MinorUnitsField(help_text="Credits granted, in the account's currency's minor units.")
        idempotencyKey = IdempotencyKeyField(
            required=False, help_text="Required here or in the Idempotency-Key header."
        )
        expiresAt = InstantField(required=False, help_text="When the remainder expires; left out: never.")
        effectiveAt = InstantField(required=False, help_text="From when the credits count; left out: now.")
        priority = serializers.IntegerField(
            required=False,
            default=GRANT_PRIORITY_DEFAULT,
            min_value=GRANT_PRIORITY_MIN,
            max_value=GRANT_PRIORITY_MAX,
            help_text="Lower burns first.",
        )
        expireTo = UUIDStringField(required=False, help_text="Receives what expires; left out: the funding account.")
        description = StrictCharField(required=False, allow_null=True, max_length=DESCRIPTION_MAX_LENGTH)
        metadata = MetadataField(required=False, default=dict)

    class GrantQuerySerializer(StrictInputSerializer):
        status = serializers.ChoiceField(choices=GrantStatus.choices, required=False)

    class GrantListOutputSerializer(serializers.Serializer):
        accountId = serializers.UUIDField()
        data = GrantOutputSerializer(many=True)  # type: ignore[assignment]  # a field named like it

    @extend_schema(
        tags=["grants"],
        operation_id="grants_create",
        summary="Grant credits to the account: a lot that burns down in a known order and may expire",
        description="Credits `amount` from the funding account `from` in a transfer that obeys every rule of a "
        "transfer (a scheduled grant's transfer is a hold until effectiveAt) and creates the grant. Debits of the "
        "account draw from its grants by priority, then the soonest expiry (never-expiring last), then creation "
        "order, and then from its unrestricted balance. At expiresAt the unreserved remainder moves to expireTo. "
        "Exactly once per idempotency key.",
        request=GrantCreateInputSerializer,
        parameters=[_ACCOUNT_ID_PARAMETER, IDEMPOTENCY_PARAMETER],
        responses={201: GrantOutputSerializer, **problem_responses(400, 404, 409, 413, 422, 503)},
        examples=[
            OpenApiExample(
                "Monthly plan credits",
                value={
                    "from": "01935c9e-8f00-7000-8000-000000000001",
                    "amount": 1000,
                    "expiresAt": "2026-12-31T23:59:59Z",
                    "description": "December plan",
                    "idempotencyKey": "plan-2026-12-acme",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        query_params_validate(request, NoQueryParameters)
        data = input_validate(self.GrantCreateInputSerializer, request.data)
        outcome = services.grant_create(
            account_id=account_uuid,
            funding_account_id=data["from"],
            amount=data["amount"],
            idempotency_key=request_idempotency_key(request, data.get("idempotencyKey")),
            expire_to_account_id=data.get("expireTo"),
            effective_at=data.get("effectiveAt"),
            expires_at=data.get("expiresAt"),
            priority=data["priority"],
            description=data.get("description"),
            metadata=data["metadata"],
            owner=request_owner(request),
        )
        return _grant_response(outcome, status.HTTP_201_CREATED)

    @extend_schema(
        tags=["grants"],
        operation_id="grants_list",
        summary="The account's grants, in burn order (those it can no longer draw from last)",
        parameters=[_ACCOUNT_ID_PARAMETER, GrantQuerySerializer],
        responses={200: GrantListOutputSerializer, **problem_responses(400, 404)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        params = query_params_validate(request, self.GrantQuerySerializer)
        account = account_get(account_id=account_uuid)
        grants = selectors.grant_list(account_id=account.id, status=params.get("status"))
        return Response({"accountId": str(account.id), "data": GrantOutputSerializer(grants, many=True).data})


class GrantDetailApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ}

    @extend_schema(
        tags=["grants"],
        operation_id="grants_retrieve",
        summary="One grant, with its history",
        parameters=[_GRANT_ID_PARAMETER],
        responses={200: GrantDetailOutputSerializer, **problem_responses(400, 404)},
    )
    def get(self, request, grant_id: str):
        grant_uuid = parse_path_id(grant_id, errors.GrantNotFound, "grant")
        query_params_validate(request, NoQueryParameters)
        return Response(GrantDetailOutputSerializer(selectors.grant_get(grant_id=grant_uuid)).data)


class GrantVoidApi(APIView):
    required_scopes = {"POST": GRANTS_WRITE}

    class GrantVoidInputSerializer(StrictInputSerializer):
        idempotencyKey = IdempotencyKeyField(
            required=False, help_text="Required here or in the Idempotency-Key header."
        )
        description = StrictCharField(required=False, allow_null=True, max_length=DESCRIPTION_MAX_LENGTH)

    @extend_schema(
        tags=["grants"],
        operation_id="grants_void",
        summary="Void a grant: its unconsumed, unreserved remainder goes back to the funding account",
        description="What was consumed stays consumed; what holds reserve of it goes back when they release it. "
        "A grant that has expired or was voided gets 409 grant_not_active. Exactly once per idempotency key.",
        request=GrantVoidInputSerializer,
        parameters=[_GRANT_ID_PARAMETER, IDEMPOTENCY_PARAMETER],
        responses={200: GrantOutputSerializer, **problem_responses(400, 404, 409, 413, 503)},
    )
    def post(self, request, grant_id: str):
        grant_uuid = parse_path_id(grant_id, errors.GrantNotFound, "grant")
        query_params_validate(request, NoQueryParameters)
        data = input_validate(self.GrantVoidInputSerializer, request.data)
        outcome = services.grant_void(
            grant_id=grant_uuid,
            idempotency_key=request_idempotency_key(request, data.get("idempotencyKey")),
            description=data.get("description"),
            owner=request_owner(request),
        )
        return _grant_response(outcome, status.HTTP_200_OK)


class ExplanationGrantSerializer(serializers.Serializer):
    grantId = serializers.UUIDField(source="grant_id")
    description = serializers.CharField(allow_null=True)
    priority = serializers.IntegerField()
    effectiveAt = serializers.DateTimeField(source="effective_at")
    expiresAt = serializers.DateTimeField(source="expires_at", allow_null=True)
    status = serializers.CharField()
    granted = serializers.IntegerField()
    consumed = serializers.IntegerField()
    reserved = serializers.IntegerField()
    expired = serializers.IntegerField()
    voided = serializers.IntegerField()
    remaining = serializers.IntegerField()


class DrawnSerializer(serializers.Serializer):
    grantId = serializers.UUIDField()
    description = serializers.CharField(allow_null=True)
    amount = serializers.IntegerField()


class ExplanationChangeSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="When it happened (an expiry: the grant's expiresAt).")
    kind = serializers.CharField(help_text="grant, usage, hold, post, void, expiry, reversal or transfer.")
    amount = serializers.IntegerField(help_text="Change of the balance; 0 for a hold and its release.")
    balanceAfter = serializers.IntegerField(source="balance_after")
    transferId = serializers.UUIDField(source="transfer_id")
    description = serializers.CharField(allow_null=True)
    grants = DrawnSerializer(many=True, help_text="A debit: the grants it drew from. A reversal: those it restored.")
    held = serializers.IntegerField(help_text="A hold: what it reserved (-); its void or expiry: what it released.")


class ExpiringSoonSerializer(serializers.Serializer):
    amount = serializers.IntegerField(source="expiring_amount")
    at = serializers.DateTimeField(source="expiring_at")


class ExplanationOutputSerializer(serializers.Serializer):
    accountId = serializers.UUIDField(source="account_id")
    currency = serializers.CharField()
    since = serializers.DateTimeField(help_text="The start of the changes (moved up when `limited`).")
    asOf = serializers.DateTimeField(source="as_of")
    openingBalance = serializers.IntegerField(source="opening_balance", help_text="The balance at since.")
    balance = serializers.IntegerField(help_text="The balance at asOf: the grants' parts plus unrestricted.")
    grants = ExplanationGrantSerializer(many=True)
    unrestricted = serializers.IntegerField(help_text="The part of the balance in no grant; burns last.")
    changes = ExplanationChangeSerializer(many=True)
    summary = serializers.ListField(child=serializers.CharField())
    expiringSoon = serializers.SerializerMethodField()
    limited = serializers.BooleanField(
        help_text="true: the window held more than `limit` entries; `since` was moved to just before the latest ones."
    )

    def get_expiringSoon(self, explanation) -> dict | None:
        if explanation.expiring_at is None:
            return None
        return ExpiringSoonSerializer(explanation).data


class AccountExplanationApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ}

    class ExplanationQuerySerializer(StrictInputSerializer):
        since = InstantField(required=False, help_text="Changes after this instant; default: 30 days before asOf.")
        asOf = InstantField(required=False, help_text="The balance at this instant; default: now.")
        limit = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=MAX_CHANGES,
            default=DEFAULT_CHANGES,
            help_text="At most this many entries: with more in the window, the latest are explained, `since` moves "
            "to just before them and `limited` is true (ask again with asOf at that since for the earlier ones).",
        )

    @extend_schema(
        tags=["grants"],
        operation_id="accounts_explain",
        summary='Why the account has this balance: "41 on Nov 1 → 37 now"',
        description="The balance at asOf split into its grants and its unrestricted part; every change between "
        "since and asOf in order with the balance after it, its kind and description and the grants a debit drew "
        "from; and sentences a support agent can read out. Read from the ledger; the balance at since plus the "
        "changes is always the balance at asOf.",
        parameters=[_ACCOUNT_ID_PARAMETER, ExplanationQuerySerializer],
        responses={200: ExplanationOutputSerializer, **problem_responses(400, 404)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        params = query_params_validate(request, self.ExplanationQuerySerializer)
        explanation = account_explanation(
            account_id=account_uuid, since=params.get("since"), as_of=params.get("asOf"), limit=params["limit"]
        )
        return Response(ExplanationOutputSerializer(explanation).data)
