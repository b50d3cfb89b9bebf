"""Read models built from the ledger's events. Every table is keyed so that applying an
event twice is a no-op enforced by PostgreSQL: balances carry the sequence they are at,
statement lines are unique per (account, sequence), transfers per id."""

from decimal import Decimal

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import F, Func, Value
from django.db.models.expressions import CombinedExpression


def _posting_accounts(side: str) -> Func:
    """The `side` ("from" or "to") account of every posting, as a JSON array (built in, so
    the replay can create the table in a schema of its own)."""
    return Func(
        F("postings"), Value(f"$[*].{side}"), function="jsonb_path_query_array", output_field=models.JSONField()
    )


class ProjectedBalance(models.Model):
    account_id = models.UUIDField(primary_key=True)
    currency = models.CharField(max_length=16)
    balance = models.BigIntegerField()
    last_sequence = models.BigIntegerField(help_text="Sequence of the latest entry applied.")
    updated_at = models.DateTimeField(help_text="When the latest applied entry was posted.")
    applied_at = models.DateTimeField()

    class Meta:
        db_table = "projection_balance"

    def __str__(self) -> str:
        return f"{self.account_id}: {self.balance} {self.currency} at #{self.last_sequence}"


class ProjectedStatementLine(models.Model):
    pk = models.CompositePrimaryKey("account_id", "sequence")
    account_id = models.UUIDField()
    sequence = models.BigIntegerField()
    entry_id = models.UUIDField()
    transfer_id = models.UUIDField()
    counterparty_id = models.UUIDField()
    currency = models.CharField(max_length=16)
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    created_at = models.DateTimeField()
    applied_at = models.DateTimeField()

    class Meta:
        db_table = "projection_statement_line"
        indexes = [models.Index(fields=["account_id", "created_at"], name="projection_line_account_time")]

    def __str__(self) -> str:
        return f"{self.account_id} #{self.sequence} {self.amount:+d} {self.currency}"


class ProjectedTransfer(models.Model):
    """A transfer as TransferPosted carried it. `from_account_id`, `to_account_id`, `amount`
    and `currency` are its one posting, NULL when it has several (then see `postings`)."""

    transfer_id = models.UUIDField(primary_key=True)
    from_account_id = models.UUIDField(null=True)
    to_account_id = models.UUIDField(null=True)
    amount = models.BigIntegerField(null=True)
    currency = models.CharField(max_length=16, null=True)
    status = models.CharField(max_length=16)
    idempotency_key = models.CharField(max_length=255)
    metadata = models.JSONField(default=dict)
    description = models.CharField(max_length=500, null=True)
    reversal_of = models.UUIDField(null=True, help_text="The transfer this one reverses.")
    reversed_amount = models.DecimalField(
        max_digits=21,
        decimal_places=0,
        db_default=Decimal(0),
        help_text="What its reversals moved back (TransferReversed).",
    )
    postings = models.JSONField(default=list, help_text="[{from, to, amount, currency}], in the transfer's order.")
    entries = models.JSONField(help_text="The transfer's entries as the TransferPosted event carried them.")
    actor = models.CharField(
        max_length=160,
        db_default="unrecorded",
        help_text="Who created it: the actor of the first event of it applied (creditledger/actor.py); unrecorded "
        "for an event from before actors were recorded.",
    )
    created_at = models.DateTimeField()
    applied_at = models.DateTimeField()
    account_ids = models.GeneratedField(
        expression=CombinedExpression(
            _posting_accounts("from"), "||", _posting_accounts("to"), output_field=models.JSONField()
        ),
        output_field=models.JSONField(),
        db_persist=True,
        help_text="Every account of its postings (JSON array, GIN-indexed): the list's account filter.",
    )

    class Meta:
        db_table = "projection_transfer"
        indexes = [
            GinIndex(fields=["account_ids"], name="projection_transfer_accounts", opclasses=["jsonb_path_ops"]),
            models.Index(fields=["created_at"], name="projection_transfer_time"),
            models.Index(fields=["actor", "transfer_id"], name="projection_transfer_actor"),
        ]

    def __str__(self) -> str:
        if self.from_account_id is None:
            return f"{self.transfer_id}: {len(self.postings)} postings"
        return f"{self.transfer_id}: {self.amount} {self.currency} {self.from_account_id} -> {self.to_account_id}"


class ProjectedGrant(models.Model):
    """A credit grant as its latest Grant* event carried it (docs/events.md): `document` is
    the grant as GET /grants/{id} showed it then; `updated_at` orders the events of one grant."""

    grant_id = models.UUIDField(primary_key=True)
    account_id = models.UUIDField()
    status = models.CharField(max_length=16)
    document = models.JSONField()
    updated_at = models.DateTimeField(help_text="The grant's updatedAt in the event applied.")
    applied_at = models.DateTimeField()

    class Meta:
        db_table = "projection_grant"
        indexes = [models.Index(fields=["account_id"], name="projection_grant_account")]

    def __str__(self) -> str:
        return f"{self.grant_id} on {self.account_id}: {self.status}"


class ConsumerOffset(models.Model):
    """How far a consumer group has applied each partition, written in the same transaction
    as the projection rows (the eventsourcing library's tracking table). The outbox relay
    reads it: when Kafka loses its history, it publishes again what came after
    `relay_position` on each partition (docs/adr/0007)."""

    pk = models.CompositePrimaryKey("consumer_group", "topic", "partition")
    consumer_group = models.CharField(max_length=200)
    topic = models.CharField(max_length=200)
    partition = models.IntegerField()
    offset = models.BigIntegerField(
        help_text="Kafka offset of the last message applied, on the broker it came from (a new broker starts "
        "again at 0); it moves with relay_position."
    )
    relay_position = models.BigIntegerField(
        null=True, help_text="Greatest relay position (header relay_position) applied; it never goes back."
    )
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "projection_consumer_offset"

    def __str__(self) -> str:
        return f"{self.consumer_group} {self.topic}[{self.partition}] at offset {self.offset}"
