import contextlib
from typing import Any
from uuid import UUID

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.consistency import TOKEN_HEADER, TOKEN_MAX_LENGTH, consistency_token_for
from apps.ledger import selectors, services
from apps.ledger.models import DESCRIPTION_MAX_LENGTH, MAX_POSTINGS, TransferStatus
from apps.projections import selectors as projections
from creditledger import errors
from creditledger.actor import ACTOR_PATTERN, api_key_actor
from creditledger.api.exception_handler import batch_item_problem
from creditledger.api.fields import (
    IDEMPOTENCY_KEY_SCHEMA,
    CurrencyCodeField,
    IdempotencyKeyField,
    InstantField,
    MetadataField,
    MinorUnitsField,
    StrictBooleanField,
    StrictCharField,
    UUIDStringField,
)
from creditledger.api.ids import parse_path_id
from creditledger.api.pages import page_response, page_serializer
from creditledger.api.parsers import LargeJSONParser
from creditledger.api.schema import ProblemSerializer, problem_responses
from creditledger.api.scopes import TRANSFERS_READ, TRANSFERS_WRITE
from creditledger.api.serializers import (
    NoQueryParameters,
    PageQuerySerializer,
    StrictInputSerializer,
    input_validate,
    keyword_fields,
    query_params_validate,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
_TRANSFER_ID_PARAMETER = OpenApiParameter("transfer_id", str, OpenApiParameter.PATH, description="Transfer id (UUID).")
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    dict(IDEMPOTENCY_KEY_SCHEMA),
    OpenApiParameter.HEADER,
    required=False,
    description="Alternative to the idempotencyKey body field, with the same rules.",
)
REPLAYED_HEADER = "Idempotent-Replayed"


class EntryOutputSerializer(serializers.Serializer):
    entryId = serializers.UUIDField(source="id")
    accountId = serializers.UUIDField(source="account_id")
    amount = serializers.IntegerField(help_text="Signed minor units: negative debits, positive credits.")
    sequence = serializers.IntegerField(help_text="Gapless per-account sequence number.")
    balanceAfter = serializers.IntegerField(source="balance_after")


@keyword_fields(**{"from": serializers.UUIDField(help_text="Account debited.")})
class PostingOutputSerializer(serializers.Serializer):
    to = serializers.UUIDField(help_text="Account credited.")
    amount = serializers.IntegerField(help_text="Positive, in the currency's minor units.")
    currency = serializers.CharField()


_ONE_POSTING = "The transfer's posting when it has exactly one; null when it has several (see postings)."
_ENTRIES = "Posting by posting, each debit first: entries 2i and 2i+1 are postings[i]."
_DESCRIPTION_HELP = f"Why the money moved, for people (at most {DESCRIPTION_MAX_LENGTH} characters); immutable."
_REVERSAL_OF = "The transfer this one reverses (POST /transfers/{id}/reverse); null for any other transfer."
_REVERSED_AMOUNT = (
    "How much of this transfer its reversals have moved back: the sum of their postings' amounts; 0 if none. "
    "It only grows, up to the sum of this transfer's postings' amounts (for a hold posted in part, what was posted)."
)


@keyword_fields(
    transferId=serializers.UUIDField(source="id"),
    **{"from": serializers.UUIDField(source="from_account_id", allow_null=True, help_text=_ONE_POSTING)},
)
class TransferOutputSerializer(serializers.Serializer):
    """The transfer document (ledger_transfer_document, sql/functions/ledger_transfer_document.v4.sql);
    a test checks real answers against this schema."""

    to = serializers.UUIDField(source="to_account_id", allow_null=True, help_text=_ONE_POSTING)
    amount = serializers.IntegerField(allow_null=True, help_text=_ONE_POSTING)
    currency = serializers.CharField(source="currency_id", allow_null=True, help_text=_ONE_POSTING)
    status = serializers.ChoiceField(choices=TransferStatus.choices)
    idempotencyKey = serializers.CharField(source="idempotency_key")
    metadata = MetadataField()
    description = serializers.CharField(allow_null=True, help_text=_DESCRIPTION_HELP)
    reversalOf = serializers.UUIDField(source="reversal_of_id", allow_null=True, help_text=_REVERSAL_OF)
    reversedAmount = serializers.IntegerField(source="reversed_amount", min_value=0, help_text=_REVERSED_AMOUNT)
    createdAt = serializers.DateTimeField(source="created_at")
    expiresAt = serializers.DateTimeField(
        source="expires_at", allow_null=True, help_text="A hold's expiry; null for a transfer that is no hold, or none."
    )
    held = PostingOutputSerializer(
        many=True, allow_null=True, help_text="A hold's postings as held (null for a transfer that is no hold)."
    )
    postings = PostingOutputSerializer(
        many=True,
        help_text="One or more, in the order they were posted: what was posted, or while pending (or voided, "
        "expired) what is held.",
    )
    entries = EntryOutputSerializer(
        many=True, source="entries.all", help_text=_ENTRIES + " Empty unless the transfer is posted."
    )


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
    **{"from": serializers.UUIDField(source="from_account_id", allow_null=True, help_text=_ONE_POSTING)},
)
class TransferListItemSerializer(serializers.Serializer):
    """A transfer as the read model has it: the same shape as TransferOutput."""

    to = serializers.UUIDField(source="to_account_id", allow_null=True, help_text=_ONE_POSTING)
    amount = serializers.IntegerField(allow_null=True, help_text=_ONE_POSTING)
    currency = serializers.CharField(allow_null=True, help_text=_ONE_POSTING)
    status = serializers.ChoiceField(choices=TransferStatus.choices)
    idempotencyKey = serializers.CharField(source="idempotency_key")
    metadata = MetadataField()
    description = serializers.CharField(allow_null=True, help_text=_DESCRIPTION_HELP)
    reversalOf = serializers.UUIDField(source="reversal_of", allow_null=True, help_text=_REVERSAL_OF)
    reversedAmount = serializers.IntegerField(source="reversed_amount", min_value=0, help_text=_REVERSED_AMOUNT)
    createdAt = serializers.DateTimeField(source="created_at")
    postings = PostingOutputSerializer(many=True)
    entries = ProjectedEntrySerializer(many=True, help_text=_ENTRIES)


@keyword_fields(**{"from": UUIDStringField(help_text="Account debited.")})
class PostingInputSerializer(StrictInputSerializer):
    to = UUIDStringField(help_text="Account credited.")
    amount = MinorUnitsField(help_text="Positive integer in the currency's minor units (1234 = 12.34 USD).")
    currency = CurrencyCodeField()


class TransferInputSerializer(StrictInputSerializer):
    """What both forms of POST /transfers share."""

    idempotencyKey = IdempotencyKeyField(
        required=False,
        help_text="Required here or in the Idempotency-Key header. Same key + same body replays the first answer.",
    )
    metadata = MetadataField(required=False, default=dict)
    description = StrictCharField(
        required=False, allow_null=True, max_length=DESCRIPTION_MAX_LENGTH, help_text=_DESCRIPTION_HELP
    )
    pending = StrictBooleanField(
        required=False,
        default=False,
        help_text="true: a hold. It reserves the amounts (no entries, status pending) until POST "
        "/transfers/{id}/post or /void, or its expiry.",
    )
    expiresAt = InstantField(
        required=False, help_text="With pending: when the hold expires (RFC 3339 with offset, in the future)."
    )
    timeoutSeconds = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=services.MAX_HOLD_SECONDS,
        help_text="With pending: the hold expires this many seconds from now. Not with expiresAt.",
    )

    def validate(self, attrs):
        if not attrs["pending"]:
            given = [name for name in ("expiresAt", "timeoutSeconds") if name in attrs]
            if given:
                raise serializers.ValidationError({name: ["Only a hold (pending: true) expires."] for name in given})
        elif "expiresAt" in attrs and "timeoutSeconds" in attrs:
            raise serializers.ValidationError({"timeoutSeconds": ["Give expiresAt or timeoutSeconds, not both."]})
        return attrs


@keyword_fields(**{"from": UUIDStringField(help_text="Account debited.")})
class SingleTransferInputSerializer(TransferInputSerializer):
    """The seed's form: one posting, given by its own fields."""

    to = UUIDStringField(help_text="Account credited.")
    amount = MinorUnitsField(help_text="Positive integer in the currency's minor units (1234 = 12.34 USD).")
    currency = CurrencyCodeField()


class MultiLegTransferInputSerializer(TransferInputSerializer):
    """Postings moved together, all or none, in any mix of currencies."""

    postings = serializers.ListField(
        child=PostingInputSerializer(),
        allow_empty=False,
        min_length=1,
        max_length=MAX_POSTINGS,
        help_text=f"1 to {MAX_POSTINGS} postings, each checked as a single transfer; refusals name "
        "postings[i].<field>. Each account's balance after all of its postings must be within its overdraft.",
    )

    def to_internal_value(self, data):
        if isinstance(data, dict):
            single = [name for name in ("from", "to", "amount", "currency") if name in data]
            if single:
                raise serializers.ValidationError(
                    {name: ["Give postings, or from, to, amount and currency: not both."] for name in single}
                )
        return super().to_internal_value(data)


def _transfer_create_schema(**kwargs: Any) -> PolymorphicProxySerializer:
    """The OpenAPI body of POST /transfers, in any form it accepts (a batch item is the same)."""
    return PolymorphicProxySerializer(
        component_name="TransferCreate",
        serializers=[SingleTransferInputSerializer, MultiLegTransferInputSerializer],
        resource_type_field_name=None,
        **kwargs,
    )


@extend_schema_field(_transfer_create_schema(many=True))
class TransferRequestListField(serializers.ListField):
    """Batch items, each a POST /transfers body; transfer_request_parse checks each one."""

    child = serializers.JSONField()


class TransferBatchInputSerializer(StrictInputSerializer):
    """Up to 1,000 POST /transfers bodies, posted atomically or each on its own."""

    atomic = StrictBooleanField(
        help_text="true: all are posted or none is (one refusal is a 422 for the batch). false: each on its own."
    )
    transfers = TransferRequestListField(
        min_length=1,
        max_length=services.MAX_BATCH_TRANSFERS,
        help_text=f"1 to {services.MAX_BATCH_TRANSFERS} POST /transfers bodies, each with its own idempotencyKey.",
    )


class TransferBatchItemSerializer(serializers.Serializer):
    status = serializers.IntegerField(
        help_text="What POST /transfers would answer for this item: 201, or the problem's."
    )
    transfer = PostedTransferOutputSerializer(required=False, help_text="With status 201.")
    problem = ProblemSerializer(required=False, help_text="With any other status: the problem+json body.")
    replayed = serializers.BooleanField(
        required=False, help_text="true when the item's key already held this outcome (Idempotent-Replayed)."
    )


class TransferBatchOutputSerializer(serializers.Serializer):
    atomic = serializers.BooleanField()
    results = TransferBatchItemSerializer(many=True, help_text="One per transfer, in the request's order.")
    consistencyToken = serializers.CharField(
        allow_null=True,
        help_text="Covers every transfer the batch posted or replayed; null when they touched too many accounts "
        "for one token (then use each transfer's own consistencyToken).",
    )


class TransferBatchRefusedItemSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=["refused", "rolled_back", "replayed"],
        help_text="refused: see problem. rolled_back: it would have been posted; nothing was written. "
        "replayed: its key already holds this transfer, which stays as it was.",
    )
    status = serializers.IntegerField(required=False, help_text="With refused: the problem's status.")
    problem = ProblemSerializer(required=False, help_text="With refused: the problem+json body.")
    replayed = serializers.BooleanField(required=False, help_text="With refused: the key's stored refusal.")


class TransferBatchRefusedSerializer(ProblemSerializer):
    results = TransferBatchRefusedItemSerializer(many=True, help_text="One per transfer, in the request's order.")


class TransferListCreateApi(APIView):
    required_scopes = {"GET": TRANSFERS_READ, "POST": TRANSFERS_WRITE}

    @keyword_fields(
        **{
            "from": serializers.DateTimeField(
                required=False, source="created_from", help_text="Created at or after (ISO 8601)."
            ),
            "to": serializers.DateTimeField(
                required=False, source="created_to", help_text="Created before (ISO 8601)."
            ),
        }
    )
    class TransferListQuerySerializer(PageQuerySerializer):
        account = serializers.UUIDField(
            required=False, source="account_id", help_text="Transfers debiting or crediting this account."
        )
        status = serializers.ChoiceField(choices=TransferStatus.choices, required=False)
        currency = CurrencyCodeField(required=False)
        actor = serializers.CharField(
            required=False,
            max_length=160,
            help_text="Transfers created by this actor: key:<API key id> (the UUID, with or without dashes, as "
            "printed in the key), user:<admin username>, anonymous (no key, LEDGER_AUTH=off), system (the ledger's "
            "own bookings) or unrecorded (from before actors were recorded).",
        )

        def validate_actor(self, value: str) -> str:
            kind, _, key_id = value.partition(":")
            if kind == "key":
                with contextlib.suppress(ValueError):  # else not an actor, below
                    value = api_key_actor(UUID(key_id))
            if not ACTOR_PATTERN.fullmatch(value):
                raise serializers.ValidationError(
                    "Not an actor: key:<API key id, a UUID>, user:<name>, anonymous, system or unrecorded."
                )
            return value

    TransferPageSerializer = page_serializer(TransferListItemSerializer, "TransferPage")

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_create",
        summary="Post a transfer of one or more postings (exactly once per idempotency key)",
        description="Either the single form (from, to, amount, currency) or postings: 1 to "
        f"{MAX_POSTINGS} postings in any mix of currencies, posted together or not at all. Giving both, or "
        "neither, is a 400.",
        request=_transfer_create_schema(),
        parameters=[
            IDEMPOTENCY_PARAMETER,
        ],
        responses={
            201: OpenApiResponse(
                PostedTransferOutputSerializer,
                description="Posted, or held (pending: true). A replay of an earlier request carries the header "
                "Idempotent-Replayed: true.",
            ),
            **problem_responses(400, 404, 409, 413, 422, 503),
        },
        examples=[
            OpenApiExample(
                "Seed walkthrough",
                value={
                    "from": "0193a1b2-0000-7000-8000-00000000000a",
                    "to": "0193a1b2-0000-7000-8000-00000000000b",
                    "amount": 1234,
                    "currency": "USD",
                    "idempotencyKey": "demo-1",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Buy 1,000 CREDITS for 10 USD",
                description="The buyer pays 10.00 USD and receives 1,000 CREDITS, or neither happens.",
                value={
                    "postings": [
                        {
                            "from": "0193a1b2-0000-7000-8000-00000000000a",
                            "to": "0193a1b2-0000-7000-8000-00000000000b",
                            "amount": 1000,
                            "currency": "USD",
                        },
                        {
                            "from": "0193a1b2-0000-7000-8000-00000000000c",
                            "to": "0193a1b2-0000-7000-8000-00000000000d",
                            "amount": 1000,
                            "currency": "CREDITS",
                        },
                    ],
                    "description": "Buy 1,000 CREDITS for 10 USD",
                    "idempotencyKey": "order-1042",
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request):
        outcome = services.transfer_post(
            request=transfer_request_parse(
                request.data, header_key=_header_idempotency_key(request), owner=request_owner(request)
            )
        )
        return _outcome_response(outcome, status.HTTP_201_CREATED)

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_list",
        summary="List transfers, newest first (read model)",
        parameters=[TransferListQuerySerializer],
        responses={200: TransferPageSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request):
        params = query_params_validate(request, self.TransferListQuerySerializer)
        return page_response(projections.projected_transfer_list(**params), TransferListItemSerializer)


class HoldCommandInputSerializer(StrictInputSerializer):
    idempotencyKey = IdempotencyKeyField(
        required=False,
        help_text="Required here or in the Idempotency-Key header; its own key, not the transfer's. Same key + same "
        "body replays the first answer.",
    )


class HoldPostInputSerializer(HoldCommandInputSerializer):
    amount = MinorUnitsField(
        required=False,
        help_text="Post less than held (a hold of one posting only; the rest is released). Default: all of it.",
    )


_NOT_PENDING = (
    " A transfer that is not pending (posted, voided, expired, or past its expiresAt) is a 409 transfer_not_pending "
    "with its status in transferStatus."
)


class TransferPostApi(APIView):
    required_scopes = {"POST": TRANSFERS_WRITE}

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_post_hold",
        summary="Post a pending transfer (all of its hold, or less)",
        description="The hold becomes a posted transfer with its entries. An amount above the held one is a 422 "
        "amount_exceeds_hold; an amount for a hold of several postings is a 400." + _NOT_PENDING,
        parameters=[_TRANSFER_ID_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=HoldPostInputSerializer,
        responses={
            200: OpenApiResponse(PostedTransferOutputSerializer, description="Posted (or a replay, flagged)."),
            **problem_responses(400, 404, 409, 413, 422, 503),
        },
    )
    def post(self, request, transfer_id: str):
        transfer_uuid = parse_path_id(transfer_id, errors.TransferNotFound, "transfer")
        query_params_validate(request, NoQueryParameters)
        data = input_validate(HoldPostInputSerializer, request.data)
        outcome = services.hold_post(
            transfer_id=transfer_uuid,
            idempotency_key=request_idempotency_key(request, data.get("idempotencyKey")),
            amount=data.get("amount"),
            owner=request_owner(request),
        )
        return _outcome_response(outcome, status.HTTP_200_OK)


class TransferVoidApi(APIView):
    required_scopes = {"POST": TRANSFERS_WRITE}

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_void_hold",
        summary="Void a pending transfer: release its hold",
        description="The transfer becomes voided; nothing moves." + _NOT_PENDING,
        parameters=[_TRANSFER_ID_PARAMETER, IDEMPOTENCY_PARAMETER],
        request=HoldCommandInputSerializer,
        responses={
            200: OpenApiResponse(PostedTransferOutputSerializer, description="Voided (or a replay, flagged)."),
            **problem_responses(400, 404, 409, 413, 503),
        },
    )
    def post(self, request, transfer_id: str):
        transfer_uuid = parse_path_id(transfer_id, errors.TransferNotFound, "transfer")
        query_params_validate(request, NoQueryParameters)
        data = input_validate(HoldCommandInputSerializer, request.data)
        outcome = services.hold_void(
            transfer_id=transfer_uuid,
            idempotency_key=request_idempotency_key(request, data.get("idempotencyKey")),
            owner=request_owner(request),
        )
        return _outcome_response(outcome, status.HTTP_200_OK)


def _outcome_response(outcome: services.TransferOutcome, status_code: int) -> Response:
    body = _posted_body(outcome)
    headers = {TOKEN_HEADER: body["consistencyToken"]}
    if outcome.replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(body, status=status_code, headers=headers)


class TransferBatchApi(APIView):
    required_scopes = {"POST": TRANSFERS_WRITE}
    parser_classes = [LargeJSONParser]

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_batch_create",
        summary=f"Post up to {services.MAX_BATCH_TRANSFERS} transfers in one call, atomically or each on its own",
        description="Each item is a POST /transfers body in any form it accepts, with its own idempotencyKey "
        "(the batch has no key; an Idempotency-Key header is a 400). Any invalid item, an unknown currency or "
        "two items with one key make the whole request a 400 naming transfers[i].<field>, and nothing is "
        "posted. atomic=false: 200 with one result per item, in order, each as POST /transfers would answer "
        "it. atomic=true: 200 when every item is posted or replayed; else 422 batch_refused with one result per "
        "item (refused with its problem, rolled_back, or replayed), and nothing is written.",
        request=TransferBatchInputSerializer,
        responses={
            200: TransferBatchOutputSerializer,
            **problem_responses(400, 413, 503),
            (422, "application/problem+json"): OpenApiResponse(
                TransferBatchRefusedSerializer,
                description="atomic=true and at least one transfer was refused: nothing was written.",
            ),
        },
        examples=[
            OpenApiExample(
                "Pay two invoices, all or nothing",
                value={
                    "atomic": True,
                    "transfers": [
                        {
                            "from": "0193a1b2-0000-7000-8000-00000000000a",
                            "to": "0193a1b2-0000-7000-8000-00000000000b",
                            "amount": 1234,
                            "currency": "USD",
                            "idempotencyKey": "invoice-1",
                        },
                        {
                            "from": "0193a1b2-0000-7000-8000-00000000000a",
                            "to": "0193a1b2-0000-7000-8000-00000000000c",
                            "amount": 500,
                            "currency": "USD",
                            "idempotencyKey": "invoice-2",
                        },
                    ],
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request):
        if _header_idempotency_key(request) is not None:
            raise errors.InvalidRequest(
                "A batch has no idempotency key of its own: give each transfer its idempotencyKey.",
                field=IDEMPOTENCY_HEADER,
            )
        batch = input_validate(TransferBatchInputSerializer, request.data)
        atomic = batch["atomic"]
        outcomes = services.transfer_batch_create(
            atomic=atomic,
            requests=_transfer_requests_parse(batch["transfers"], owner=request_owner(request)),
        )
        positions: dict[UUID, int] = {}
        results = []
        for outcome in outcomes:
            if isinstance(outcome, errors.LedgerError):
                results.append(batch_item_problem(outcome, request.path))
                continue
            for account_id, sequence in outcome.positions.items():
                positions[account_id] = max(positions.get(account_id, 0), sequence)
            result: dict[str, Any] = {"status": status.HTTP_201_CREATED, "transfer": _posted_body(outcome)}
            if outcome.replayed:
                result["replayed"] = True
            results.append(result)
        token: str | None = consistency_token_for(positions)
        if token is not None and len(token) > TOKEN_MAX_LENGTH:
            token = None
        return Response({"atomic": atomic, "results": results, "consistencyToken": token})


class TransferDetailApi(APIView):
    required_scopes = {"GET": TRANSFERS_READ}

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_retrieve",
        summary="Fetch a transfer with its entries",
        parameters=[_TRANSFER_ID_PARAMETER],
        responses={200: TransferOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, transfer_id: str):
        transfer_uuid = parse_path_id(transfer_id, errors.TransferNotFound, "transfer")
        query_params_validate(request, NoQueryParameters)
        return Response(selectors.transfer_document(transfer_id=transfer_uuid))


class TransferReverseApi(APIView):
    required_scopes = {"POST": TRANSFERS_WRITE}

    class TransferReverseInputSerializer(StrictInputSerializer):
        idempotencyKey = IdempotencyKeyField(
            required=False,
            help_text="Required here or in the Idempotency-Key header. Same key + same body replays the first answer.",
        )
        amount = MinorUnitsField(
            required=False,
            help_text="Reverse only this much of a transfer of one posting. Left out: every posting, whole.",
        )
        description = StrictCharField(
            required=False, allow_null=True, max_length=DESCRIPTION_MAX_LENGTH, help_text=_DESCRIPTION_HELP
        )

    @extend_schema(
        tags=["transfers"],
        operation_id="transfers_reverse",
        summary="Reverse a posted transfer, whole or in part (exactly once per idempotency key)",
        description="Posts a new transfer that moves the transfer's postings back, each from its destination to "
        "its source, with `reversalOf` set to it; the transfer's `reversedAmount` grows by what the reversal moves "
        "back. With `amount`, only that much of a transfer of one posting is reversed; a transfer of several "
        "postings is reversed whole, once. Everything reversed never exceeds the transfer (422 "
        "reversal_exceeds_original, with `remaining`); a hold posted in part is reversed up to what was "
        "posted, not what was held. Only a posted transfer is reversed: a hold still pending, voided or expired "
        "gets 409 transfer_not_posted. The reversal obeys every rule of a transfer: an account that has spent "
        "the money gets 422 insufficient_funds, and nothing changes.",
        request=TransferReverseInputSerializer,
        parameters=[
            _TRANSFER_ID_PARAMETER,
            IDEMPOTENCY_PARAMETER,
        ],
        responses={
            201: OpenApiResponse(
                PostedTransferOutputSerializer,
                description="The reversal, posted. A replay of an earlier request carries the header "
                "Idempotent-Replayed: true.",
            ),
            **problem_responses(400, 404, 409, 413, 422, 503),
        },
        examples=[
            OpenApiExample(
                "Refund 5.00 of a 12.34 USD transfer",
                value={"amount": 500, "description": "Partial refund", "idempotencyKey": "refund-1042-1"},
                request_only=True,
            ),
        ],
    )
    def post(self, request, transfer_id: str):
        transfer_uuid = parse_path_id(transfer_id, errors.TransferNotFound, "transfer")
        query_params_validate(request, NoQueryParameters)
        data = input_validate(self.TransferReverseInputSerializer, request.data)
        outcome = services.transfer_reverse(
            idempotency_key=request_idempotency_key(request, data.get("idempotencyKey")),
            transfer_id=transfer_uuid,
            amount=data.get("amount"),
            description=data.get("description"),
            owner=request_owner(request),
        )
        return _outcome_response(outcome, status.HTTP_201_CREATED)


def transfer_request_parse(data: Any, *, header_key: str | None, owner: str | None) -> services.TransferRequest:
    """A POST /transfers body, in any form it accepts, as a checked request: the one parser of
    transfer requests, for POST /transfers and for each item of POST /transfers/batch. Raises
    a ValidationError or an InvalidRequest naming the field."""
    if isinstance(data, dict) and "postings" in data:
        data = input_validate(MultiLegTransferInputSerializer, data)
        return services.transfer_request_postings(
            idempotency_key=_idempotency_key(header_key, data.get("idempotencyKey")),
            postings=[
                services.Posting(posting["from"], posting["to"], posting["amount"], posting["currency"])
                for posting in data["postings"]
            ],
            metadata=data["metadata"],
            description=data.get("description"),
            hold=_hold(data),
            owner=owner,
        )
    data = input_validate(SingleTransferInputSerializer, data)
    return services.transfer_request_single(
        idempotency_key=_idempotency_key(header_key, data.get("idempotencyKey")),
        from_account_id=data["from"],
        to_account_id=data["to"],
        amount=data["amount"],
        currency=data["currency"],
        metadata=data["metadata"],
        description=data.get("description"),
        hold=_hold(data),
        owner=owner,
    )


def _hold(data: dict[str, Any]) -> services.HoldRequest | None:
    """The hold a validated TransferInputSerializer asks for, if any."""
    if not data["pending"]:
        return None
    return services.HoldRequest(expires_at=data.get("expiresAt"), timeout_seconds=data.get("timeoutSeconds"))


def _transfer_requests_parse(items: list[Any], *, owner: str | None) -> list[services.TransferRequest]:
    """Every batch item parsed as POST /transfers parses its body; one 400 names every invalid
    field of every item (`transfers[3].amount`)."""
    requests: list[services.TransferRequest] = []
    problems: dict[Any, Any] = {}  # by item index, as DRF keys a list's errors
    for index, item in enumerate(items):
        try:
            requests.append(transfer_request_parse(item, header_key=None, owner=owner))
        except serializers.ValidationError as exc:
            problems[index] = exc.detail
        except errors.InvalidRequest as exc:
            problems[index] = {exc.field or "non_field_errors": [exc.detail]}
    if problems:
        raise serializers.ValidationError({"transfers": problems})
    return requests


def _posted_body(outcome: services.TransferOutcome) -> dict[str, Any]:
    return {**outcome.document, "consistencyToken": consistency_token_for(outcome.positions)}


def _idempotency_key(header_key: str | None, body_key: str | None) -> str:
    if body_key and header_key and body_key != header_key:
        raise errors.InvalidRequest("idempotencyKey and the Idempotency-Key header differ.", field="idempotencyKey")
    key = body_key or header_key
    if not key:
        raise errors.InvalidRequest(
            "idempotencyKey is required (body field or Idempotency-Key header).", field="idempotencyKey"
        )
    return key


def request_owner(request) -> str | None:
    """The owner of the request's API key: whose idempotency keys it uses. None when
    LEDGER_AUTH=off, where keys are not read."""
    return request.auth.owner if request.auth is not None else None


def request_idempotency_key(request, body_key: str | None) -> str:
    """A command's key: the body field or the Idempotency-Key header (the same if both)."""
    return _idempotency_key(_header_idempotency_key(request), body_key)


def _header_idempotency_key(request) -> str | None:
    """The Idempotency-Key header, held to the rules of the idempotencyKey body field."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    try:
        return IdempotencyKeyField().run_validation(raw)
    except serializers.ValidationError as exc:
        message = f"The {IDEMPOTENCY_HEADER} header: {' '.join(map(str, exc.detail))}"
        raise errors.InvalidRequest(message, field=IDEMPOTENCY_HEADER) from None
