"""The Kafka names the relay and the consumer use: the topics, read from the event registry,
and the header the relay adds to every message. Documented in docs/events.md."""

from apps.outbox.registry import ACCOUNT_CREATED, ENTRY_POSTED, TOPICS, TRANSFER_POSTED

ACCOUNT_TOPIC = ACCOUNT_CREATED.topic
TRANSFER_TOPIC = TRANSFER_POSTED.topic
ENTRY_TOPIC = ENTRY_POSTED.topic

ALL_TOPICS = TOPICS

#: The relay's position of a delivery: it increases with every message the relay produces.
RELAY_POSITION_HEADER = "relay_position"
