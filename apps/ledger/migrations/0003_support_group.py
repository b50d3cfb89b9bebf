"""The `support` group: staff in it may view the ledger in the admin, and nothing more.

Django creates permissions in a post_migrate signal, after every migration has run, so on
a fresh database they do not exist yet here: the view permissions are created as needed.
"""

from django.db import migrations

SUPPORT_GROUP = "support"
# (app label, model name) of everything support may view.
SUPPORT_VIEWS = [
    ("accounts", "currency"),
    ("accounts", "account"),
    ("ledger", "transfer"),
    ("ledger", "entry"),
    ("ledger", "idempotencyrecord"),
    ("outbox", "outboxevent"),
]


def create_support_group(apps, schema_editor):
    db = schema_editor.connection.alias
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permissions = []
    for app_label, model_name in SUPPORT_VIEWS:
        opts = apps.get_model(app_label, model_name)._meta
        content_type, _ = ContentType.objects.using(db).get_or_create(app_label=app_label, model=model_name)
        permission, _ = Permission.objects.using(db).get_or_create(
            content_type=content_type,
            codename=f"view_{model_name}",
            # The name Django's own create_permissions gives it.
            defaults={"name": f"Can view {opts.verbose_name_raw}"},
        )
        permissions.append(permission)
    group, _ = Group.objects.using(db).get_or_create(name=SUPPORT_GROUP)
    group.permissions.set(permissions)


def delete_support_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=SUPPORT_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_seed_currencies"),
        ("ledger", "0002_invariants"),
        ("outbox", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_support_group, delete_support_group)]
