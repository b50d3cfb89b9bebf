from django.contrib.postgres.fields import ArrayField
from django.db import models

from creditledger.ids import new_id


class ApiKey(models.Model):
    """An API key. Its printed form, `cl_live_<id in hex>_<secret>`, is shown once when it is
    created; only the SHA-256 of the secret is kept (ADR 0019)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    name = models.CharField(max_length=100, help_text="What the key is for, for people.")
    owner = models.CharField(
        max_length=100,
        db_index=True,
        help_text="Whose key it is: idempotency keys are replayed only to the same owner, so a rotated key "
        "keeps its owner's history.",
    )
    scopes = ArrayField(models.CharField(max_length=32), help_text="What the key may do (creditledger.api.scopes).")
    secret_hash = models.CharField(max_length=64, editable=False, help_text="SHA-256 of the secret, in hex.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Recorded at most once a minute."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "api_key"
        verbose_name = "API key"
        permissions = [("revoke_apikey", "Can revoke API keys")]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"
