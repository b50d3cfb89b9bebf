"""Kafka topics the ledger publishes to. Documented in docs/events.md."""

ACCOUNT_TOPIC = "ledger.account.v1"
TRANSFER_TOPIC = "ledger.transfer.v1"
ENTRY_TOPIC = "ledger.entry.v1"

ALL_TOPICS = (ACCOUNT_TOPIC, TRANSFER_TOPIC, ENTRY_TOPIC)
