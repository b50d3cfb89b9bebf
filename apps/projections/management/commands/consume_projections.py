import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.projections.consumer import consume_loop
from creditledger.kafka import KafkaNotConfigured
from creditledger.metrics import metrics_serve
from creditledger.telemetry import tracing_configure


class Command(BaseCommand):
    help = "Consume the ledger topics from Kafka and keep the projections up to date (SIGTERM/SIGINT stop it)."

    def add_arguments(self, parser):
        parser.add_argument("--group", default=None, help="Consumer group (default: KAFKA_CONSUMER_GROUP).")
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--metrics-port", type=int, default=None, help="0 disables the metrics server.")

    def handle(self, *args, group, batch_size, metrics_port, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        port = settings.METRICS["CONSUMER_PORT"] if metrics_port is None else metrics_port
        if port:
            metrics_serve(port, include_outbox=False)
        tracing_configure()
        self.stdout.write(f"consuming into the projections (group {group or settings.KAFKA['CONSUMER_GROUP']})")
        try:
            consume_loop(should_stop=stop.is_set, consumer_group=group, batch_size=batch_size)
        except KafkaNotConfigured as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("consumer stopped")
