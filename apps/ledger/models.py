"""The journal. Rows here are append-only: PostgreSQL rejects UPDATE and DELETE of entries
and of posted transfers (see sql/0002_invariants.sql)."""

from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now

from apps.accounts.models import Account, Currency
from creditledger.actor import actor_field
from creditledger.ids import new_id


class TransferStatus(models.TextChoices):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


#: The most postings one transfer may have (the API's and the service's limit).
MAX_POSTINGS = 100
DESCRIPTION_MAX_LENGTH = 500
#: A multi-leg transfer's reversed amount is the sum of up to MAX_POSTINGS amounts of up to 2^63-1.
REVERSED_AMOUNT_DIGITS = 21


class Transfer(models.Model):
    """One atomic posting of one or more postings, each a movement of an amount from one
    account to another recorded as two entries (docs/adr/0016-multi-leg-transfers.md).

    `from_account`, `to_account`, `amount` and `currency` are those of the transfer's posting
    when it has exactly one, and NULL when it has several."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    idempotency_key = models.CharField(max_length=255, unique=True)
    request_fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the canonical request.")
    # Indexed below together with id, for keyset pagination of an account's transfers.
    from_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False, null=True, blank=True
    )
    to_account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_index=False, null=True, blank=True
    )
    amount = models.BigIntegerField(null=True, blank=True)
    currency = models.ForeignKey(
        Currency,
        on_delete=models.PROTECT,
        db_column="currency",
        related_name="+",
        db_index=False,
        null=True,
        blank=True,
    )
    posting_count = models.SmallIntegerField(db_default=1, help_text="How many postings (debit-credit pairs).")
    status = models.CharField(max_length=16, choices=TransferStatus.choices)
    metadata = models.JSONField(default=dict, blank=True)
    description = models.CharField(
        max_length=DESCRIPTION_MAX_LENGTH, null=True, blank=True, help_text="Why the money moved, for people."
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="A hold's expiry; null: no expiry.")
    reversal_of = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        related_name="reversals",
        db_column="reversal_of",
        null=True,
        blank=True,
        help_text="The transfer this one reverses (docs/domain.md, Reversals).",
    )
    reversed_amount = models.DecimalField(
        max_digits=REVERSED_AMOUNT_DIGITS,
        decimal_places=0,
        db_default=Decimal(0),
        help_text="How much of this transfer reversals have moved back: the sum of their postings' amounts.",
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    actor = actor_field()

    class Meta:
        db_table = "transfer"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(condition=~Q(from_account=F("to_account")), name="transfer_distinct_accounts"),
            models.CheckConstraint(condition=Q(status__in=TransferStatus.values), name="transfer_status_valid"),
            models.CheckConstraint(condition=Q(posting_count__gte=1), name="transfer_posting_count_positive"),
            models.CheckConstraint(condition=Q(reversed_amount__gte=0), name="transfer_reversed_amount_non_negative"),
            models.CheckConstraint(condition=~Q(reversal_of=F("id")), name="transfer_reversal_of_another"),
            models.CheckConstraint(
                condition=Q(
                    posting_count=1,
                    from_account__isnull=False,
                    to_account__isnull=False,
                    amount__isnull=False,
                    currency__isnull=False,
                )
                | Q(
                    posting_count__gt=1,
                    from_account__isnull=True,
                    to_account__isnull=True,
                    amount__isnull=True,
                    currency__isnull=True,
                ),
                name="transfer_single_posting_columns",
            ),
        ]
        indexes = [
            models.Index(fields=["from_account", "id"], name="transfer_from_account_id"),
            models.Index(fields=["to_account", "id"], name="transfer_to_account_id"),
            models.Index(fields=["created_at"], name="transfer_created_at"),
            models.Index(
                fields=["expires_at"],
                name="transfer_pending_expiry",
                condition=Q(status="pending", expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        if self.posting_count > 1:
            return f"{self.posting_count} postings"
        return f"{self.amount} {self.currency_id} {self.from_account_id} -> {self.to_account_id}"


class Entry(models.Model):
    """One side of a posting on one account: a signed amount (credit > 0, debit < 0),
    the account's next gapless sequence number and its balance after this entry. Each
    posting of a transfer is one debit and one credit with the same `posting_index`."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="entries")
    # (account, sequence) is unique, which indexes account lookups already.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    counterparty = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, db_column="currency", related_name="+", db_index=False
    )
    amount = models.BigIntegerField()
    sequence = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    posting_index = models.SmallIntegerField(db_default=0, help_text="The posting's place in its transfer, from 0.")
    created_at = models.DateTimeField()

    class Meta:
        db_table = "entry"
        verbose_name_plural = "entries"
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_non_zero"),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="entry_sequence_positive"),
            models.UniqueConstraint(fields=["account", "sequence"], name="entry_account_sequence_unique"),
        ]
        indexes = [
            # The last entry at or before an instant: one transaction's entries on an account share its time.
            models.Index(fields=["account", "created_at", "sequence"], name="entry_account_created_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.amount:+d} {self.currency_id} on {self.account_id}"

    @property
    def side(self) -> str:
        return "credit" if self.amount > 0 else "debit"


class Hold(models.Model):
    """What a pending transfer reserves, one row per posting: `amount` of `currency` held on
    `from_account` (its pending debits) for `to_account` (its pending credits). Open while the
    transfer is pending; a post, void or expiry closes it (the only change PostgreSQL allows).
    The rows stay, so a settled hold still shows what was held."""

    id = models.BigAutoField(primary_key=True)
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="holds", db_index=False)
    posting_index = models.SmallIntegerField()
    from_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    to_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, db_column="currency", related_name="+", db_index=False
    )
    amount = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True, help_text="The transfer's expiry, copied for the reads.")
    open = models.BooleanField(default=True)

    class Meta:
        db_table = "transfer_hold"
        constraints = [
            models.UniqueConstraint(fields=["transfer", "posting_index"], name="transfer_hold_posting_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_hold_amount_positive"),
            models.CheckConstraint(condition=~Q(from_account=F("to_account")), name="transfer_hold_distinct_accounts"),
        ]
        indexes = [
            models.Index(fields=["from_account"], name="transfer_hold_open_from", condition=Q(open=True)),
            # Every hold an account placed, settled too: the explanation's hold lines.
            models.Index(fields=["from_account", "transfer"], name="transfer_hold_from_account"),
            models.Index(fields=["to_account"], name="transfer_hold_open_to", condition=Q(open=True)),
            # Every hold an account was credited by: the holds pending at a past instant (asOf).
            models.Index(fields=["to_account", "transfer"], name="transfer_hold_to_account"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency_id} {self.from_account_id} -> {self.to_account_id}"


class IdempotencyRecord(models.Model):
    """The first outcome for an idempotency key: the transfer it created (`command` null), the
    transfer a post or void command settled, or the business error it was refused with.
    Replays return the same outcome."""

    key = models.CharField(primary_key=True, max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    command = models.CharField(
        max_length=16,
        null=True,
        blank=True,
        help_text="post, void or grant_void: the command on a transfer or grant the key ran; null: a transfer or "
        "grant created.",
    )
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    actor = actor_field()

    class Meta:
        db_table = "idempotency_record"
        constraints = [
            models.CheckConstraint(
                condition=~Q(transfer__isnull=False, error__isnull=False),
                name="idempotency_record_one_outcome",
            ),
            models.UniqueConstraint(
                fields=["transfer"], condition=Q(command__isnull=True), name="idempotency_record_one_per_transfer"
            ),
        ]

    def __str__(self) -> str:
        return self.key


class GrantStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    ACTIVE = "active"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    VOIDED = "voided"


#: A grant's priority: lower burns first (docs/credits.md).
GRANT_PRIORITY_MIN = 0
GRANT_PRIORITY_MAX = 100
GRANT_PRIORITY_DEFAULT = 50


class CreditGrant(models.Model):
    """A lot of credits on an account: `amount` credited from `funding_account` by `transfer`,
    usable from `effective_at` until `expires_at`, burnt down by the account's debits in a
    fixed order (priority, soonest expiry, creation) before its unrestricted balance. What
    happened to it is its allocations; the counters here are their sums, checked by
    PostgreSQL at commit (sql/0015_grants.sql). What expires moves to `expire_to_account`."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    funding_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    expire_to_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    transfer = models.OneToOneField(Transfer, on_delete=models.PROTECT, related_name="grant")
    currency = models.ForeignKey(
        Currency, on_delete=models.PROTECT, db_column="currency", related_name="+", db_index=False
    )
    amount = models.BigIntegerField()
    priority = models.SmallIntegerField(default=GRANT_PRIORITY_DEFAULT, help_text="0-100; lower burns first.")
    effective_at = models.DateTimeField(help_text="From when its credits count.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="When its remainder expires; null: never.")
    status = models.CharField(max_length=16, choices=GrantStatus.choices)
    consumed = models.BigIntegerField(
        default=0, help_text="Drawn by debits and posted holds, less what reversals restored."
    )
    reserved = models.BigIntegerField(default=0, help_text="Reserved by open holds.")
    expired = models.BigIntegerField(default=0, help_text="Moved to the expire-to account at expiry.")
    voided = models.BigIntegerField(default=0, help_text="Moved back to the funding account by a void.")
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    actor = actor_field()

    class Meta:
        db_table = "credit_grant"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(priority__gte=GRANT_PRIORITY_MIN, priority__lte=GRANT_PRIORITY_MAX),
                name="credit_grant_priority_range",
            ),
            models.CheckConstraint(condition=Q(status__in=GrantStatus.values), name="credit_grant_status_valid"),
            models.CheckConstraint(
                condition=Q(consumed__gte=0, reserved__gte=0, expired__gte=0, voided__gte=0),
                name="credit_grant_counters_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=F("consumed") + F("reserved") + F("expired") + F("voided")),
                name="credit_grant_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=F("effective_at")),
                name="credit_grant_expires_after_effective",
            ),
            models.CheckConstraint(condition=~Q(account=F("funding_account")), name="credit_grant_funded_elsewhere"),
            models.CheckConstraint(condition=~Q(account=F("expire_to_account")), name="credit_grant_expires_elsewhere"),
        ]
        indexes = [
            models.Index(fields=["account", "id"], name="credit_grant_account_id"),
            # A debit reads its account's active grants in burn order, and stops once drawn.
            models.Index(
                F("account"),
                F("priority"),
                F("expires_at").asc(nulls_last=True),
                F("created_at"),
                F("id"),
                name="credit_grant_burn_order",
                condition=Q(status="active"),
            ),
            # What is due on an account: grants to activate, and grants to expire.
            models.Index(
                fields=["account", "effective_at"], name="credit_grant_due_activation", condition=Q(status="scheduled")
            ),
            models.Index(
                fields=["account", "expires_at"],
                name="credit_grant_due_expiry",
                condition=Q(status__in=["scheduled", "active"]),
            ),
            models.Index(
                fields=["expires_at"],
                name="credit_grant_expiry",
                condition=Q(status="active", expires_at__isnull=False),
            ),
            models.Index(fields=["effective_at"], name="credit_grant_activation", condition=Q(status="scheduled")),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency_id} on {self.account_id} ({self.status})"

    @property
    def remaining(self) -> int:
        """What debits may still draw (a scheduled grant's whole amount, usable from effective_at)."""
        return self.amount - self.consumed - self.reserved - self.expired - self.voided


class AllocationKind(models.TextChoices):
    DRAW = "draw", "drawn by a debit"
    RESERVE = "reserve", "reserved by a hold"
    POST = "post", "consumed by a posted hold"
    RELEASE = "release", "released by a void, an expiry or a partial post of a hold"
    RESTORE = "restore", "restored by a reversal"
    EXPIRE = "expire", "expired"
    VOID = "void", "voided"


class GrantAllocation(models.Model):
    """One movement of a grant's credits, by `transfer` (and its debit or credit `entry` on the
    grant's account, for the kinds that change the balance): the lineage of every credit."""

    # No foreign key constraints: a debit writes one allocation per grant it draws from, and
    # PostgreSQL would check three keys per row at commit. The deferred grant check checks them
    # for all of a transaction's allocations in one statement (functions/ledger_check_grants.v3.sql);
    # grants, transfers and entries are never deleted.
    id = models.BigAutoField(primary_key=True)
    grant = models.ForeignKey(CreditGrant, on_delete=models.PROTECT, related_name="allocations", db_constraint=False)
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    entry = models.ForeignKey(
        Entry, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_constraint=False
    )
    kind = models.CharField(max_length=16, choices=AllocationKind.choices)
    amount = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "grant_allocation"
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="grant_allocation_amount_positive"),
            models.CheckConstraint(condition=Q(kind__in=AllocationKind.values), name="grant_allocation_kind_valid"),
            models.CheckConstraint(
                condition=Q(kind__in=["reserve", "release"], entry__isnull=True)
                | (~Q(kind__in=["reserve", "release"]) & Q(entry__isnull=False)),
                name="grant_allocation_entry_for_balance_changes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} of grant {self.grant_id}"
