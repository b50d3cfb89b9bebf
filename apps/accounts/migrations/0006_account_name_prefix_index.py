"""The admin's account search by the start of the name, in any case: Django's `istartswith`
is `UPPER("account"."name"::text) LIKE UPPER('term%')`, which this index serves.

Written as SQL because an operator class on an expression needs django.contrib.postgres,
whose per-connection type lookups the service does not otherwise want."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("accounts", "0005_account_pending")]

    operations = [
        migrations.RunSQL(
            'CREATE INDEX "account_name_upper_prefix" ON "account" ((upper("name"::text)) text_pattern_ops)',
            'DROP INDEX "account_name_upper_prefix"',
        )
    ]
