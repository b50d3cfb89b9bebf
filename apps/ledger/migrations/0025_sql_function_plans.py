"""The SQL functions a posted transfer calls keep their plans before PostgreSQL 18
(sql/0025_sql_function_plans.sql): one becomes PL/pgSQL, two are declared STABLE, as their
bodies are, so that the planner inlines them."""

from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0024_pending_at")]

    operations = [run_sql_file(__file__, "0025_sql_function_plans")]
