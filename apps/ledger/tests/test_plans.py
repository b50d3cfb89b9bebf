"""The functions a write enters by plan each statement once per session (sql/0017_checks_and_plans.sql)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_every_write_entry_point_keeps_generic_plans():
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT n.name, p.oid::regprocedure::text, p.proconfig
                 FROM unnest(ledger_write_entry_points()) AS n(name)
                 LEFT JOIN pg_proc p ON p.proname = n.name
                       AND p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"""
        )
        rows = cursor.fetchall()

    missing = [name for name, function, _ in rows if function is None]
    assert not missing, f"entry points that no longer exist: {missing}"
    without = [function for _, function, config in rows if "plan_cache_mode=force_generic_plan" not in (config or [])]
    assert not without, f"a new version dropped the setting (ALTER FUNCTION ... SET plan_cache_mode): {without}"


def test_the_application_calls_only_listed_entry_points():
    """Each ledger function the services call is an entry point, so none of them plans each call."""
    called = set()
    for path in Path(__file__).resolve().parents[2].glob("*/services.py"):
        called |= set(re.findall(r"\b(ledger_[a-z0-9_]+)\(", path.read_text()))
    with connection.cursor() as cursor:
        cursor.execute("SELECT ledger_write_entry_points()")
        (entry_points,) = cursor.fetchone()
        cursor.execute(
            "SELECT proname FROM pg_proc WHERE proname = ANY (%s) AND provolatile = 'v' AND prolang = "
            "(SELECT oid FROM pg_language WHERE lanname = 'plpgsql')",
            [sorted(called)],
        )
        writers = {row[0] for row in cursor.fetchall()}
    assert writers - set(entry_points) == set()
