import django.contrib.postgres.indexes
import django.db.models.expressions
from django.db import migrations, models

# Transfers projected before postings existed had one posting: their own columns.
POSTINGS_BACKFILL = """
UPDATE projection_transfer
   SET postings = jsonb_build_array(jsonb_build_object(
       'from', from_account_id, 'to', to_account_id, 'amount', amount, 'currency', currency))
"""


class Migration(migrations.Migration):
    dependencies = [
        ("projections", "0002_consumer_relay_position"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="projectedtransfer", name="projection_transfer_from"),
        migrations.RemoveIndex(model_name="projectedtransfer", name="projection_transfer_to"),
        migrations.AlterField(
            model_name="projectedtransfer", name="from_account_id", field=models.UUIDField(null=True)
        ),
        migrations.AlterField(model_name="projectedtransfer", name="to_account_id", field=models.UUIDField(null=True)),
        migrations.AlterField(model_name="projectedtransfer", name="amount", field=models.BigIntegerField(null=True)),
        migrations.AlterField(
            model_name="projectedtransfer", name="currency", field=models.CharField(max_length=16, null=True)
        ),
        migrations.AddField(
            model_name="projectedtransfer", name="description", field=models.CharField(max_length=500, null=True)
        ),
        migrations.AddField(
            model_name="projectedtransfer",
            name="postings",
            field=models.JSONField(help_text="[{from, to, amount, currency}], in the transfer's order.", default=list),
        ),
        migrations.RunSQL(POSTINGS_BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.AddField(
            model_name="projectedtransfer",
            name="account_ids",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.expressions.CombinedExpression(
                    models.Func(
                        models.F("postings"),
                        models.Value("$[*].from"),
                        function="jsonb_path_query_array",
                        output_field=models.JSONField(),
                    ),
                    "||",
                    models.Func(
                        models.F("postings"),
                        models.Value("$[*].to"),
                        function="jsonb_path_query_array",
                        output_field=models.JSONField(),
                    ),
                    output_field=models.JSONField(),
                ),
                help_text="Every account of its postings (JSON array, GIN-indexed): the list's account filter.",
                output_field=models.JSONField(),
            ),
        ),
        migrations.AddIndex(
            model_name="projectedtransfer",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["account_ids"], name="projection_transfer_accounts", opclasses=["jsonb_path_ops"]
            ),
        ),
    ]
