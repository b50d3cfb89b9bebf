from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from apps.accounts.models import Account, AccountChange, AccountStatus, Currency
from apps.accounts.services import account_update
from creditledger.actor import UNRECORDED, user_actor
from creditledger.admin import LedgerTableAdmin, ReadOnlyAdminMixin, amount_with_currency
from creditledger.errors import LedgerError

#: Members may freeze and unfreeze accounts (migration accounts.0004 creates the group).
SUPPORT_LEAD_GROUP = "support-lead"


def is_support_lead(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Group membership, not a permission: a superuser is not a support lead by default."""
    return (
        isinstance(user, User)
        and user.is_active
        and user.is_staff
        and user.groups.filter(name=SUPPORT_LEAD_GROUP).exists()
    )


class AccountStatusForm(forms.Form):
    """Freeze an active account or unfreeze a frozen one: the only write the admin allows."""

    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}), help_text="Kept for good.")

    def __init__(self, *args, account: Account, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.new_status = AccountStatus.FROZEN if account.status == AccountStatus.ACTIVE else AccountStatus.ACTIVE


@admin.register(Currency)
class CurrencyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("code", "name", "scale", "actor")
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
        "actor",
    )
    list_filter = ("currency", "status", "created_at")
    # Every term through an index: the id exactly; the start of an external reference
    # (LIKE 'term%', served by the varchar_pattern_ops index Django creates beside
    # external_ref's); the start of the name in any case (account_name_upper_prefix).
    search_fields = ("id", "external_ref__startswith", "name__istartswith")
    search_help_text = "Account id (exact), or the start of its external reference (case-sensitive) or of its name."
    # UUIDv7 ids sort by creation: newest first, straight from the primary key index.
    ordering = ("-id",)
    sortable_by = ("id",)
    readonly_fields = ("statement", "transfers", "history")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "name",
                    "external_ref",
                    "currency",
                    "status",
                    "metadata",
                    "created_at",
                    "updated_at",
                    "actor",
                )
            },
        ),
        ("Balance", {"fields": ("balance", "overdraft_limit", "last_sequence", "statement", "transfers")}),
        ("Changes", {"fields": ("history",)}),
    )

    def get_urls(self) -> list[URLPattern]:
        status_view = self.admin_site.admin_view(self.status_change_view)
        return [path("<path:object_id>/status/", status_view, name="accounts_account_status"), *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_change_status": is_support_lead(request.user)}
        return super().change_view(request, object_id, form_url, extra_context)

    def status_change_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Freeze or unfreeze through the same service as PATCH /accounts/{id}, with a reason."""
        if not is_support_lead(request.user):
            raise PermissionDenied
        account = self.get_object(request, object_id)
        if account is None:
            raise Http404(f"No account {object_id}.")
        change_url = reverse("admin:accounts_account_change", args=[account.pk])
        if account.status == AccountStatus.CLOSED:
            self.message_user(request, "A closed account never changes.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        form = AccountStatusForm(request.POST or None, account=account)
        if request.method == "POST" and form.is_valid():
            try:
                account_update(
                    account_id=account.id,
                    status=form.new_status,
                    reason=form.cleaned_data["reason"],
                    changed_by=request.user.get_username(),
                )
            except LedgerError as error:
                form.add_error(None, error.detail)
            else:
                action = "Froze" if form.new_status == AccountStatus.FROZEN else "Unfroze"
                self.log_change(request, account, f"{action} the account: {form.cleaned_data['reason']}")
                self.message_user(request, f"The account is now {form.new_status}.", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": account,
            "form": form,
            "new_status": form.new_status,
            "title": f"{'Freeze' if form.new_status == AccountStatus.FROZEN else 'Unfreeze'} {account}",
        }
        return TemplateResponse(request, "admin/accounts/account/status_change.html", context)

    @admin.display(description="balance (minor units)", ordering="balance")
    def balance_display(self, account: Account) -> str:
        return amount_with_currency(account.balance, account.currency_id)

    @admin.display(description="entries")
    def statement(self, account: Account) -> str:
        url = reverse("admin:ledger_entry_changelist") + "?" + urlencode({"account": account.id})
        return format_html('<a href="{}">{} entries, latest first</a>', url, account.last_sequence)

    @admin.display(description="changes to the account")
    def history(self, account: Account) -> str:
        """Every change, latest first, with its reason: rare enough to show them all."""
        changes = list(AccountChange.objects.filter(account=account).order_by("-created_at"))
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((c.created_at, c.changes, c.reason or "-", _changed_by(c)) for c in changes),
        )
        return format_html(
            "<p>{} changes, latest first</p>"
            "<table><thead><tr><th>at</th><th>changed to</th><th>reason</th><th>by</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            len(changes),
            rows or format_html("<tr><td colspan=4>{}</td></tr>", "none"),
        )

    @admin.display(description="transfers")
    def transfers(self, account: Account) -> str:
        url = reverse("admin:ledger_transfer_changelist") + "?" + urlencode({"q": account.id})
        return format_html('<a href="{}">Transfers from or to this account</a>', url)


def _changed_by(change: AccountChange) -> str:
    """Its actor; for a change from before actors were recorded, the admin user, else "API"."""
    if change.actor != UNRECORDED:
        return change.actor
    return user_actor(change.changed_by) if change.changed_by else "API"
