from django.urls import path

from apps.accounts import apis

urlpatterns = [
    path("currencies", apis.CurrencyListCreateApi.as_view(), name="currencies"),
    path("accounts", apis.AccountListCreateApi.as_view(), name="accounts"),
    path("accounts/<str:account_id>", apis.AccountDetailApi.as_view(), name="account-detail"),
]
