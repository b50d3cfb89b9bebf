"""Production (the Docker image, the benchmarks): refuses to start without a real secret key
and host list, requires API keys, and passes `manage.py check --deploy` cleanly."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import INSECURE_LOCAL_SECRET_KEY, env

DEBUG = False
# Every API request needs a key with its endpoint's scope (ADR 0019), whatever the environment says.
LEDGER_AUTH = "required"

# Unset, django-environ refuses to start (ImproperlyConfigured), and so do the checks below.
SECRET_KEY = env.str("DJANGO_SECRET_KEY")
# Django's own deploy check asks for 5 distinct characters; 10 still admits a hex secret.
if (
    SECRET_KEY == INSECURE_LOCAL_SECRET_KEY
    or SECRET_KEY.startswith("django-insecure-")
    or len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 10
):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a long random value (50 characters or more, 10 distinct), not the "
        'local one: python -c "import secrets; print(secrets.token_urlsafe(50))"'
    )
ALLOWED_HOSTS = [host.strip() for host in env.list("DJANGO_ALLOWED_HOSTS")]
if not ALLOWED_HOSTS or any(host in ("", "*", ".") for host in ALLOWED_HOSTS):
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS must list the host names the service answers to, comma-separated (no '*', '.' "
        "or empty entries)."
    )

# HTTPS, possibly terminated by a proxy that sets X-Forwarded-Proto. Turn the redirect off only
# where that proxy redirects already; health probes over plain HTTP are never redirected.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
# The Referer goes to this origin only (the admin's CSRF check over HTTPS reads it), never elsewhere.
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
