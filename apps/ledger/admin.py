from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from apps.accounts.models import Account
from apps.ledger.models import Entry, IdempotencyRecord, Transfer
from apps.ledger.selectors import TransferCommand, transfer_commands
from creditledger.admin import LedgerTableAdmin, ReadOnlyAdminMixin, admin_link, amount_with_currency


class EntryAmountsMixin:
    """Entry amounts as integers in minor units, with their currency."""

    @admin.display(description="amount (minor units)")
    def amount_display(self, entry: Entry) -> str:
        return amount_with_currency(entry.amount, entry.currency_id)

    @admin.display(description="balance after")
    def balance_after_display(self, entry: Entry) -> str:
        return amount_with_currency(entry.balance_after, entry.currency_id)


class EntryInline(EntryAmountsMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = Entry
    fields = (
        "posting_index",
        "account",
        "amount_display",
        "sequence",
        "balance_after_display",
        "counterparty",
        "created_at",
    )
    readonly_fields = ("amount_display", "balance_after_display")
    ordering = ("posting_index", "amount")  # posting by posting, debit first
    show_change_link = True
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Entry]:
        return super().get_queryset(request).select_related("account", "counterparty")


@admin.register(Transfer)
class TransferAdmin(LedgerTableAdmin):
    list_display = ("id", "created_at", "from_link", "to_link", "amount_display", "status", "description")
    list_select_related = ("from_account", "to_account")
    list_filter = ("currency", "status", "created_at")
    search_fields = ("id", "idempotency_key", "from_account", "to_account", "reversal_of")
    search_help_text = (
        "Transfer id, idempotency key, the id of the account it is from or to, or of the transfer it reverses (exact)."
    )
    ordering = ("-id",)  # UUIDv7: newest first
    sortable_by = ("id", "created_at")
    inlines = (EntryInline,)
    # After every field: what a hold reserved, then what was done to the transfer since
    # (reversal_of links a reversal to the original, "commands" the original to its reversals).
    readonly_fields = ("held", "commands")

    @admin.display(description="commands")
    def commands(self, transfer: Transfer) -> str:
        """The post, void or expiry that settled its hold and its reversals, each with its
        idempotency key, when it took effect, what it moved and what came of it."""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (c.command, c.idempotency_key or "-", c.at, _amounts(c.moved), _outcome(c))
                for c in transfer_commands(transfer=transfer)
            ),
        )
        if not rows:
            return "-"
        return format_html(
            "<table><thead><tr><th>command</th><th>idempotency key</th><th>at</th>"
            "<th>amount (minor units)</th><th>outcome</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="from")
    def from_link(self, transfer: Transfer) -> str:
        return admin_link(Account, transfer.from_account_id, transfer.from_account)

    @admin.display(description="to")
    def to_link(self, transfer: Transfer) -> str:
        return admin_link(Account, transfer.to_account_id, transfer.to_account)

    @admin.display(description="held")
    def held(self, transfer: Transfer) -> str:
        """What a hold reserved, posting by posting, until when, and whether it is still open."""
        holds = transfer.holds.order_by("posting_index")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    hold.posting_index,
                    hold.from_account_id,
                    hold.to_account_id,
                    amount_with_currency(hold.amount, hold.currency_id),
                    hold.expires_at or "never",
                    "open" if hold.open else "closed",
                )
                for hold in holds
            ),
        )
        if not rows:
            return "-"
        return format_html(
            "<table><thead><tr><th>posting</th><th>from</th><th>to</th><th>held (minor units)</th>"
            "<th>expires</th><th>hold</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="amount (minor units)")
    def amount_display(self, transfer: Transfer) -> str:
        if transfer.posting_count > 1:
            return f"{transfer.posting_count} postings (see the entries)"
        return amount_with_currency(transfer.amount, transfer.currency_id or "")


def _amounts(amounts: dict[str, int]) -> str:
    return ", ".join(amount_with_currency(amount, currency) for currency, amount in amounts.items()) or "-"


def _outcome(command: TransferCommand) -> str:
    if command.reversal_id is not None:
        return format_html("reversal {}", admin_link(Transfer, command.reversal_id))
    settled = {"post": "posted", "void": "voided", "expiry": "expired"}[command.command]
    if not command.released:
        return settled
    return f"{settled}, {_amounts(command.released)} released"


@admin.register(Entry)
class EntryAdmin(EntryAmountsMixin, LedgerTableAdmin):
    list_display = (
        "id",
        "created_at",
        "account_link",
        "sequence",
        "amount_display",
        "balance_after_display",
        "transfer_link",
        "counterparty_link",
    )
    list_select_related = ("account", "counterparty")
    list_filter = ("currency", "created_at")
    search_fields = ("id", "account", "transfer")
    search_help_text = "Entry id, account id or transfer id (exact)."
    ordering = ("-id",)
    sortable_by = ("id",)

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        # One account's entries (?account=<id>, linked from the account page) read as a
        # statement, latest first, from the (account, sequence) index.
        if "account" in request.GET:
            return ("-sequence",)
        return self.ordering

    @admin.display(description="account")
    def account_link(self, entry: Entry) -> str:
        return admin_link(Account, entry.account_id, entry.account)

    @admin.display(description="counterparty")
    def counterparty_link(self, entry: Entry) -> str:
        return admin_link(Account, entry.counterparty_id, entry.counterparty)

    @admin.display(description="transfer")
    def transfer_link(self, entry: Entry) -> str:
        return admin_link(Transfer, entry.transfer_id)


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("transfer", "Transfer created"), ("error", "Refused with an error")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[IdempotencyRecord]) -> QuerySet[IdempotencyRecord]:
        if self.value() == "transfer":
            return queryset.filter(transfer__isnull=False)
        if self.value() == "error":
            return queryset.filter(error__isnull=False)
        return queryset


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(LedgerTableAdmin):
    list_display = ("key", "outcome", "transfer_link", "created_at")
    list_filter = (OutcomeFilter, "created_at")
    search_fields = ("key", "transfer")
    search_help_text = "Idempotency key or transfer id (exact)."
    ordering = ("key",)
    sortable_by = ("key",)

    @admin.display(description="outcome")
    def outcome(self, record: IdempotencyRecord) -> str:
        if record.transfer_id is not None:
            return "transfer"
        if record.error is not None:
            return f"error: {record.error.get('code', '?')}"
        return "-"

    @admin.display(description="transfer")
    def transfer_link(self, record: IdempotencyRecord) -> str:
        return admin_link(Transfer, record.transfer_id)
