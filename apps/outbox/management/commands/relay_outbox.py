from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.outbox.relay import outbox_relay
from creditledger.kafka import KafkaNotConfigured


class Command(BaseCommand):
    help = "Drain the outbox to Kafka once, by hand (ignores the relay's failure backoff)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--shard",
            type=int,
            default=None,
            help="Relay shard to drain, 0 to OUTBOX_SHARDS-1 (default: each in turn).",
        )

    def handle(self, *args, shard, **options):
        shards = range(settings.OUTBOX["SHARDS"]) if shard is None else [shard]
        if shard is not None and shard not in range(settings.OUTBOX["SHARDS"]):
            raise CommandError(f"no shard {shard}: OUTBOX_SHARDS is {settings.OUTBOX['SHARDS']}")
        for each in shards:
            try:
                result = outbox_relay(shard=each, ignore_backoff=True)
            except KafkaNotConfigured as exc:
                raise CommandError(str(exc)) from exc
            if result.skipped:
                reason = {
                    "locked": "another relay of it is running",
                    "resharding": "a relay of another OUTBOX_SHARDS is running",
                }
                raise CommandError(f"shard {each} not run: {reason[result.skipped]}")
            self.stdout.write(f"published {result.published} events" + (f" (shard {each})" if len(shards) > 1 else ""))
            if result.failed:
                raise CommandError("Kafka did not accept every event; the rest stay in the outbox")
