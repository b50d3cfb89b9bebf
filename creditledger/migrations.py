"""Migration helpers: invariants live in plain .sql files next to the app, with reverse SQL."""

from pathlib import Path

from django.db import migrations


def run_sql_file(app_file: str, name: str) -> migrations.RunSQL:
    """RunSQL from `<app>/sql/<name>.sql`, reversed by `<app>/sql/<name>.reverse.sql`."""
    sql_dir = Path(app_file).resolve().parent.parent / "sql"
    return migrations.RunSQL(
        sql=(sql_dir / f"{name}.sql").read_text(),
        reverse_sql=(sql_dir / f"{name}.reverse.sql").read_text(),
    )
