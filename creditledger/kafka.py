"""confluent-kafka clients built from settings.KAFKA, so broker-specific tuning stays in configuration."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)


class KafkaNotConfigured(ImproperlyConfigured):
    """No broker address: said at once, instead of a client retrying an empty address."""


def _base_config() -> dict[str, Any]:
    if not settings.KAFKA["BOOTSTRAP_SERVERS"]:
        raise KafkaNotConfigured(
            "no Kafka broker: KAFKA_BOOTSTRAP_SERVERS is empty and no `make run` stack is running. Start "
            "`make run` (every other command then uses its embedded broker), or set KAFKA_BOOTSTRAP_SERVERS."
        )
    return {"bootstrap.servers": settings.KAFKA["BOOTSTRAP_SERVERS"]}


def producer_create(**overrides: Any) -> Producer:
    return Producer({**_base_config(), **settings.KAFKA["PRODUCER_CONFIG"], **overrides})


def consumer_create(group_id: str, **overrides: Any) -> Consumer:
    return Consumer({**_base_config(), **settings.KAFKA["CONSUMER_CONFIG"], "group.id": group_id, **overrides})


def topics_ensure(topics: Iterable[str], *, timeout: float = 10.0) -> None:
    """Create the topics that do not exist yet, with the configured partition count."""
    admin = AdminClient(_base_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [
        NewTopic(topic, num_partitions=settings.KAFKA["TOPIC_PARTITIONS"], replication_factor=1)
        for topic in topics
        if topic not in existing
    ]
    if not missing:
        return
    for topic, future in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            future.result()
            logger.info("created topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def headers_as_list(headers: dict[str, str]) -> list[tuple[str, str | bytes | None]]:
    return [(name, value.encode()) for name, value in headers.items()]
