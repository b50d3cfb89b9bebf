import argparse
import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ledger.verification import DEFAULT_LIMIT, ledger_verify


class Command(BaseCommand):
    help = (
        "Recompute every account balance from its entries and check the ledger invariants. "
        "Exits 0 when the ledger is consistent, 1 when anything has drifted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--limit",
            type=_non_negative,
            default=DEFAULT_LIMIT,
            help=f"List at most this many problems; all are counted (default {DEFAULT_LIMIT}).",
        )

    def handle(self, *args, **options) -> None:
        report = ledger_verify(limit=options["limit"])
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write("\n".join(report.summary_lines()))
        if not report.ok:
            raise CommandError(f"The ledger has drifted: {report.problem_count} problem(s) found.")
        if not options["json"]:
            self.stdout.write(self.style.SUCCESS("The ledger is consistent."))


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number
