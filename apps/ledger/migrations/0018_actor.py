from django.db import migrations, models

from creditledger.migrations import run_sql_file

ACTOR_FIELD = models.CharField(
    db_default=models.Func(function="write_actor", output_field=models.CharField()),
    editable=False,
    help_text="Who wrote it: key:<id>, user:<name>, anonymous or system (creditledger/actor.py).",
    max_length=160,
)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0017_checks_and_plans_sql"), ("accounts", "0007_actor")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[run_sql_file(__file__, "0018_actor")],
            state_operations=[
                migrations.AddField(model_name=model_name, name="actor", field=ACTOR_FIELD.clone())
                for model_name in ("transfer", "creditgrant", "idempotencyrecord")
            ],
        )
    ]
