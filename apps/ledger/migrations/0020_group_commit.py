from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0019_system_bookings_sql")]

    operations = [run_sql_file(__file__, "0020_group_commit")]
