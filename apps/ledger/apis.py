from uuid import UUID

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.selectors import account_get
from apps.ledger import selectors, services
from apps.ledger.models import TransferStatus
from apps.projections import selectors as projections
from apps.projections.consistency import TOKEN_HEADER, consistency_token_for, consistency_token_parse
from creditledger import errors
from creditledger.api.fields import (
    IDEMPOTENCY_KEY_SCHEMA,
    CurrencyCodeField,
    CursorField,
    IdempotencyKeyField,
    MetadataField,
    MinorUnitsField,
    OverdraftLimitField,
    UUIDStringField,
    encode_cursor,
    page_serializer,
)
from creditledger.api.ids import parse_path_id
from creditledger.api.schema import problem_responses
from creditledger.api.serializers import (
    NoQueryParameters,
    PageQuerySerializer,
    StrictInputSerializer,
    keyword_fields,
    query_params_validate,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

_ACCOUNT_ID_PARAMETER = OpenApiParameter("account_id", str, OpenApiParameter.PATH, description="Account id (UUID).")
_CONSISTENCY_HEADER_PARAMETER = OpenApiParameter(
    TOKEN_HEADER, str, OpenApiParameter.HEADER, required=False, description="Same as consistencyToken."
)


class ConsistencyQuerySerializer(StrictInputSerializer):
    consistencyToken = serializers.CharField(
        required=False, allow_blank=True,
        help_text="From a POST /transfers answer: wait (up to 2 s) until the read model includes that write, else 503.",
    )


class EntryOutputSerializer(serializers.Serializer):
    entryId = serializers.UUIDField(source="id")
    accountId = serializers.UUIDField(source="account_id")
    amount = serializers.IntegerField(help_text="Signed minor units: negative debits, positive credits.")
    sequence = serializers.IntegerField(help_text="Gapless per-account sequence number.")
    balanceAfter = serializers.IntegerField(source="balance_after")


class StatementLineSerializer(serializers.Serializer):
    entryId = serializers.UUIDField(source="entry_id")
    transferId = serializers.UUIDField(source="transfer_id")
    sequence = serializers.IntegerField()
    amount = serializers.IntegerField(help_text="Signed minor units: negative debits, positive credits.")
    side = serializers.ChoiceField(choices=["debit", "credit"])
    balanceAfter = serializers.IntegerField(source="balance_after")
    counterparty = serializers.UUIDField(source="counterparty_id")
    createdAt = serializers.DateTimeField(source="created_at")


@keyword_fields(
    transferId=serializers.UUIDField(source="id"),
    **{"from": serializers.UUIDField(source="from_account_id")},
)
class TransferOutputSerializer(serializers.Serializer):
    """The transfer document (ledger_transfer_document in sql/0004_post_transfer.sql); a test
    checks real answers against this schema."""

    to = serializers.UUIDField(source="to_account_id")
    amount = serializers.IntegerField()
    currency = serializers.CharField(source="currency_id")
    status = serializers.ChoiceField(choices=TransferStatus.choices)
    idempotencyKey = serializers.CharField(source="idempotency_key")
    metadata = MetadataField()
    createdAt = serializers.DateTimeField(source="created_at")
    entries = EntryOutputSerializer(many=True, source="entries.all")


class PostedTransferOutputSerializer(TransferOutputSerializer):
    consistencyToken = serializers.CharField(
        help_text="Pass to a balance or statement read (query or Consistency-Token header) to read your write."
    )


class ProjectedEntrySerializer(serializers.Serializer):
    entryId = serializers.UUIDField()
    accountId = serializers.UUIDField()
    amount = serializers.IntegerField()
    sequence = serializers.IntegerField()
    balanceAfter = serializers.IntegerField()


@keyword_fields(
    transferId=serializers.UUIDField(source="transfer_id"),
    **{"from": serializers.UUIDField(source="from_account_id")},
)
class TransferListItemSerializer(serializers.Serializer):
    """A transfer as the read model has it: the same shape as TransferOutput."""

    to = serializers.UUIDField(source="to_account_id")
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=TransferStatus.choices)
    idempotencyKey = serializers.CharField(source="idempotency_key")
    metadata = MetadataField()
    createdAt = serializers.DateTimeField(source="created_at")
    entries = ProjectedEntrySerializer(many=True)


class ConsistencySerializer(serializers.Serializer):
    projectedSequence = serializers.IntegerField(
        source="projected_sequence", help_text="Latest entry of this account the read model has applied."
    )
    ledgerSequence = serializers.IntegerField(source="ledger_sequence", help_text="Latest entry of this account in the ledger.")
    upToDate = serializers.BooleanField(source="up_to_date")


class TransferListCreateApi(APIView):

    @keyword_fields(**{"from": UUIDStringField(help_text="Account debited.")})
    class TransferCreateInputSerializer(StrictInputSerializer):
        to = UUIDStringField(help_text="Account credited.")
        amount = MinorUnitsField(help_text="Positive integer in the currency's minor units (1234 = 12.34 USD).")
        currency = CurrencyCodeField()
        idempotencyKey = IdempotencyKeyField(
            required=False,
            help_text="Required here or in the Idempotency-Key header. Same key + same body replays the first answer.",
        )
        metadata = MetadataField(required=False, default=dict)

    @keyword_fields(
        **{
            "from": serializers.DateTimeField(required=False, help_text="Created at or after (ISO 8601)."),
            "to": serializers.DateTimeField(required=False, help_text="Created before (ISO 8601)."),
        }
    )
    class TransferListQuerySerializer(PageQuerySerializer):
        account = serializers.UUIDField(required=False, help_text="Transfers debiting or crediting this account.")
        status = serializers.ChoiceField(choices=TransferStatus.choices, required=False)
        currency = CurrencyCodeField(required=False)

    TransferPageSerializer = page_serializer(TransferListItemSerializer, "TransferPage")

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_create",
        summary="Post a transfer (exactly once per idempotency key)",
        request=TransferCreateInputSerializer,
        parameters=[
            OpenApiParameter(IDEMPOTENCY_HEADER, dict(IDEMPOTENCY_KEY_SCHEMA), OpenApiParameter.HEADER, required=False,
                             description="Alternative to the idempotencyKey body field, with the same rules."),
        ],
        responses={
            201: OpenApiResponse(
                PostedTransferOutputSerializer,
                description="Posted. A replay of an earlier request carries the header Idempotent-Replayed: true.",
            ),
            **problem_responses(400, 404, 409, 413, 422, 503),
        },
        examples=[
            OpenApiExample(
                "Seed walkthrough",
                value={"from": "0193a1b2-0000-7000-8000-00000000000a", "to": "0193a1b2-0000-7000-8000-00000000000b",
                       "amount": 1234, "currency": "USD", "idempotencyKey": "demo-1"},
                request_only=True,
            ),
        ],
    )
    def post(self, request):
        serializer = self.TransferCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        outcome = services.transfer_create(
            idempotency_key=_idempotency_key(request, data.get("idempotencyKey")),
            from_account_id=data["from"],
            to_account_id=data["to"],
            amount=data["amount"],
            currency=data["currency"],
            metadata=data["metadata"],
        )
        token = consistency_token_for(
            (UUID(entry["accountId"]), entry["sequence"]) for entry in outcome.document["entries"]
        )
        body = {**outcome.document, "consistencyToken": token}
        headers = {TOKEN_HEADER: token}
        if outcome.replayed:
            headers[REPLAYED_HEADER] = "true"
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_list",
        summary="List transfers, newest first (read model)",
        parameters=[TransferListQuerySerializer],
        responses={200: TransferPageSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request):
        params = query_params_validate(request, self.TransferListQuerySerializer)
        page = projections.projected_transfer_list(
            account_id=params.get("account"),
            created_from=params.get("from"),
            created_to=params.get("to"),
            status=params.get("status"),
            currency=params.get("currency"),
            after=params.get("cursor"),
            limit=params["limit"],
        )
        return Response({
            "data": TransferListItemSerializer(page.items, many=True).data,
            "nextCursor": encode_cursor(page.next_after),
        })


class TransferDetailApi(APIView):
    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_retrieve",
        summary="Fetch a transfer with its entries",
        parameters=[OpenApiParameter("transfer_id", str, OpenApiParameter.PATH, description="Transfer id (UUID).")],
        responses={200: TransferOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, transfer_id: str):
        transfer_uuid = parse_path_id(transfer_id, errors.TransferNotFound, "transfer")
        query_params_validate(request, NoQueryParameters)
        return Response(selectors.transfer_document(transfer_id=transfer_uuid))


class AccountBalanceApi(APIView):
    class BalanceOutputSerializer(serializers.Serializer):
        accountId = serializers.UUIDField(source="account_id")
        currency = serializers.CharField()
        balance = serializers.IntegerField(help_text="Posted balance in minor units; negative when overdrawn.")
        available = serializers.IntegerField(
            allow_null=True, help_text="What may still be debited: balance + overdraftLimit; null when unlimited."
        )
        overdraftLimit = OverdraftLimitField(source="overdraft_limit")
        lastSequence = serializers.IntegerField(source="projected_sequence", help_text="Sequence of the latest entry included.")
        updatedAt = serializers.DateTimeField(source="updated_at", allow_null=True, help_text="When that entry was posted.")
        consistency = ConsistencySerializer(source="*")

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_balance",
        summary="Current balance (read model; pass a consistency token to read your writes)",
        parameters=[_ACCOUNT_ID_PARAMETER, ConsistencyQuerySerializer, _CONSISTENCY_HEADER_PARAMETER],
        responses={200: BalanceOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        params = query_params_validate(request, ConsistencyQuerySerializer)
        projections.projection_wait(account_id=account_uuid, sequence=_required_sequence(request, params, account_uuid))
        balance = projections.projected_balance(account_id=account_uuid)
        return Response(self.BalanceOutputSerializer(balance).data)


class AccountStatementApi(APIView):
    @keyword_fields(
        **{
            "from": serializers.DateTimeField(required=False, help_text="Entries at or after (ISO 8601)."),
            "to": serializers.DateTimeField(required=False, help_text="Entries before (ISO 8601)."),
        }
    )
    class StatementQuerySerializer(PageQuerySerializer, ConsistencyQuerySerializer):
        cursor = CursorField(position_type=int, required=False, help_text="`nextCursor` from the previous page.")

    class StatementOutputSerializer(serializers.Serializer):
        accountId = serializers.UUIDField()
        currency = serializers.CharField()
        data = StatementLineSerializer(many=True)
        nextCursor = serializers.CharField(allow_null=True)

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_statement",
        summary="Statement: entries in sequence order with running balance (read model)",
        parameters=[_ACCOUNT_ID_PARAMETER, StatementQuerySerializer, _CONSISTENCY_HEADER_PARAMETER],
        responses={200: StatementOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        params = query_params_validate(request, self.StatementQuerySerializer)
        account = account_get(account_id=account_uuid)
        projections.projection_wait(account_id=account_uuid, sequence=_required_sequence(request, params, account_uuid))
        page = projections.projected_statement_lines(
            account=account,
            created_from=params.get("from"),
            created_to=params.get("to"),
            after_sequence=params.get("cursor"),
            limit=params["limit"],
        )
        return Response({
            "accountId": str(account.id),
            "currency": account.currency_id,
            "data": StatementLineSerializer(page.items, many=True).data,
            "nextCursor": encode_cursor(page.next_after),
        })


def _idempotency_key(request, body_key: str | None) -> str:
    header_key = _header_idempotency_key(request)
    if body_key and header_key and body_key != header_key:
        raise errors.InvalidRequest("idempotencyKey and the Idempotency-Key header differ.", field="idempotencyKey")
    key = body_key or header_key
    if not key:
        raise errors.InvalidRequest(
            "idempotencyKey is required (body field or Idempotency-Key header).", field="idempotencyKey"
        )
    return key


def _header_idempotency_key(request) -> str | None:
    """The Idempotency-Key header, held to the rules of the idempotencyKey body field."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    try:
        return IdempotencyKeyField().run_validation(raw)
    except serializers.ValidationError as exc:
        message = f"The {IDEMPOTENCY_HEADER} header: {' '.join(exc.detail)}"
        raise errors.InvalidRequest(message, field=IDEMPOTENCY_HEADER) from None


def _required_sequence(request, params: dict, account_id) -> int | None:
    """The entry sequence of `account_id` the caller's consistency token asks for, if any."""
    raw = params.get("consistencyToken") or request.headers.get(TOKEN_HEADER)
    if not raw:
        return None
    return consistency_token_parse(raw).get(account_id)
