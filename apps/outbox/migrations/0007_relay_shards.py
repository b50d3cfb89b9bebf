from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("outbox", "0006_actor")]

    operations = [run_sql_file(__file__, "0007_relay_shards")]
