from django.db import migrations

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("ledger", "0016_support_views_grants")]

    operations = [run_sql_file(__file__, "0017_checks_and_plans")]
