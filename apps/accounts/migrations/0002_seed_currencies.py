from django.db import migrations

from apps.accounts.currencies import DEFAULT_CURRENCIES


def add_currencies(apps, schema_editor):
    Currency = apps.get_model("accounts", "Currency")
    Currency.objects.bulk_create(
        [Currency(code=code, scale=scale, name=name) for code, scale, name in DEFAULT_CURRENCIES],
        ignore_conflicts=True,
    )


def remove_currencies(apps, schema_editor):
    Currency = apps.get_model("accounts", "Currency")
    Currency.objects.filter(code__in=[code for code, _, _ in DEFAULT_CURRENCIES]).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(add_currencies, remove_currencies)]
