"""What `verify_ledger` and `verify_projections` share: `--json` and `--limit`, a report
printed as text or JSON, and exit status 1 (a CommandError) when it found anything."""

from __future__ import annotations

import argparse
import json
from typing import Any, Protocol

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Report(Protocol):
    @property
    def ok(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...

    def summary_lines(self) -> list[str]: ...


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


class VerificationCommand(BaseCommand):
    default_limit: int
    limit_help: str
    consistent_message: str

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--limit",
            type=non_negative_int,
            default=self.default_limit,
            help=f"{self.limit_help} (default {self.default_limit}).",
        )

    def report_write(self, report: Report, *, as_json: bool, drifted: str, drift_note: str = "") -> None:
        """Print the report; raise CommandError (exit status 1) with `drifted` when it is not ok."""
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write("\n".join(report.summary_lines()))
        if not report.ok:
            if drift_note and not as_json:
                self.stdout.write(drift_note)
            raise CommandError(drifted)
        if not as_json:
            self.stdout.write(self.style.SUCCESS(self.consistent_message))
