from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0006_post_transfer_event_registry")]

    operations = [run_sql_file(__file__, "0007_account_closed_final")]
