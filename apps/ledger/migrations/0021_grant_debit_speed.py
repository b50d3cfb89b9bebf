import django.db.models.deletion
from django.db import migrations, models

from creditledger.migrations import run_sql_file


class Migration(migrations.Migration):
    """A debit drawing from many grants checks them per statement (sql/0021_grant_debit_speed.sql):
    the deferred grant check takes over the foreign keys of grant_allocation, dropped here."""

    dependencies = [("ledger", "0020_group_commit")]

    operations = [
        run_sql_file(__file__, "0021_grant_debit_speed"),
        migrations.AlterField(
            model_name="grantallocation",
            name="entry",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="ledger.entry",
            ),
        ),
        migrations.AlterField(
            model_name="grantallocation",
            name="grant",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="allocations",
                to="ledger.creditgrant",
            ),
        ),
        migrations.AlterField(
            model_name="grantallocation",
            name="transfer",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="ledger.transfer",
            ),
        ),
    ]
