import os

from celery import Celery, signals

from creditledger.celery_broker import transport_register

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
transport_register()

app = Celery("creditledger")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _serve_worker_metrics(**_kwargs) -> None:
    from django.conf import settings

    from creditledger.metrics import metrics_serve

    metrics_serve(settings.METRICS["WORKER_PORT"], include_outbox=True)


@signals.worker_init.connect
@signals.worker_process_init.connect
@signals.beat_init.connect
def _configure_tracing(**_kwargs) -> None:
    from creditledger.telemetry import tracing_configure

    tracing_configure(celery=True)
