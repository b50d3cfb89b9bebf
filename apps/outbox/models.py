from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it describes, waiting to be
    relayed to Kafka. `id` gives the relay its order; `event_id` is the consumers' dedup key."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True)
    topic = models.CharField(max_length=100)
    key = models.CharField(max_length=100, help_text="Kafka message key: the aggregate id.")
    event_type = models.CharField(max_length=100)
    payload = models.JSONField()
    headers = models.JSONField(default=dict)
    created_at = models.DateTimeField(db_default=Now())
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "outbox_event"
        indexes = [
            models.Index(fields=["id"], condition=Q(published_at__isnull=True), name="outbox_event_unpublished"),
            models.Index(
                fields=["published_at"], condition=Q(published_at__isnull=False), name="outbox_event_published"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class OutboxDelivery(models.Model):
    """The relay's latest delivery of an outbox row: its partition, and its relay position
    (the message's `relay_position` header), which rises in the order the relay produces.
    If the broker loses its history, the rows delivered after the last position the
    projection consumer applied on their partition are published again. A table of its own:
    the envelope builder outbox_event_row returns outbox_event's row type, so that table keeps
    its columns."""

    outbox_id = models.BigIntegerField(primary_key=True)
    relay_position = models.BigIntegerField()
    partition = models.IntegerField()

    class Meta:
        db_table = "outbox_delivery"

    def __str__(self) -> str:
        return f"outbox row {self.outbox_id} at position {self.relay_position} on partition {self.partition}"


class RelayState(models.Model):
    """The relay's failure streak and when it may try again, and the broker it publishes
    to: shared by every worker process, so backoff and recovery hold across beat runs."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    consecutive_failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    cluster_id = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        help_text="The Kafka cluster id the relay last found it publishes to; null before the first run.",
    )
    consumer_positions = models.JSONField(
        default=dict,
        blank=True,
        help_text="{topic: {partition: relay position}} the projection consumer had applied, read just "
        "before the relay last found the broker unchanged: what it republishes after if the "
        "broker turns out to have lost its history.",
    )
    kafka_history_complete = models.BooleanField(
        default=True,
        help_text="False once the relay has found Kafka lost what it published: its topics then miss "
        "events that only the ledger still has, so they cannot rebuild the projections.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "outbox_relay_state"
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="outbox_relay_state_singleton")]

    def __str__(self) -> str:
        return f"relay on cluster {self.cluster_id or '(none yet)'}, {self.consecutive_failures} failures in a row"
