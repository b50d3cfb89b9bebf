from django.urls import path

from apps.api import accounts, grants, transfers

urlpatterns = [
    path("currencies", accounts.CurrencyListCreateApi.as_view(), name="currencies"),
    path("accounts", accounts.AccountListCreateApi.as_view(), name="accounts"),
    path("accounts/<str:account_id>", accounts.AccountDetailApi.as_view(), name="account-detail"),
    path("accounts/<str:account_id>/balance", accounts.AccountBalanceApi.as_view(), name="account-balance"),
    path("accounts/<str:account_id>/statements", accounts.AccountStatementApi.as_view(), name="account-statements"),
    path("accounts/<str:account_id>/grants", grants.AccountGrantsApi.as_view(), name="account-grants"),
    path("accounts/<str:account_id>/explain", grants.AccountExplanationApi.as_view(), name="account-explain"),
    path("grants/<str:grant_id>", grants.GrantDetailApi.as_view(), name="grant-detail"),
    path("grants/<str:grant_id>/void", grants.GrantVoidApi.as_view(), name="grant-void"),
    path("transfers", transfers.TransferListCreateApi.as_view(), name="transfers"),
    path("transfers/batch", transfers.TransferBatchApi.as_view(), name="transfers-batch"),
    path("transfers/<str:transfer_id>", transfers.TransferDetailApi.as_view(), name="transfer-detail"),
    path("transfers/<str:transfer_id>/post", transfers.TransferPostApi.as_view(), name="transfer-post"),
    path("transfers/<str:transfer_id>/void", transfers.TransferVoidApi.as_view(), name="transfer-void"),
    path("transfers/<str:transfer_id>/reverse", transfers.TransferReverseApi.as_view(), name="transfer-reverse"),
]
