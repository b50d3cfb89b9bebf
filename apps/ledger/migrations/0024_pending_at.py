"""A point-in-time balance from PL/pgSQL functions, whose plans a session keeps: the holds
pending at the instant (ledger_pending_at), and the posted balance then (ledger_balance_at v3)."""

from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0023_entry_time_ties")]

    operations = [run_sql_file(__file__, "0024_pending_at")]
