"""Test settings: a real PostgreSQL (DATABASE_URL), nothing faked."""

from .base import *  # noqa: F403
from .base import DATABASES

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Concurrency tests open many connections; persistent ones would outlive the threads.
for alias in DATABASES:
    DATABASES[alias]["CONN_MAX_AGE"] = 0
# Login throttling (django-axes) stays on: tests log in with force_login, which it does not see,
# and the lockout itself is tested (creditledger/tests/test_admin_security.py).
