from django.db.models import QuerySet

from apps.apikeys.models import ApiKey


def api_key_list(*, include_revoked: bool = True) -> QuerySet[ApiKey]:
    """Keys, newest first."""
    keys = ApiKey.objects.order_by("-created_at")
    return keys if include_revoked else keys.filter(revoked_at__isnull=True)
