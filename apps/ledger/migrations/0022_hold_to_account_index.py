"""Every hold an account was credited by, indexed: the holds pending at a past instant (balance asOf)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_actor"),
        ("ledger", "0021_grant_debit_speed"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="hold",
            index=models.Index(fields=["to_account", "transfer"], name="transfer_hold_to_account"),
        ),
    ]
