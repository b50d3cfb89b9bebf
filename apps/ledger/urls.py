from django.urls import path

from apps.ledger import apis

urlpatterns = [
    path("transfers", apis.TransferListCreateApi.as_view(), name="transfers"),
    path("transfers/<str:transfer_id>", apis.TransferDetailApi.as_view(), name="transfer-detail"),
    path("accounts/<str:account_id>/balance", apis.AccountBalanceApi.as_view(), name="account-balance"),
    path("accounts/<str:account_id>/statements", apis.AccountStatementApi.as_view(), name="account-statements"),
]
