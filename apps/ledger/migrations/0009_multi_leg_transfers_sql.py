from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0008_multi_leg_transfers")]

    operations = [run_sql_file(__file__, "0009_multi_leg_transfers")]
