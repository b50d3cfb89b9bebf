from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("apikeys", "0001_initial")]

    operations = [run_sql_file(__file__, "0002_throttle_cache")]
