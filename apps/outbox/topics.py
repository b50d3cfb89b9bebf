"""Kafka topics the ledger publishes to, and the header the relay adds to every message.
Documented in docs/events.md."""

ACCOUNT_TOPIC = "ledger.account.v1"
TRANSFER_TOPIC = "ledger.transfer.v1"
ENTRY_TOPIC = "ledger.entry.v1"

ALL_TOPICS = (ACCOUNT_TOPIC, TRANSFER_TOPIC, ENTRY_TOPIC)

#: The relay's position of a delivery: it increases with every message the relay produces.
RELAY_POSITION_HEADER = "relay_position"
