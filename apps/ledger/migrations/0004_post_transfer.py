from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0003_support_group"),
        ("outbox", "0002_relaystate"),
    ]

    operations = [run_sql_file(__file__, "0004_post_transfer")]
