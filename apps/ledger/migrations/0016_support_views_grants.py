"""Support may view credit grants in the admin (with their allocation history), as it views
the rest of the ledger (0003_support_group); the permission is created as needed, as there."""

from django.db import migrations

SUPPORT_GROUP = "support"


def grant_view_permission(apps, schema_editor):
    db = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    opts = apps.get_model("ledger", "creditgrant")._meta
    content_type, _ = ContentType.objects.using(db).get_or_create(app_label="ledger", model="creditgrant")
    permission, _ = Permission.objects.using(db).get_or_create(
        content_type=content_type, codename="view_creditgrant", defaults={"name": f"Can view {opts.verbose_name_raw}"}
    )
    Group.objects.using(db).get(name=SUPPORT_GROUP).permissions.add(permission)


def revoke_view_permission(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    db = schema_editor.connection.alias
    permission = Permission.objects.using(db).filter(content_type__app_label="ledger", codename="view_creditgrant")
    for group in Group.objects.using(db).filter(name=SUPPORT_GROUP):
        group.permissions.remove(*permission)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0015_grants_sql")]

    operations = [migrations.RunPython(grant_view_permission, revoke_view_permission)]
