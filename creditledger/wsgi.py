import os

from creditledger.telemetry import tracing_configure
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
tracing_configure()

application = get_wsgi_application()
