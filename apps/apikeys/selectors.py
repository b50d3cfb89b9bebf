from uuid import UUID

from django.db import connection
from django.db.models import QuerySet

from apps.apikeys.models import ApiKey

_KEY_FIELDS = [field.attname for field in ApiKey._meta.concrete_fields]
_KEY_BY_ID_SQL = f"SELECT {', '.join(_KEY_FIELDS)} FROM {ApiKey._meta.db_table} WHERE id = %s"  # noqa: S608 - model names


def api_key_list(*, include_revoked: bool = True) -> QuerySet[ApiKey]:
    """Keys, newest first."""
    keys = ApiKey.objects.order_by("-created_at")
    return keys if include_revoked else keys.filter(revoked_at__isnull=True)


def api_key_get(*, key_id: UUID) -> ApiKey | None:
    """The key with this id, read on every authenticated request: one statement, without
    building a queryset (the ORM's compilation cost more CPU than the lookup)."""
    with connection.cursor() as cursor:
        cursor.execute(_KEY_BY_ID_SQL, [key_id])
        row = cursor.fetchone()
    return None if row is None else ApiKey.from_db(connection.alias, _KEY_FIELDS, row)
