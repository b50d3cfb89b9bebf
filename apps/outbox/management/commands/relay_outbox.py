from django.core.management.base import BaseCommand, CommandError

from apps.outbox.relay import outbox_relay
from creditledger.kafka import KafkaNotConfigured


class Command(BaseCommand):
    help = "Drain the outbox to Kafka once, by hand (ignores the relay's failure backoff)."

    def handle(self, *args, **options):
        try:
            result = outbox_relay(ignore_backoff=True)
        except KafkaNotConfigured as exc:
            raise CommandError(str(exc)) from exc
        if result.skipped:
            raise CommandError(f"not run: {result.skipped} (another relay holds the lock)")
        self.stdout.write(f"published {result.published} events")
        if result.failed:
            raise CommandError("Kafka did not accept every event; the rest stay in the outbox")
