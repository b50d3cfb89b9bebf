"""The `support-lead` group: its members may freeze and unfreeze an account in the admin,
giving a reason (the one ledger write the admin allows, see apps/accounts/admin.py). They may
view accounts, with their change history; put them in `support` too to see the rest.

As in ledger.0003, the view permissions are created here if post_migrate has not run yet.
"""

from django.db import migrations

SUPPORT_LEAD_GROUP = "support-lead"
SUPPORT_LEAD_VIEWS = [("accounts", "account")]


def create_support_lead_group(apps, schema_editor):
    db = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permissions = []
    for app_label, model_name in SUPPORT_LEAD_VIEWS:
        opts = apps.get_model(app_label, model_name)._meta
        content_type, _ = ContentType.objects.using(db).get_or_create(app_label=app_label, model=model_name)
        permission, _ = Permission.objects.using(db).get_or_create(
            content_type=content_type,
            codename=f"view_{model_name}",
            defaults={"name": f"Can view {opts.verbose_name_raw}"},
        )
        permissions.append(permission)
    group, _ = Group.objects.using(db).get_or_create(name=SUPPORT_LEAD_GROUP)
    group.permissions.set(permissions)


def delete_support_lead_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=SUPPORT_LEAD_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_account_change"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_support_lead_group, delete_support_lead_group)]
