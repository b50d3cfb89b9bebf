"""The event registry is the one declaration of the contract: the SQL, the docs, the consumer's
validation and the projector's dispatch must all agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from apps.outbox.registry import ENVELOPE_SCHEMA, EVENT_TYPES, TOPICS
from apps.projections.projector import EVENT_APPLIERS
from creditledger.actor import ACTOR_PATTERN
from creditledger.ids import new_id

CATALOGUE = Path(settings.BASE_DIR) / "docs" / "events.md"
#: A string literal in SQL that looks like one of our topics.
TOPIC_LITERAL = re.compile(r"'(ledger\.[a-z_]+\.v\d+)'")
#: A call of the envelope builder, capturing its event type when it is a literal.
ROW_CALL = re.compile(r"outbox_event_row\(")
ROW_CALL_WITH_TYPE = re.compile(r"outbox_event_row\(\s*[^,()]+(?:\[[^\]]*\])?,\s*'([^']*)'")


def _function_sources() -> dict[str, str]:
    """The source of every function our migrations created (not those of extensions)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT p.proname, p.prosrc FROM pg_proc p
                WHERE p.pronamespace = current_schema()::regnamespace
                  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"""
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db
def test_the_event_type_table_sql_reads_is_the_registry():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, topic, version, aggregate_type FROM outbox_event_type ORDER BY name")
        table = cursor.fetchall()
    assert table == sorted((e.name, e.topic, e.version, e.aggregate_type) for e in EVENT_TYPES.values())


@pytest.mark.django_db
def test_sql_emits_only_registered_event_types_and_never_names_a_topic_or_builds_an_envelope():
    sources = _function_sources()
    emitted = [event_type for source in sources.values() for event_type in ROW_CALL_WITH_TYPE.findall(source)]
    calls = sum(len(ROW_CALL.findall(source)) for source in sources.values())

    assert emitted, "ledger_post_transfer writes its events through outbox_event_row"
    assert len(emitted) == calls, "every outbox_event_row call names its event type as a literal"
    assert set(emitted) <= set(EVENT_TYPES)
    assert {
        name: TOPIC_LITERAL.findall(source) for name, source in sources.items() if TOPIC_LITERAL.search(source)
    } == {}
    assert [name for name, source in sources.items() if "'eventId'" in source] == ["outbox_event_row"]
    writers = {name for name, source in sources.items() if re.search(r"INSERT\s+INTO\s+outbox_event\b", source)}
    assert writers == {name for name, source in sources.items() if ROW_CALL.search(source)}


@pytest.mark.django_db
def test_an_event_type_the_registry_does_not_know_is_refused():
    with (
        pytest.raises(DatabaseError, match="TransferRefunded is not in the event registry"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT outbox_event_row(%s, 'TransferRefunded', 'key', now(), '{}', '{}')", [new_id()])


def test_the_catalogue_lists_the_registered_topics_and_types():
    text = CATALOGUE.read_text()
    section = text.split("## Topics and keys", 1)[1].split("\n## ", 1)[0]
    documented = {
        match[1]: set(re.findall(r"`(\w+)`", match[2]))
        for match in re.finditer(r"^\| `([\w.]+)` \| ([^|]+) \|", section, re.MULTILINE)
        if match[1] != settings.KAFKA["DEAD_LETTER_TOPIC"]
    }
    registered = {topic: {e.name for e in EVENT_TYPES.values() if e.topic == topic} for topic in TOPICS}
    assert documented == registered
    assert {name for name in EVENT_TYPES if f"\n## {name}\n" not in text} == set()


def test_the_projector_applies_every_registered_event_type():
    assert set(EVENT_APPLIERS) == set(EVENT_TYPES.values())


def test_the_ledger_and_accounts_do_not_import_celery_tasks():
    """The outbox owns the commit-time relay kick (outbox_relay_kick_on_commit)."""
    apps_dir = Path(settings.BASE_DIR) / "apps"
    importers = [
        str(path.relative_to(apps_dir))
        for app in ("ledger", "accounts")
        for path in (apps_dir / app).rglob("*.py")
        if "apps.outbox.tasks" in path.read_text()
    ]
    assert importers == []


def test_the_envelopes_actor_is_what_the_actor_columns_hold():
    """The registry cannot import creditledger.actor; the two patterns are kept equal here."""
    assert ENVELOPE_SCHEMA["properties"]["actor"]["pattern"] == ACTOR_PATTERN.pattern
