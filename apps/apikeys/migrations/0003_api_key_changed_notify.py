from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("apikeys", "0002_throttle_cache")]

    operations = [run_sql_file(__file__, "0003_api_key_changed_notify")]
