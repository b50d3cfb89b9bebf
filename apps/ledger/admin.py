from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from apps.accounts.admin import AccountAdmin
from apps.accounts.models import Account
from apps.ledger.explanation import MAX_CHANGES, account_explanation
from apps.ledger.models import CreditGrant, Entry, GrantStatus, IdempotencyRecord, Transfer
from apps.ledger.selectors import TransferCommand, grant_get, grants_now, transfer_commands
from creditledger.admin import LedgerTableAdmin, ReadOnlyAdminMixin, admin_link, amount_with_currency
from creditledger.errors import LedgerError

#: How many of an account's changes its page shows at a time (latest first, with page links).
CHANGES_PER_PAGE = 100


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
    list_display = ("id", "created_at", "from_link", "to_link", "amount_display", "status", "description", "actor")
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
        idempotency key, when it took effect, what it moved, what came of it and who ran it."""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (c.command, c.idempotency_key or "-", c.at, _amounts(c.moved), _outcome(c), c.actor or "-")
                for c in transfer_commands(transfer=transfer)
            ),
        )
        if not rows:
            return "-"
        return format_html(
            "<table><thead><tr><th>command</th><th>idempotency key</th><th>at</th>"
            "<th>amount (minor units)</th><th>outcome</th><th>by</th></tr></thead><tbody>{}</tbody></table>",
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
    list_display = ("key", "outcome", "transfer_link", "created_at", "actor")
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


# The account's page answers "why this balance?" (docs/credits.md, The explanation). The
# account admin lives in apps.accounts, which may not import the ledger, so the ledger
# registers it again with the explanation.
admin.site.unregister(Account)


@admin.register(Account)
class AccountExplainedAdmin(AccountAdmin):
    change_form_template = "admin/ledger/account_change_form.html"
    fieldsets = (
        AccountAdmin.fieldsets[0],
        ("Balance", {"fields": ("balance", "overdraft_limit", "last_sequence", "statement", "transfers", "grants")}),
        *AccountAdmin.fieldsets[2:],
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), "grants"]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), **_explanation_context(request, object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="grants")
    def grants(self, account: Account) -> str:
        url = reverse("admin:ledger_creditgrant_changelist") + "?" + urlencode({"account": account.id})
        return format_html('<a href="{}">Every grant of this account</a>', url)


def _explanation_context(request: HttpRequest, object_id: str) -> dict[str, Any]:
    """The account's explanation (account_explanation) since `?since=` (default: its window),
    its changes latest first, a page of CHANGES_PER_PAGE at a time (`?changes_page=`)."""
    try:
        account_id = UUID(object_id)
    except ValueError:
        return {}
    since_param, as_of_param = request.GET.get("since"), request.GET.get("as_of")
    try:
        explanation = account_explanation(
            account_id=account_id, since=_instant(since_param), as_of=_instant(as_of_param), limit=MAX_CHANGES
        )
    except LedgerError as error:
        return {"explanation_error": error.detail}
    changes = Paginator(list(reversed(explanation.changes)), CHANGES_PER_PAGE)
    page = changes.get_page(request.GET.get("changes_page"))
    window = {"since": since_param, "as_of": as_of_param}

    def page_url(number: int) -> str:
        return "?" + urlencode({**{k: v for k, v in window.items() if v}, "changes_page": number})

    opened = Account.objects.filter(id=account_id).values_list("created_at", flat=True).first()
    return {
        "explanation": explanation,
        "changes_page": page,
        "changes_previous_url": page_url(page.previous_page_number()) if page.has_previous() else None,
        "changes_next_url": page_url(page.next_page_number()) if page.has_next() else None,
        "since_opened_url": "?" + urlencode({"since": opened.isoformat()}) if opened else None,
        # More than MAX_CHANGES entries in the window: the explanation covers the latest; this
        # page shows the ones before, so that no change is out of reach.
        "earlier_url": (
            "?" + urlencode({**({"since": since_param} if since_param else {}), "as_of": explanation.since.isoformat()})
            if explanation.limited
            else None
        ),
        "changes_limit": MAX_CHANGES,
        "grants_in_balance": sum(grant.in_balance for grant in explanation.grants),
    }


def _instant(raw: str | None) -> datetime | None:
    """An instant from the page's query string (UTC when it names no offset)."""
    moment = parse_datetime(raw) if raw else None
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_fixed_timezone(0))
    return moment


class GrantStatusNowFilter(admin.SimpleListFilter):
    """The status as the API reports it now: a grant past its expiry is expired even before the
    booking (which the account's next command or the beat task makes within seconds)."""

    title = "status (now)"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(GrantStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[CreditGrant]) -> QuerySet[CreditGrant]:
        if self.value() in GrantStatus.values:
            return queryset.filter(Q(status_now=self.value()))  # an annotation of grants_now()
        return queryset


@admin.register(CreditGrant)
class CreditGrantAdmin(LedgerTableAdmin):
    list_display = (
        "id",
        "created_at",
        "account_link",
        "description",
        "amount_display",
        "remaining_display",
        "status_display",
        "priority",
        "effective_at",
        "expires_at",
        "actor",
    )
    list_select_related = ("account",)
    list_filter = (GrantStatusNowFilter, "currency", "created_at")
    search_fields = ("id", "account", "transfer", "funding_account")
    search_help_text = "Grant id, the id of its account or of its funding account, or of its transfer (exact)."
    ordering = ("-id",)  # UUIDv7: newest first
    sortable_by = ("id", "created_at")
    readonly_fields = ("now", "history")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CreditGrant]:
        return grants_now()

    @admin.display(description="account")
    def account_link(self, grant: CreditGrant) -> str:
        return admin_link(Account, grant.account_id, grant.account)

    @admin.display(description="granted (minor units)")
    def amount_display(self, grant: CreditGrant) -> str:
        return amount_with_currency(grant.amount, grant.currency_id)

    @admin.display(description="remaining now")
    def remaining_display(self, grant: Any) -> str:
        return amount_with_currency(grant.remaining_now, grant.currency_id)

    @admin.display(description="status now")
    def status_display(self, grant: Any) -> str:
        return grant.status_now

    @admin.display(description="now (as the API shows it)")
    def now(self, grant: CreditGrant) -> str:
        document = grant_get(grant_id=grant.id)
        return format_html(
            "status {}: {} remaining, {} consumed, {} reserved, {} expired, {} voided of {} granted",
            document["status"],
            *(
                amount_with_currency(document[key], grant.currency_id)
                for key in ("remaining", "consumed", "reserved", "expired", "voided", "amount")
            ),
        )

    @admin.display(description="history")
    def history(self, grant: CreditGrant) -> str:
        """Every allocation of the grant, oldest first: the lineage of each of its credits."""
        movements = grant_get(grant_id=grant.id)["history"]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    movement["createdAt"],
                    movement["kind"],
                    amount_with_currency(movement["amount"], grant.currency_id),
                    movement["description"] or "-",
                    admin_link(Transfer, movement["transferId"]),
                    admin_link(Entry, movement["entryId"]),
                )
                for movement in movements
            ),
        )
        return format_html(
            '<p>{} movements</p><table id="grant-history"><thead><tr><th>at</th><th>kind</th><th>amount</th>'
            "<th>description</th><th>transfer</th><th>entry</th></tr></thead><tbody>{}</tbody></table>",
            len(movements),
            rows or format_html("<tr><td colspan=6>{}</td></tr>", "none yet"),
        )
