from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("outbox", "0005_relaystate_kafka_history_complete")]

    operations = [run_sql_file(__file__, "0006_actor")]
