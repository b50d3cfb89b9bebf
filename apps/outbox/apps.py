from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OutboxConfig(AppConfig):
    name = "apps.outbox"
    label = "outbox"
    verbose_name = "Transactional outbox"

    def ready(self) -> None:
        from apps.outbox.services import outbox_event_types_sync

        post_migrate.connect(outbox_event_types_sync, sender=self)
