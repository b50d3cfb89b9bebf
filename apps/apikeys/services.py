"""API keys: create, revoke, and authenticate a presented key (ADR 0019).

A key is printed as `cl_live_<id in hex>_<secret>`. The id finds the row by its primary key;
the secret, 256 random bits, is kept only as its SHA-256 and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.db.models import Q
from django.utils import timezone

from apps.apikeys.models import ApiKey
from apps.apikeys.selectors import api_key_get
from apps.apikeys.verdicts import changes_applied_wait, verdicts
from creditledger import errors
from creditledger.api.scopes import scopes_parse

KEY_PREFIX = "cl_live_"
_KEY_FORMAT = re.compile(r"cl_live_(?P<id>[0-9a-f]{32})_(?P<secret>[A-Za-z0-9_-]{1,100})")
#: A key's last use is written at most this often: no write per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)
NAME_MAX_LENGTH = 100
#: The longest a revocation waits for every process to have dropped the key's verdict.
REVOCATION_WAIT_SECONDS = 1.0


def _secret_hash(secret: str) -> str:
    """A fast hash is enough: the secret has 256 random bits, so no dictionary or brute force
    applies, as for a password (ADR 0019)."""
    return hashlib.sha256(secret.encode()).hexdigest()


#: What an unknown key id is compared against, so that it takes the path of a wrong secret.
_DUMMY_HASH = _secret_hash(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class ApiKeyCreated:
    key: ApiKey
    #: The key as the client sends it. Shown once: only its secret's hash is kept.
    printed: str


def api_key_create(*, name: str, scopes: list[str] | tuple[str, ...], owner: str | None = None) -> ApiKeyCreated:
    """A new key with these scopes (names from creditledger.api.scopes) for `owner` (default:
    the name). The printed key is in the answer only."""
    for field, value in (("name", name), ("owner", owner)):
        if value is not None and not 1 <= len(value.strip()) <= NAME_MAX_LENGTH:
            raise errors.InvalidRequest(f"{field} has 1 to {NAME_MAX_LENGTH} characters.", field=field)
    checked_scopes = scopes_parse(scopes)
    secret = secrets.token_urlsafe(32)
    # One INSERT, atomic on its own: the admin's add view may call this inside its transaction.
    key = ApiKey.objects.create(
        name=name.strip(), owner=(owner or name).strip(), scopes=checked_scopes, secret_hash=_secret_hash(secret)
    )
    return ApiKeyCreated(key=key, printed=f"{KEY_PREFIX}{key.id.hex}_{secret}")


def api_key_revoke(*, key_id: UUID) -> ApiKey:
    """Revoke a key: its next request gets 401, in every process. One conditional UPDATE, atomic
    on its own, then a wait until every process has dropped the key's verdict
    (changes_applied_wait, REVOCATION_WAIT_SECONDS at most). Revoking a revoked key changes
    nothing."""
    with changes_applied_wait(key_id=key_id, timeout=REVOCATION_WAIT_SECONDS):
        ApiKey.objects.filter(id=key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    verdicts.forget(key_id)
    key = ApiKey.objects.filter(id=key_id).first()
    if key is None:
        raise errors.NotFound(f"No API key {key_id}.")
    return key


def api_key_authenticate(*, presented: str) -> ApiKey | None:
    """The live key `presented` stands for, or None: malformed, unknown, wrong secret or
    revoked. An unknown id is compared against a dummy hash, so it costs what a wrong secret
    does. A key found valid is trusted without reading its row again until a change to the row
    is notified, or for API_KEY_CACHE_SECONDS at most (apps.apikeys.verdicts); its use is
    recorded at most once a LAST_USED_RESOLUTION."""
    match = _KEY_FORMAT.fullmatch(presented)
    if match is None:
        return None
    key_id, presented_hash = UUID(match["id"]), _secret_hash(match["secret"])
    cached = verdicts.get(key_id, presented_hash)
    if cached is not None:
        _last_use_record(cached)
        return cached
    generation = verdicts.generation()
    key = api_key_get(key_id=key_id)
    stored_hash = key.secret_hash if key is not None else _DUMMY_HASH
    secret_matches = hmac.compare_digest(stored_hash, presented_hash)
    if key is None or not secret_matches or key.revoked_at is not None:
        return None
    _last_use_record(key)
    verdicts.store(key, presented_hash, generation)
    return key


def _last_use_record(key: ApiKey) -> None:
    """Compared with the last use this process knows of (for a cached key, its own last
    write), so that a cached key writes at most once a LAST_USED_RESOLUTION per process, and
    the row, whatever the processes, once."""
    now = timezone.now()
    stale = now - LAST_USED_RESOLUTION
    if key.last_used_at is not None and key.last_used_at >= stale:
        return
    # Conditional, so that concurrent requests in several processes write the row once.
    ApiKey.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale), id=key.id).update(last_used_at=now)
    key.last_used_at = now
