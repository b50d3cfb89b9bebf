"""The entries one transaction writes on an account share its time: the last entry at or before an
instant is the one of the highest sequence among them, found by an index that ends in the sequence."""

from django.db import migrations, models

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0022_hold_to_account_index")]

    operations = [
        migrations.AddIndex(
            model_name="entry",
            index=models.Index(fields=["account", "created_at", "sequence"], name="entry_account_created_seq"),
        ),
        migrations.RemoveIndex(model_name="entry", name="entry_account_created_at"),
        run_sql_file(__file__, "0023_entry_time_ties"),
    ]
