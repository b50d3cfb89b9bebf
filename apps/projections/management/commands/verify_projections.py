import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.projections.verification import DEFAULT_LIMIT, LAG_NOTE, projections_verify


class Command(BaseCommand):
    help = (
        "Compare the projections with the ledger. Exits 0 when they agree, 1 when any projection row is "
        "missing, extra or different. " + LAG_NOTE
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--limit",
            type=int,
            default=DEFAULT_LIMIT,
            help=f"List at most this many drifted rows per projection; all are counted (default {DEFAULT_LIMIT}).",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0.0,
            metavar="SECONDS",
            help="Compare again until clean or SECONDS have passed, to let the consumer catch up.",
        )

    def handle(self, *args, **options) -> None:
        if options["wait"] < 0 or options["limit"] < 0:
            raise CommandError("--wait and --limit cannot be negative.")
        report = projections_verify(limit=options["limit"], wait=options["wait"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write("\n".join(report.summary_lines()))
        if not report.ok:
            if not options["json"]:
                self.stdout.write(LAG_NOTE)
            raise CommandError(f"The projections have drifted from the ledger: {report.drift_count} row(s).")
        if not options["json"]:
            self.stdout.write(self.style.SUCCESS("The projections match the ledger."))
