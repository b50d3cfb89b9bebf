import signal

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from apps.projections.replay import (
    DEFAULT_WORKERS,
    ReplayError,
    ReplayResult,
    projections_replay,
    projections_replay_from_kafka,
)
from creditledger.kafka import KafkaNotConfigured


class Command(BaseCommand):
    help = (
        "Rebuild the projections from the ledger (or, with --from-kafka, from the beginning of the ledger "
        "topics) beside the live ones, then swap them in. Safe while the service runs; running it again "
        "gives the same projections."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from-kafka", action="store_true", help="Replay the Kafka topics instead of the ledger.")
        parser.add_argument(
            "--workers",
            type=int,
            default=DEFAULT_WORKERS,
            help=f"Database connections loading in parallel, from the ledger (default {DEFAULT_WORKERS}).",
        )
        parser.add_argument("--no-progress", action="store_true", help="Do not draw progress bars on stderr.")

    def handle(self, *args, from_kafka: bool, workers: int, no_progress: bool, **options) -> None:
        if workers < 1:
            raise CommandError("--workers must be at least 1.")
        # SIGTERM stops it like Ctrl-C: the rebuild is dropped and the live projections stay as they were.
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        bars = _ProgressBars(getattr(self.stderr, "_out", self.stderr), disable=no_progress)
        try:
            if from_kafka:
                result = projections_replay_from_kafka(progress=bars)
            else:
                result = projections_replay(progress=bars, workers=workers)
        except (ReplayError, KafkaNotConfigured) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bars.close()
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(_summary(result))
        self.stdout.write(self.style.SUCCESS("The projections are rebuilt and live."))


def _summary(result: ReplayResult) -> str:
    lines = [
        (
            f"rebuilt from {'Kafka' if result.source == 'kafka' else 'the ledger'} in {result.seconds:.1f} s: "
            f"{result.balances} balances, {result.statement_lines} statement lines, {result.transfers} transfers, "
            f"{result.grants} grants"
        ),
    ]
    if result.source == "kafka":
        lines.append(f"events read: {result.events}, invalid and skipped: {result.invalid_events}")
    merged = result.merged
    lines.append(
        f"applied by the live consumer meanwhile and merged in: {merged['balances']} balances, "
        f"{merged['statement_lines']} statement lines, {merged['transfers']} transfers, {merged['grants']} grants"
    )
    return "\n".join(lines)


class _ProgressBars:
    """One tqdm bar per stage of the replay."""

    def __init__(self, stream, *, disable: bool) -> None:
        self.stream = stream
        self.disable = disable
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, advance: int, total: int | None) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            unit = {"indexes": "index", "swap": "step"}.get(stage, "row" if stage != "events" else "event")
            bar = self.bars[stage] = tqdm(
                total=total,
                desc=f"{stage:>15}",
                unit=unit,
                unit_scale=True,
                file=self.stream,
                disable=self.disable,
                dynamic_ncols=True,
            )
        if bar.total is not None and bar.n + advance > bar.total:
            bar.total = bar.n + advance  # Kafka: the watermarks are a lower bound on some brokers
        bar.update(advance)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
