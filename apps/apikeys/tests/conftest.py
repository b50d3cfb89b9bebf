from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

from apps.apikeys.verdicts import VerdictCache, verdicts


@pytest.fixture
def listening(settings) -> VerdictCache:
    """This process's verdict cache, on (30 s at most) and its listener listening."""
    settings.LEDGER = {**settings.LEDGER, "API_KEY_CACHE_SECONDS": 30}
    verdicts.listener_start()
    assert verdicts.listener_wait(timeout=10), "the API key listener did not connect"
    return verdicts


@pytest.fixture
def elsewhere(transactional_db) -> Iterator[psycopg.Connection]:
    """A connection of its own to the test database, in autocommit: what another process
    changes there, this process learns of only through the database."""
    params = {**connection.get_connection_params(), "autocommit": True}
    with psycopg.connect(**params) as conn:
        yield conn
