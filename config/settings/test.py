"""Test settings: a real PostgreSQL (DATABASE_URL), nothing faked."""

from .base import *  # noqa: F403
from .base import DATABASES

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Concurrency tests open many connections; persistent ones would outlive the threads.
for alias in DATABASES:
    DATABASES[alias]["CONN_MAX_AGE"] = 0
