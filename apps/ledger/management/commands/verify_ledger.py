from apps.ledger.verification import DEFAULT_LIMIT, ledger_verify
from creditledger.verification_command import VerificationCommand


class Command(VerificationCommand):
    help = (
        "Recompute every account balance from its entries and check the ledger invariants. "
        "Exits 0 when the ledger is consistent, 1 when anything has drifted."
    )
    default_limit = DEFAULT_LIMIT
    limit_help = "List at most this many problems; all are counted"
    consistent_message = "The ledger is consistent."

    def handle(self, *args, **options) -> None:
        report = ledger_verify(limit=options["limit"])
        self.report_write(
            report,
            as_json=options["json"],
            drifted=f"The ledger has drifted: {report.problem_count} problem(s) found.",
        )
