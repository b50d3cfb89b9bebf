"""Migration helpers: invariants and SQL functions live in plain .sql files next to the app.

One file per change holds its forward SQL and, after a line `-- reverse:`, the SQL that
undoes it. A function that a later change redefines keeps each version in a file of its own
(`sql/functions/<name>.v<N>.sql`), included with psql's `\\ir <path>`: the change that brings
version 2 runs it forward and version 1 in reverse, so that no body is ever copied."""

from __future__ import annotations

import re
from pathlib import Path

from django.db import migrations

REVERSE_MARKER = re.compile(r"^-- reverse:[ \t]*\n", re.MULTILINE)
INCLUDE = re.compile(r"^\\ir[ \t]+(\S+)[ \t]*$", re.MULTILINE)


def _included(sql: str, sql_dir: Path) -> str:
    return INCLUDE.sub(lambda match: (sql_dir / match.group(1)).read_text().rstrip("\n"), sql)


def sql_change_read(sql_dir: Path, name: str) -> tuple[str, str]:
    """The forward and reverse SQL of the change `<sql_dir>/<name>.sql`, includes expanded."""
    parts = REVERSE_MARKER.split((sql_dir / f"{name}.sql").read_text())
    if len(parts) != 2:
        raise ValueError(f"{name}.sql needs exactly one line '-- reverse:' before the SQL that undoes it")
    forward, reverse = parts
    return _included(forward, sql_dir), _included(reverse, sql_dir)


def run_sql_file(app_file: str, name: str) -> migrations.RunSQL:
    """RunSQL of the change `<app>/sql/<name>.sql` (forward, then reverse after `-- reverse:`)."""
    forward, reverse = sql_change_read(Path(app_file).resolve().parent.parent / "sql", name)
    return migrations.RunSQL(sql=forward, reverse_sql=reverse)
