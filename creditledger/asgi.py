import os

from django.core.asgi import get_asgi_application

from creditledger.telemetry import tracing_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
tracing_configure()

application = get_asgi_application()
