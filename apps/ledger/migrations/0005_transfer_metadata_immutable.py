from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0004_post_transfer")]

    operations = [run_sql_file(__file__, "0005_transfer_metadata_immutable")]
