from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import selectors, services
from apps.accounts.models import Account, AccountStatus
from apps.accounts.services import UNCHANGED
from apps.api.consistency import TOKEN_HEADER_PARAMETER, ConsistencyQuerySerializer, read_your_writes
from apps.ledger import selectors as ledger
from apps.projections import selectors as projections
from creditledger import errors
from creditledger.api.fields import (
    CurrencyCodeField,
    CursorField,
    InstantField,
    MetadataField,
    OverdraftLimitField,
    StrictCharField,
    encode_cursor,
    instant_text,
)
from creditledger.api.ids import parse_path_id
from creditledger.api.pages import page_response, page_serializer
from creditledger.api.schema import problem_responses
from creditledger.api.scopes import ACCOUNTS_READ, ACCOUNTS_WRITE, CURRENCIES_WRITE
from creditledger.api.serializers import (
    NoQueryParameters,
    PageQuerySerializer,
    StrictInputSerializer,
    input_validate,
    keyword_fields,
    query_params_validate,
)

_ACCOUNT_ID_PARAMETER = OpenApiParameter("account_id", str, OpenApiParameter.PATH, description="Account id (UUID).")
_AS_OF_HELP = (
    "An instant (RFC 3339 with offset; URL-encode a `+`): read the posted balance after the account's last entry "
    "at or before it, from the ledger itself. A future instant gives the current posted balance."
)


@dataclass(frozen=True)
class BalanceAsOf(projections.Balance):
    """The balance at `as_of`, from the ledger: its sequences are those of the last entry at
    or before that instant, so it is up to date by definition."""

    as_of: datetime


class CurrencyOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    scale = serializers.IntegerField(help_text="Minor-unit digits: amount 1234 at scale 2 is 12.34.")
    name = serializers.CharField()


class AccountOutputSerializer(serializers.Serializer):
    accountId = serializers.UUIDField(source="id")
    currency = serializers.CharField(source="currency_id")
    name = serializers.CharField(allow_null=True)
    externalRef = serializers.CharField(source="external_ref", allow_null=True)
    status = serializers.ChoiceField(choices=AccountStatus.choices)
    overdraftLimit = OverdraftLimitField(source="overdraft_limit")
    pendingDebits = serializers.IntegerField(
        source="pending_debits",
        help_text="Held by its open holds as debits, now, as the balance endpoint counts it: a hold past its expiry "
        "no longer counts, even before the expiry task has released it.",
    )
    pendingCredits = serializers.IntegerField(
        source="pending_credits", help_text="Held by its open holds as credits, now, as the balance endpoint counts it."
    )
    metadata = MetadataField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class StatementLineSerializer(serializers.Serializer):
    entryId = serializers.UUIDField(source="entry_id")
    transferId = serializers.UUIDField(source="transfer_id")
    sequence = serializers.IntegerField()
    amount = serializers.IntegerField(help_text="Signed minor units: negative debits, positive credits.")
    side = serializers.ChoiceField(choices=["debit", "credit"])
    balanceAfter = serializers.IntegerField(source="balance_after")
    counterparty = serializers.UUIDField(source="counterparty_id")
    description = serializers.CharField(
        allow_null=True, help_text="Its transfer's description; null until the read model has that transfer."
    )
    createdAt = serializers.DateTimeField(source="created_at")


class ConsistencySerializer(serializers.Serializer):
    projectedSequence = serializers.IntegerField(
        source="projected_sequence", help_text="Latest entry of this account the read model has applied."
    )
    ledgerSequence = serializers.IntegerField(
        source="ledger_sequence", help_text="Latest entry of this account in the ledger."
    )
    upToDate = serializers.BooleanField(source="up_to_date")


class CurrencyListCreateApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ, "POST": CURRENCIES_WRITE}

    class CurrencyCreateInputSerializer(StrictInputSerializer):
        code = CurrencyCodeField()
        scale = serializers.IntegerField(min_value=0, max_value=18)
        name = StrictCharField(max_length=100)

    class CurrencyListQuerySerializer(PageQuerySerializer):
        cursor = CursorField(
            position_type=str, required=False, source="after", help_text="`nextCursor` from the previous page."
        )

    CurrencyPageSerializer = page_serializer(CurrencyOutputSerializer, "CurrencyPage")

    @extend_schema(
        tags=["currencies"],
        operation_id="currencies_list",
        summary="List currencies and credit units, in code order",
        parameters=[CurrencyListQuerySerializer],
        responses={200: CurrencyPageSerializer, **problem_responses(400, 503)},
    )
    def get(self, request):
        params = query_params_validate(request, self.CurrencyListQuerySerializer)
        return page_response(selectors.currency_list(**params), CurrencyOutputSerializer)

    @extend_schema(
        tags=["currencies"],
        operation_id="currencies_create",
        summary="Register a custom credit unit",
        request=CurrencyCreateInputSerializer,
        responses={201: CurrencyOutputSerializer, **problem_responses(400, 409, 413, 503)},
        examples=[
            OpenApiExample("GPU hours", value={"code": "GPU_HOURS", "scale": 3, "name": "GPU hours"}, request_only=True)
        ],
    )
    def post(self, request):
        currency = services.currency_create(**input_validate(self.CurrencyCreateInputSerializer, request.data))
        return Response(CurrencyOutputSerializer(currency).data, status=status.HTTP_201_CREATED)


class AccountListCreateApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ, "POST": ACCOUNTS_WRITE}

    class AccountCreateInputSerializer(StrictInputSerializer):
        currency = CurrencyCodeField()
        name = StrictCharField(required=False, allow_null=True, max_length=200)
        externalRef = StrictCharField(required=False, allow_null=True, max_length=200)
        overdraftLimit = OverdraftLimitField(
            required=False,
            help_text="null: unlimited; 0: the balance never goes negative; N: it may go down to -N. Left out: the "
            "deployment's default (LEDGER_DEFAULT_OVERDRAFT_LIMIT), unlimited unless set.",
        )
        metadata = MetadataField(required=False, default=dict)

    class AccountListQuerySerializer(PageQuerySerializer):
        currency = CurrencyCodeField(required=False)
        status = serializers.ChoiceField(choices=AccountStatus.choices, required=False)
        externalRef = StrictCharField(required=False, max_length=200, source="external_ref")

    AccountPageSerializer = page_serializer(AccountOutputSerializer, "AccountPage")

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_create",
        summary="Open an account",
        request=AccountCreateInputSerializer,
        responses={201: AccountOutputSerializer, **problem_responses(400, 413, 503)},
        examples=[
            OpenApiExample("Seed walkthrough", value={"currency": "USD"}, request_only=True),
            OpenApiExample(
                "Prepaid credits wallet",
                value={
                    "currency": "CREDITS",
                    "name": "Acme prepaid",
                    "externalRef": "cus_123",
                    "overdraftLimit": 0,
                    "metadata": {"plan": "pro"},
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request):
        data = input_validate(self.AccountCreateInputSerializer, request.data)
        account = services.account_create(
            currency=data["currency"],
            name=data.get("name"),
            external_ref=data.get("externalRef"),
            overdraft_limit=data.get("overdraftLimit", services.DEFAULT),
            metadata=data["metadata"],
        )
        return Response(_account_document(account), status=status.HTTP_201_CREATED)

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_list",
        summary="List accounts, newest first",
        parameters=[AccountListQuerySerializer],
        responses={200: AccountPageSerializer, **problem_responses(400, 503)},
    )
    def get(self, request):
        params = query_params_validate(request, self.AccountListQuerySerializer)
        page = selectors.account_list(**params)
        _pending_now_set(page.items)
        return page_response(page, AccountOutputSerializer)


class AccountDetailApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ, "PATCH": ACCOUNTS_WRITE}

    class AccountUpdateInputSerializer(StrictInputSerializer):
        name = StrictCharField(required=False, allow_null=True, max_length=200)
        metadata = MetadataField(required=False, help_text="Replaces the whole metadata object.")
        overdraftLimit = OverdraftLimitField(
            required=False,
            help_text="null: unlimited; 0: never negative; N: down to -N. Refused below what the balance needs.",
        )
        status = serializers.ChoiceField(
            choices=AccountStatus.choices,
            required=False,
            help_text=(
                "active <-> frozen; either -> closed. Frozen: no debit or credit. Closed: final, needs a zero balance."
            ),
        )
        reason = StrictCharField(
            required=False, max_length=500, help_text="Why; carried by the AccountUpdated event and kept."
        )

        def validate(self, attrs):
            if not {"name", "metadata", "overdraftLimit", "status"} & set(attrs):
                raise serializers.ValidationError("Give at least one of name, metadata, overdraftLimit and status.")
            return attrs

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_retrieve",
        summary="Fetch an account",
        parameters=[_ACCOUNT_ID_PARAMETER],
        responses={200: AccountOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        query_params_validate(request, NoQueryParameters)
        return Response(_account_document(selectors.account_get(account_id=account_uuid)))

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_update",
        summary="Rename, change metadata or overdraft limit, freeze, unfreeze or close an account",
        parameters=[_ACCOUNT_ID_PARAMETER],
        request=AccountUpdateInputSerializer,
        responses={200: AccountOutputSerializer, **problem_responses(400, 404, 413, 422, 503)},
        examples=[
            OpenApiExample("Freeze", value={"status": "frozen", "reason": "chargeback review"}, request_only=True),
            OpenApiExample("Credit line", value={"overdraftLimit": 50000}, request_only=True),
        ],
    )
    def patch(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        query_params_validate(request, NoQueryParameters)
        data = input_validate(self.AccountUpdateInputSerializer, request.data)
        account = services.account_update(
            account_id=account_uuid,
            name=data.get("name", UNCHANGED),
            metadata=data.get("metadata", UNCHANGED),
            overdraft_limit=data.get("overdraftLimit", UNCHANGED),
            status=data.get("status", UNCHANGED),
            reason=data.get("reason"),
        )
        return Response(_account_document(account))


def _account_document(account: Account) -> dict[str, Any]:
    _pending_now_set([account])
    return AccountOutputSerializer(account).data


def _pending_now_set(accounts: list[Account]) -> None:
    """Show the accounts' pending amounts as the balance endpoint counts them now, in place of the
    row's totals, which count a hold past its expiry until the expiry task releases it."""
    pending = ledger.accounts_pending_now(account_ids=[account.id for account in accounts])
    for account in accounts:
        account.pending_debits, account.pending_credits = pending[account.id]


class AccountBalanceApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ}

    class BalanceOutputSerializer(serializers.Serializer):
        accountId = serializers.UUIDField(source="account_id")
        currency = serializers.CharField()
        balance = serializers.IntegerField(help_text="Posted balance in minor units; negative when overdrawn.")
        pendingDebits = serializers.IntegerField(
            source="pending_debits",
            help_text="What the account's open holds reserve as debits, now (from the ledger; a hold past its "
            "expiry counts for nothing).",
        )
        pendingCredits = serializers.IntegerField(
            source="pending_credits", help_text="What its open holds will credit, now (not yet spendable)."
        )
        available = serializers.IntegerField(
            allow_null=True,
            help_text="What may still be debited, as the overdraft rule sees it now (read from the ledger): "
            "balance - pendingDebits + overdraftLimit once the read model is up to date; null when unlimited.",
        )
        overdraftLimit = OverdraftLimitField(source="overdraft_limit")
        lastSequence = serializers.IntegerField(
            source="projected_sequence", help_text="Sequence of the latest entry included."
        )
        updatedAt = serializers.DateTimeField(
            source="updated_at", allow_null=True, help_text="When that entry was posted."
        )
        consistency = ConsistencySerializer(source="*")
        expiringSoon = serializers.SerializerMethodField(
            help_text="The next expiry of grant credits still usable: {amount, at}; null when none expires (and "
            "with an asOf in the past: see GET /accounts/{id}/explain)."
        )
        asOf = serializers.DateTimeField(
            source="as_of",
            required=False,
            help_text="Only with the asOf parameter: the instant asked for, in UTC. The balance, sequences, "
            "updatedAt, pendingDebits and pendingCredits are those of that instant; overdraftLimit and available use "
            "today's limit.",
        )

        @extend_schema_field(
            {
                "type": "object",
                "nullable": True,
                "properties": {"amount": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}},
            }
        )
        def get_expiringSoon(self, balance) -> dict[str, Any] | None:
            if balance.expiring_at is None:
                return None
            at = serializers.DateTimeField().to_representation(balance.expiring_at)
            return {"amount": balance.expiring_amount, "at": at}

    class BalanceQuerySerializer(ConsistencyQuerySerializer):
        asOf = InstantField(required=False, help_text=_AS_OF_HELP + " A consistency token is then not needed.")

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_balance",
        summary="Current balance (read model; pass a consistency token to read your writes), or the posted "
        "balance at an instant (ledger)",
        parameters=[_ACCOUNT_ID_PARAMETER, BalanceQuerySerializer, TOKEN_HEADER_PARAMETER],
        responses={200: BalanceOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        params = query_params_validate(request, self.BalanceQuerySerializer)
        if "asOf" in params:
            return Response(_balance_document(_balance_as_of(account_uuid, params["asOf"])))
        read_your_writes(request, params, account_id=account_uuid)
        # The read model first: the ledger, read after, is at least as far.
        projected = projections.projected_position(account_id=account_uuid)
        ledger_balance = ledger.account_balance_now(account_id=account_uuid, booked_after=projected.sequence)
        live = ledger_balance.live
        balance = projections.projected_balance(
            account_id=account_uuid,
            projected=projected,
            currency=ledger_balance.currency,
            overdraft_limit=ledger_balance.overdraft_limit,
            ledger_balance=ledger_balance.balance,
            ledger_sequence=ledger_balance.sequence,
            pending_debits=live.pending_debits,
            pending_credits=live.pending_credits,
            unbooked=live.unbooked,
            booked_after=ledger_balance.booked_after,
            expiring_amount=live.expiring_amount,
            expiring_at=live.expiring_at,
        )
        return Response(_balance_document(balance))


def _balance_document(balance: projections.Balance) -> dict[str, Any]:
    """What BalanceOutputSerializer describes, built without it: a balance is read far more
    often than anything else, and DRF's serializer (a deep copy of its fields per answer, then
    a generic lookup per field) cost more CPU than the whole database read."""
    document = {
        "accountId": str(balance.account_id),
        "currency": balance.currency,
        "balance": balance.balance,
        "pendingDebits": balance.pending_debits,
        "pendingCredits": balance.pending_credits,
        "available": balance.available,
        "overdraftLimit": balance.overdraft_limit,
        "lastSequence": balance.projected_sequence,
        "updatedAt": None if balance.updated_at is None else instant_text(balance.updated_at),
        "consistency": {
            "projectedSequence": balance.projected_sequence,
            "ledgerSequence": balance.ledger_sequence,
            "upToDate": balance.up_to_date,
        },
        "expiringSoon": None
        if balance.expiring_at is None
        else {"amount": balance.expiring_amount, "at": instant_text(balance.expiring_at)},
    }
    if isinstance(balance, BalanceAsOf):
        document["asOf"] = instant_text(balance.as_of)
    return document


def _balance_as_of(account_id: UUID, moment: datetime) -> BalanceAsOf:
    at = ledger.account_balance_as_of(account_id=account_id, moment=moment)
    posted, live = at.posted, at.live
    # The next expiry is told from now on: for an instant past, the grants are in /explain.
    upcoming = moment >= live.now
    return BalanceAsOf(
        account_id=account_id,
        currency=at.currency,
        balance=posted.balance,
        overdraft_limit=at.overdraft_limit,
        projected_sequence=posted.sequence,
        ledger_sequence=posted.sequence,
        updated_at=posted.posted_at,
        pending_debits=at.pending_debits,
        pending_credits=at.pending_credits,
        ledger_balance=posted.balance,
        expiring_amount=live.expiring_amount if upcoming else None,
        expiring_at=live.expiring_at if upcoming else None,
        as_of=moment,
    )


class AccountStatementApi(APIView):
    required_scopes = {"GET": ACCOUNTS_READ}

    @keyword_fields(
        **{
            "from": serializers.DateTimeField(required=False, help_text="Entries at or after (ISO 8601)."),
            "to": serializers.DateTimeField(required=False, help_text="Entries before (ISO 8601)."),
        }
    )
    class StatementQuerySerializer(PageQuerySerializer, ConsistencyQuerySerializer):
        cursor = CursorField(position_type=int, required=False, help_text="`nextCursor` from the previous page.")
        asOf = InstantField(
            required=False,
            help_text="An instant (RFC 3339 with offset): the statement starts there. The answer adds "
            "`openingBalance`, the posted balance after the account's last entry at or before it (an entry at exactly "
            "that instant is counted), read from the ledger, and its lines are the entries after that one (unless "
            "`from` is given, which then sets where the lines start).",
        )

    class StatementOutputSerializer(serializers.Serializer):
        accountId = serializers.UUIDField()
        currency = serializers.CharField()
        openingBalance = serializers.IntegerField(
            required=False, help_text="Only with the asOf parameter: the ledger's posted balance at that instant."
        )
        # The metaclass moves declared fields out of the class, so Serializer.data stays a property.
        data = StatementLineSerializer(many=True)  # type: ignore[assignment]  # a field named like it
        nextCursor = serializers.CharField(allow_null=True)

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_statement",
        summary="Statement: entries in sequence order with running balance (read model)",
        parameters=[_ACCOUNT_ID_PARAMETER, StatementQuerySerializer, TOKEN_HEADER_PARAMETER],
        responses={200: StatementOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        params = query_params_validate(request, self.StatementQuerySerializer)
        currency = selectors.account_currency_get(account_id=account_uuid)
        read_your_writes(request, params, account_id=account_uuid)
        after_sequence, opening = params.get("cursor"), {}
        if "asOf" in params:
            at = ledger.account_balance_at(account_id=account_uuid, moment=params["asOf"])
            opening["openingBalance"] = at.balance
            if "from" not in params:
                # The statement starts at asOf: its lines are the entries after the opening balance.
                after_sequence = max(after_sequence or 0, at.sequence)
        page = projections.projected_statement_lines(
            account_id=account_uuid,
            created_from=params.get("from"),
            created_to=params.get("to"),
            after_sequence=after_sequence,
            limit=params["limit"],
        )
        return Response(
            {
                "accountId": str(account_uuid),
                "currency": currency,
                **opening,
                "data": [_statement_line_document(line) for line in page.items],
                "nextCursor": encode_cursor(page.next_after),
            }
        )


def _statement_line_document(line: projections.StatementLine) -> dict[str, Any]:
    """What StatementLineSerializer describes, built without it, as _balance_document is:
    a page has up to 500 lines."""
    return {
        "entryId": str(line.entry_id),
        "transferId": str(line.transfer_id),
        "sequence": line.sequence,
        "amount": line.amount,
        "side": line.side,
        "balanceAfter": line.balance_after,
        "counterparty": str(line.counterparty_id),
        "description": line.description,
        "createdAt": instant_text(line.created_at),
    }
