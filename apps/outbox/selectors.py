"""Reads of the outbox's own state, for the other apps."""

from apps.outbox.models import RelayState


def outbox_kafka_history_complete() -> bool:
    """Whether the ledger topics still hold every event the relay published: false once a
    broker has lost its history (the embedded one keeps nothing across restarts)."""
    state = RelayState.objects.filter(id=1).first()
    return state is None or state.kafka_history_complete
