from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("outbox", "0003_relay_recovery")]

    operations = [run_sql_file(__file__, "0004_event_registry")]
