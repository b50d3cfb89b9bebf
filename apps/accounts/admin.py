from urllib.parse import urlencode

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from apps.accounts.models import Account, Currency
from creditledger.admin import LedgerTableAdmin, ReadOnlyAdminMixin, amount_with_currency


@admin.register(Currency)
class CurrencyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("code", "name", "scale")
    search_fields = ("code__iexact", "name__icontains")
    ordering = ("code",)


@admin.register(Account)
class AccountAdmin(LedgerTableAdmin):
    list_display = (
        "id",
        "name",
        "external_ref",
        "status",
        "balance_display",
        "overdraft_limit",
        "last_sequence",
        "created_at",
    )
    list_filter = ("currency", "status", "created_at")
    # Ids and external references are matched exactly (indexed); names by substring.
    search_fields = ("id", "external_ref", "name__icontains")
    search_help_text = "Account id or external reference (exact), or part of the name."
    # UUIDv7 ids sort by creation: newest first, straight from the primary key index.
    ordering = ("-id",)
    sortable_by = ("id",)
    readonly_fields = ("statement", "transfers")
    fieldsets = (
        (
            None,
            {"fields": ("id", "name", "external_ref", "currency", "status", "metadata", "created_at", "updated_at")},
        ),
        ("Balance", {"fields": ("balance", "overdraft_limit", "last_sequence", "statement", "transfers")}),
    )

    @admin.display(description="balance (minor units)", ordering="balance")
    def balance_display(self, account: Account) -> str:
        return amount_with_currency(account.balance, account.currency_id)

    @admin.display(description="entries")
    def statement(self, account: Account) -> str:
        url = reverse("admin:ledger_entry_changelist") + "?" + urlencode({"account": account.id})
        return format_html('<a href="{}">{} entries, latest first</a>', url, account.last_sequence)

    @admin.display(description="transfers")
    def transfers(self, account: Account) -> str:
        url = reverse("admin:ledger_transfer_changelist") + "?" + urlencode({"q": account.id})
        return format_html('<a href="{}">Transfers from or to this account</a>', url)
