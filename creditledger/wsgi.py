import os

from django.core.wsgi import get_wsgi_application

from creditledger.telemetry import tracing_configure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
tracing_configure()

application = get_wsgi_application()
