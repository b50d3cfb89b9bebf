"""Domain errors. Services raise these; `creditledger.api.exception_handler` renders them.

Each error has a stable machine-readable `code` (also the last segment of its
problem `type` URI), an HTTP status and a human title. `params` carries the
values a client may act on (for example the available balance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LedgerError(Exception):
    status: int = 400
    code: str = "ledger_error"
    title: str = "Ledger error"
    #: True when this is the stored outcome of an earlier request with the same idempotency key.
    replayed: bool = False

    def __init__(self, detail: str, *, field: str | None = None, **params: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.params = params

    def as_outcome(self) -> dict[str, Any]:
        """A JSON-able record of this error, so an idempotent replay can raise it again."""
        return {"code": self.code, "detail": self.detail, "field": self.field, "params": self.params}

    @staticmethod
    def from_outcome(outcome: dict[str, Any]) -> LedgerError:
        error_class = _BY_CODE[outcome["code"]]
        return error_class(outcome["detail"], field=outcome.get("field"), **outcome.get("params", {}))


class InvalidRequest(LedgerError):
    status, code, title = 400, "invalid_request", "The request is invalid"


class UnknownCurrency(LedgerError):
    status, code, title = 400, "unknown_currency", "Unknown currency"


class NotAuthenticated(LedgerError):
    """No API key where LEDGER_AUTH=required needs one."""

    status, code, title = 401, "not_authenticated", "Authentication required"


class AuthenticationFailed(NotAuthenticated):
    """A malformed, unknown or revoked API key, or a wrong secret: one answer for all, so that
    it never tells whether a key exists."""

    code, title = "authentication_failed", "Authentication failed"


class ScopeMissing(LedgerError):
    """A valid API key without the scope the endpoint declares (params: requiredScope)."""

    status, code, title = 403, "insufficient_scope", "The API key lacks the scope"


class NotFound(LedgerError):
    status, code, title = 404, "not_found", "Not found"


class AccountNotFound(NotFound):
    code, title = "account_not_found", "Account not found"


class TransferNotFound(NotFound):
    code, title = "transfer_not_found", "Transfer not found"


class GrantNotFound(NotFound):
    code, title = "grant_not_found", "Grant not found"


class Conflict(LedgerError):
    status, code, title = 409, "conflict", "Conflict"


class IdempotencyKeyReused(Conflict):
    code, title = "idempotency_key_reused", "Idempotency key reused with a different request"


class TransferNotPending(Conflict):
    code, title = "transfer_not_pending", "The transfer is not pending"


class TransferNotPosted(Conflict):
    code, title = "transfer_not_posted", "Transfer is not posted"


class GrantNotActive(Conflict):
    code, title = "grant_not_active", "The grant is no longer active"


class GrantTransfer(Conflict):
    """A post, void or reversal of the transfer that funds a grant: the grant's own commands
    and its schedule move that transfer."""

    code, title = "grant_transfer", "The transfer funds a grant"


class BusinessRuleViolation(LedgerError):
    status, code, title = 422, "business_rule_violation", "Business rule violated"


class InsufficientFunds(BusinessRuleViolation):
    code, title = "insufficient_funds", "Insufficient funds"


class CurrencyMismatch(BusinessRuleViolation):
    code, title = "currency_mismatch", "Currency mismatch"


class AccountNotActive(BusinessRuleViolation):
    code, title = "account_not_active", "Account is not active"


class SameAccount(BusinessRuleViolation):
    code, title = "same_account", "Source and destination are the same account"


class BalanceOutOfRange(BusinessRuleViolation):
    code, title = "balance_out_of_range", "Balance out of range"


class AccountClosed(BusinessRuleViolation):
    code, title = "account_closed", "Account is closed"


class AccountNotEmpty(BusinessRuleViolation):
    code, title = "account_not_empty", "Account is not empty"


class OverdraftLimitBelowBalance(BusinessRuleViolation):
    code, title = "overdraft_limit_below_balance", "Overdraft limit below the balance"


class AmountExceedsHold(BusinessRuleViolation):
    code, title = "amount_exceeds_hold", "Amount exceeds the hold"


class BatchRefused(BusinessRuleViolation):
    """An atomic batch with at least one refused transfer: nothing of it was written.

    `results` has one item per transfer, in order: the error that refused it, "posted" (it
    would have been posted and was rolled back) or "replayed" (its key already holds this
    transfer, which stays as it was). Empty when rebuilt by from_outcome, which every error
    supports; a batch refusal itself is never stored.
    """

    code, title = "batch_refused", "The atomic batch was refused"

    def __init__(
        self, detail: str, *, field: str | None = "transfers", results: Sequence[LedgerError | str] = (), **params: Any
    ) -> None:
        super().__init__(detail, field=field, **params)
        self.results = results


class ReversalExceedsOriginal(BusinessRuleViolation):
    code, title = "reversal_exceeds_original", "Reversal exceeds what is left of the original"


class ServiceUnavailable(LedgerError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


class ProjectionNotReady(ServiceUnavailable):
    code, title = "projection_not_ready", "The read model has not caught up yet"


def _all_subclasses(cls: type[LedgerError]) -> list[type[LedgerError]]:
    found: list[type[LedgerError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


_ALL: list[type[LedgerError]] = [LedgerError, *_all_subclasses(LedgerError)]
_BY_CODE: dict[str, type[LedgerError]] = {cls.code: cls for cls in _ALL}
