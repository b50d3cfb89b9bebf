import django.db.models.deletion
from django.db import migrations, models

import creditledger.ids


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_seed_currencies"),
    ]

    operations = [
        migrations.CreateModel(
            name="AccountChange",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=creditledger.ids.new_id, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "changes",
                    models.JSONField(help_text="The changed fields with their new values, named as in the API."),
                ),
                ("reason", models.TextField(blank=True, null=True)),
                (
                    "changed_by",
                    models.CharField(
                        blank=True, help_text="The admin user; null for the API.", max_length=150, null=True
                    ),
                ),
                ("created_at", models.DateTimeField()),
                (
                    "account",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="accounts.account",
                    ),
                ),
            ],
            options={
                "db_table": "account_change",
                "indexes": [models.Index(fields=["account", "created_at"], name="account_change_account_time")],
            },
        ),
    ]
