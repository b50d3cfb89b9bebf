from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import selectors, services
from apps.accounts.models import AccountStatus
from creditledger import errors
from creditledger.api.fields import (
    CurrencyCodeField,
    MetadataField,
    OverdraftLimitField,
    StrictCharField,
    encode_cursor,
    page_serializer,
)
from creditledger.api.ids import parse_path_id
from creditledger.api.schema import problem_responses
from creditledger.api.serializers import (
    NoQueryParameters,
    PageQuerySerializer,
    StrictInputSerializer,
    query_params_validate,
)


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
    metadata = MetadataField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class CurrencyListCreateApi(APIView):

    class CurrencyCreateInputSerializer(StrictInputSerializer):
        code = CurrencyCodeField()
        scale = serializers.IntegerField(min_value=0, max_value=18)
        name = StrictCharField(max_length=100)

    @extend_schema(
        tags=["currencies"],
        operation_id="currencies_list",
        summary="List currencies and credit units",
        responses={200: CurrencyOutputSerializer(many=True), **problem_responses(400, 503)},
    )
    def get(self, request):
        query_params_validate(request, NoQueryParameters)
        return Response(CurrencyOutputSerializer(selectors.currency_list(), many=True).data)

    @extend_schema(
        tags=["currencies"],
        operation_id="currencies_create",
        summary="Register a custom credit unit",
        request=CurrencyCreateInputSerializer,
        responses={201: CurrencyOutputSerializer, **problem_responses(400, 409, 413, 503)},
        examples=[OpenApiExample("GPU hours", value={"code": "GPU_HOURS", "scale": 3, "name": "GPU hours"}, request_only=True)],
    )
    def post(self, request):
        serializer = self.CurrencyCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        currency = services.currency_create(**serializer.validated_data)
        return Response(CurrencyOutputSerializer(currency).data, status=status.HTTP_201_CREATED)


class AccountListCreateApi(APIView):

    class AccountCreateInputSerializer(StrictInputSerializer):
        currency = CurrencyCodeField()
        name = StrictCharField(required=False, allow_null=True, max_length=200)
        externalRef = StrictCharField(required=False, allow_null=True, max_length=200)
        overdraftLimit = OverdraftLimitField(
            required=False, default=None,
            help_text="null (default): unlimited; 0: the balance never goes negative; N: it may go down to -N.",
        )
        metadata = MetadataField(required=False, default=dict)

    class AccountListQuerySerializer(PageQuerySerializer):
        currency = CurrencyCodeField(required=False)
        status = serializers.ChoiceField(choices=AccountStatus.choices, required=False)
        externalRef = StrictCharField(required=False, max_length=200)

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
                value={"currency": "CREDITS", "name": "Acme prepaid", "externalRef": "cus_123", "overdraftLimit": 0,
                       "metadata": {"plan": "pro"}},
                request_only=True,
            ),
        ],
    )
    def post(self, request):
        serializer = self.AccountCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        account = services.account_create(
            currency=data["currency"],
            name=data.get("name"),
            external_ref=data.get("externalRef"),
            overdraft_limit=data["overdraftLimit"],
            metadata=data["metadata"],
        )
        return Response(AccountOutputSerializer(account).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_list",
        summary="List accounts, newest first",
        parameters=[AccountListQuerySerializer],
        responses={200: AccountPageSerializer, **problem_responses(400, 503)},
    )
    def get(self, request):
        params = query_params_validate(request, self.AccountListQuerySerializer)
        page = selectors.account_list(
            currency=params.get("currency"),
            status=params.get("status"),
            external_ref=params.get("externalRef"),
            after=params.get("cursor"),
            limit=params["limit"],
        )
        return Response({
            "data": AccountOutputSerializer(page.items, many=True).data,
            "nextCursor": encode_cursor(page.next_after),
        })


class AccountDetailApi(APIView):
    @extend_schema(
        tags=["accounts"],
        operation_id="accounts_retrieve",
        summary="Fetch an account",
        parameters=[OpenApiParameter("account_id", str, OpenApiParameter.PATH, description="Account id (UUID).")],
        responses={200: AccountOutputSerializer, **problem_responses(400, 404, 503)},
    )
    def get(self, request, account_id: str):
        account_uuid = parse_path_id(account_id, errors.AccountNotFound, "account")
        query_params_validate(request, NoQueryParameters)
        account = selectors.account_get(account_id=account_uuid)
        return Response(AccountOutputSerializer(account).data)

