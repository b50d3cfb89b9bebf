from django.db import models
from django.db.models import Q

from creditledger.actor import actor_field
from creditledger.ids import new_id


class Currency(models.Model):
    """A unit balances are kept in: an ISO 4217 currency or a custom credit type."""

    code = models.CharField(primary_key=True, max_length=16)
    scale = models.PositiveSmallIntegerField(
        help_text="Digits after the decimal point: 2 for USD, 0 for JPY or CREDITS."
    )
    name = models.CharField(max_length=100)

    actor = actor_field()

    class Meta:
        db_table = "currency"
        verbose_name_plural = "currencies"
        constraints = [
            models.CheckConstraint(condition=Q(code__regex=r"^[A-Z][A-Z0-9_]{2,15}$"), name="currency_code_format"),
            models.CheckConstraint(condition=Q(scale__lte=18), name="currency_scale_range"),
        ]

    def __str__(self) -> str:
        return self.code


class AccountStatus(models.TextChoices):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class Account(models.Model):
    """A ledger account. `balance` and `last_sequence` are the write model: the posting
    function `ledger_post_transfer` (apps/ledger/sql) sets them with each entry it writes,
    and a deferred trigger checks at commit that they are those of the latest entry."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    currency = models.ForeignKey(Currency, on_delete=models.PROTECT, db_column="currency", related_name="+")
    name = models.CharField(max_length=200, null=True, blank=True)
    external_ref = models.CharField(max_length=200, null=True, blank=True, db_index=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    overdraft_limit = models.BigIntegerField(
        null=True, blank=True, help_text="null: unlimited; 0: never negative; N: may go down to -N."
    )
    balance = models.BigIntegerField(default=0)
    last_sequence = models.BigIntegerField(default=0, help_text="Sequence number of the account's latest entry.")
    pending_debits = models.BigIntegerField(
        default=0, help_text="Sum of the open holds debiting this account (kept by the ledger's hold SQL)."
    )
    pending_credits = models.BigIntegerField(
        default=0, help_text="Sum of the open holds crediting this account (kept by the ledger's hold SQL)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    actor = actor_field()

    class Meta:
        db_table = "account"
        constraints = [
            models.CheckConstraint(condition=Q(status__in=AccountStatus.values), name="account_status_valid"),
            models.CheckConstraint(
                condition=Q(overdraft_limit__isnull=True) | Q(overdraft_limit__gte=0),
                name="account_overdraft_limit_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(overdraft_limit__isnull=True) | Q(balance__gte=-models.F("overdraft_limit")),
                name="account_balance_within_overdraft",
            ),
            models.CheckConstraint(condition=Q(last_sequence__gte=0), name="account_last_sequence_non_negative"),
            models.CheckConstraint(
                condition=Q(pending_debits__gte=0, pending_credits__gte=0), name="account_pending_non_negative"
            ),
            # Target of the entry (account_id, currency) foreign key: an entry's currency is its account's.
            models.UniqueConstraint(fields=["id", "currency"], name="account_id_currency_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.id} ({self.currency_id})"


class AccountChange(models.Model):
    """One PATCH of an account, kept for good: what changed, why and by whom. The
    AccountUpdated event carries the same, but the outbox forgets it after a day."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    changes = models.JSONField(help_text="The changed fields with their new values, named as in the API.")
    reason = models.TextField(null=True, blank=True)
    changed_by = models.CharField(max_length=150, null=True, blank=True, help_text="The admin user; null for the API.")
    created_at = models.DateTimeField()

    actor = actor_field()

    class Meta:
        db_table = "account_change"
        indexes = [models.Index(fields=["account", "created_at"], name="account_change_account_time")]

    def __str__(self) -> str:
        return f"{self.account_id} at {self.created_at}: {self.changes}"
