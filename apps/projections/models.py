"""Read models built from the ledger's events. Every table is keyed so that applying an
event twice is a no-op enforced by PostgreSQL: balances carry the sequence they are at,
statement lines are unique per (account, sequence), transfers per id."""

from django.db import models


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

    @property
    def side(self) -> str:
        return "credit" if self.amount > 0 else "debit"


class ProjectedTransfer(models.Model):
    transfer_id = models.UUIDField(primary_key=True)
    from_account_id = models.UUIDField()
    to_account_id = models.UUIDField()
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=16)
    status = models.CharField(max_length=16)
    idempotency_key = models.CharField(max_length=255)
    metadata = models.JSONField(default=dict)
    entries = models.JSONField(help_text="The transfer's entries as the TransferPosted event carried them.")
    created_at = models.DateTimeField()
    applied_at = models.DateTimeField()

    class Meta:
        db_table = "projection_transfer"
        indexes = [
            models.Index(fields=["from_account_id", "transfer_id"], name="projection_transfer_from"),
            models.Index(fields=["to_account_id", "transfer_id"], name="projection_transfer_to"),
            models.Index(fields=["created_at"], name="projection_transfer_time"),
        ]

    def __str__(self) -> str:
        return f"{self.transfer_id}: {self.amount} {self.currency} {self.from_account_id} -> {self.to_account_id}"


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
