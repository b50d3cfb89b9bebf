from django.core.management.base import CommandParser

from apps.projections.verification import DEFAULT_LIMIT, LAG_NOTE, projections_verify
from creditledger.verification_command import VerificationCommand, non_negative_float


class Command(VerificationCommand):
    help = (
        "Compare the projections with the ledger. Exits 0 when they agree, 1 when any projection row is "
        "missing, extra or different. " + LAG_NOTE
    )
    default_limit = DEFAULT_LIMIT
    limit_help = "List at most this many drifted rows per projection; all are counted"
    consistent_message = "The projections match the ledger."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--wait",
            type=non_negative_float,
            default=0.0,
            metavar="SECONDS",
            help="Compare again until clean or SECONDS have passed, to let the consumer catch up.",
        )

    def handle(self, *args, **options) -> None:
        report = projections_verify(limit=options["limit"], wait=options["wait"])
        self.report_write(
            report,
            as_json=options["json"],
            drifted=f"The projections have drifted from the ledger: {report.drift_count} row(s).",
            drift_note=LAG_NOTE,
        )
