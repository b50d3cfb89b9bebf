"""Posting transfers: the one place that moves money.

The work happens in one round trip, in the PL/pgSQL function ledger_post_transfer
(sql/functions/ledger_post_transfer.v3.sql): claim the idempotency key, lock every account
involved in id order, check the business rules, write the transfer, the two entries of each
posting, the balances and the outbox events, and record the outcome against the key. The
triggers of 0002 check every row it writes. This module owns the transaction, the input
checks, the ids and the trace context, and turns outcomes into domain errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any
from uuid import UUID

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from opentelemetry import propagate
from psycopg.types.json import Jsonb

from apps.ledger.models import (
    DESCRIPTION_MAX_LENGTH,
    GRANT_PRIORITY_DEFAULT,
    GRANT_PRIORITY_MAX,
    GRANT_PRIORITY_MIN,
    MAX_POSTINGS,
    Transfer,
)
from apps.ledger.selectors import transfer_get
from apps.outbox.services import outbox_relay_kick_on_commit
from creditledger import errors, metrics
from creditledger.actor import actor_current
from creditledger.db import in_durable_transaction
from creditledger.group_commit import GroupCommit
from creditledger.ids import new_id

INT64_MAX = 2**63 - 1
#: Most transfers in one POST /transfers/batch.
MAX_BATCH_TRANSFERS = 1000


@dataclass(frozen=True)
class TransferOutcome:
    #: The transfer as the API shows it (ledger_transfer_document).
    document: dict[str, Any]
    replayed: bool
    #: The sequence of the transfer's last entry on each of its accounts: how far the read
    #: model must have got on each account to include this transfer.
    positions: dict[UUID, int]

    @property
    def transfer_id(self) -> UUID:
        return UUID(self.document["transferId"])

    @cached_property
    def transfer(self) -> Transfer:
        return transfer_get(transfer_id=self.transfer_id)


@dataclass(frozen=True)
class Posting:
    """`amount` minor units of `currency` from one account to another: one debit, one credit."""

    from_account_id: UUID
    to_account_id: UUID
    amount: int
    currency: str

    def canonical(self) -> dict[str, Any]:
        return {
            "from": str(self.from_account_id),
            "to": str(self.to_account_id),
            "amount": self.amount,
            "currency": self.currency,
        }


@dataclass(frozen=True)
class HoldRequest:
    """Make the transfer a hold (pending): it reserves its postings until posted, voided or
    expired. At most one of `expires_at` (an aware instant in the future) and `timeout_seconds`."""

    expires_at: datetime | None = None
    timeout_seconds: int | None = None

    def canonical(self) -> dict[str, Any]:
        request: dict[str, Any] = {"pending": True}
        if self.expires_at is not None:
            request["expiresAt"] = self.expires_at.isoformat()
        if self.timeout_seconds is not None:
            request["timeoutSeconds"] = self.timeout_seconds
        return request

    def expiry(self) -> datetime | None:
        """The instant the hold expires, checked: a 400 for both, a past instant or a bad timeout."""
        if self.expires_at is not None and self.timeout_seconds is not None:
            raise errors.InvalidRequest("Give expiresAt or timeoutSeconds, not both.", field="timeoutSeconds")
        if self.timeout_seconds is not None:
            if not 1 <= self.timeout_seconds <= MAX_HOLD_SECONDS:
                raise errors.InvalidRequest(
                    f"timeoutSeconds must be between 1 and {MAX_HOLD_SECONDS}.", field="timeoutSeconds"
                )
            return timezone.now() + timedelta(seconds=self.timeout_seconds)
        if self.expires_at is not None and self.expires_at <= timezone.now():
            raise errors.InvalidRequest("expiresAt must be in the future.", field="expiresAt")
        return self.expires_at


#: The longest timeoutSeconds: ten years.
MAX_HOLD_SECONDS = 10 * 365 * 24 * 3600


def request_fingerprint(*, request: dict[str, Any], owner: str | None) -> str:
    """SHA-256 of the canonical JSON of the whole request and, when the request came with an
    API key, the key's owner (ADR 0003, ADR 0019): the same idempotency key from another owner
    is another request, so it gets 409 idempotency_key_reused and never the first outcome.
    Without an owner (LEDGER_AUTH=off) the fingerprint is what it always was."""
    if owner is not None:
        request = {**request, "owner": owner}
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class TransferRequest:
    """One checked request to post a transfer, in either form of POST /transfers: what the
    posting function needs, and the fingerprint that makes it idempotent."""

    idempotency_key: str
    postings: tuple[Posting, ...]
    #: The seed's form (one posting given by its own fields): its refusals name `amount`, not `postings[0].amount`.
    single: bool
    metadata: dict[str, Any]
    description: str | None
    fingerprint: str
    #: A hold (pending transfer) when set, with its checked expiry.
    hold: HoldRequest | None = None
    expires_at: datetime | None = None


def transfer_request_single(
    *,
    idempotency_key: str,
    from_account_id: UUID,
    to_account_id: UUID,
    amount: int,
    currency: str,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    hold: HoldRequest | None = None,
    owner: str | None = None,
) -> TransferRequest:
    """The request to move `amount` minor units from one account to another (see transfer_create);
    `owner`: the API key's owner, when there is one (request_fingerprint)."""
    posting = Posting(from_account_id, to_account_id, amount, currency)
    # The seed's fingerprint, so that keys used before postings existed still replay.
    return _transfer_request(
        idempotency_key=idempotency_key,
        postings=(posting,),
        single=True,
        form=posting.canonical(),
        metadata=metadata or {},
        description=description,
        hold=hold,
        owner=owner,
    )


def transfer_request_postings(
    *,
    idempotency_key: str,
    postings: Sequence[Posting],
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    hold: HoldRequest | None = None,
    owner: str | None = None,
) -> TransferRequest:
    """The request to post 1 to MAX_POSTINGS postings as one transfer (see transfer_create_postings)."""
    if not 1 <= len(postings) <= MAX_POSTINGS:
        raise errors.InvalidRequest(f"A transfer has 1 to {MAX_POSTINGS} postings.", field="postings")
    return _transfer_request(
        idempotency_key=idempotency_key,
        postings=tuple(postings),
        single=False,
        form={"postings": [posting.canonical() for posting in postings]},
        metadata=metadata or {},
        description=description,
        hold=hold,
        owner=owner,
    )


def _transfer_request(
    *,
    idempotency_key: str,
    postings: tuple[Posting, ...],
    single: bool,
    form: dict[str, Any],
    metadata: dict[str, Any],
    description: str | None,
    hold: HoldRequest | None,
    owner: str | None,
) -> TransferRequest:
    """Check the request and fingerprint all of it: `form` (its postings, as the client gave
    them), metadata, and the description and hold when given."""
    expires_at = hold.expiry() if hold is not None else None
    for index, posting in enumerate(postings):
        if posting.amount < 1 or posting.amount > INT64_MAX:
            raise errors.InvalidRequest(
                "amount must be between 1 and 2^63-1 minor units.",
                field="amount" if single else f"postings[{index}].amount",
            )
    _description_check(description)
    request = {**form, "metadata": metadata}
    if description is not None:
        request["description"] = description
    if hold is not None:
        request.update(hold.canonical())
    fingerprint = request_fingerprint(request=request, owner=owner)
    return TransferRequest(idempotency_key, postings, single, metadata, description, fingerprint, hold, expires_at)


def transfer_create(
    *,
    idempotency_key: str,
    from_account_id: UUID,
    to_account_id: UUID,
    amount: int,
    currency: str,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    hold: HoldRequest | None = None,
    owner: str | None = None,
) -> TransferOutcome:
    """Move `amount` minor units from one account to another, exactly once per key; with
    `hold`, only reserve it (a pending transfer, posted or voided later: hold_post, hold_void).

    The first outcome for a key (the transfer, or the business error that refused it) is
    stored in the same transaction and returned again for the same request; the same key
    with a different request raises IdempotencyKeyReused. Invalid input (400: an amount
    out of range, an unknown currency) is not stored, as with Stripe.
    """
    return transfer_post(
        request=transfer_request_single(
            idempotency_key=idempotency_key,
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            amount=amount,
            currency=currency,
            metadata=metadata,
            description=description,
            hold=hold,
            owner=owner,
        )
    )


def transfer_create_postings(
    *,
    idempotency_key: str,
    postings: Sequence[Posting],
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    hold: HoldRequest | None = None,
    owner: str | None = None,
) -> TransferOutcome:
    """Post 1 to MAX_POSTINGS postings, in any mix of currencies, as one transfer: all or none.

    Each posting is checked as a single transfer is, and refusals name it
    (`postings[2].amount`). The overdraft rule applies to each account's balance after all
    of its postings: credits in the same transfer count (ADR 0016). Idempotent as
    transfer_create; the fingerprint covers the postings in their order.
    """
    return transfer_post(
        request=transfer_request_postings(
            idempotency_key=idempotency_key,
            postings=postings,
            metadata=metadata,
            description=description,
            hold=hold,
            owner=owner,
        )
    )


def transfer_post(*, request: TransferRequest) -> TransferOutcome:
    """Post one checked request; raise its refusal. With group commit (LEDGER["GROUP_COMMIT"],
    docs/adr/0021-group-commit.md) it is posted with the requests this process receives at the
    same time, in one durable transaction, keeping everything it has alone: its key, its
    refusal, its events and its actor. Without, in a durable transaction of its own."""
    if settings.LEDGER["GROUP_COMMIT"]:
        outcome = _transfer_group_commit.submit(_GroupItem(request=request, item=_transfer_group_item(request)))
    else:
        outcome = _transfer_post_alone(request)
    if isinstance(outcome, errors.LedgerError):
        raise outcome
    return outcome


def _transfer_post_alone(request: TransferRequest) -> TransferOutcome | errors.LedgerError:
    """Post one request in its own durable transaction: its outcome or its refusal."""
    return _ledger_outcome(
        _ledger_durable_call(POST_TRANSFER_SQL, lambda: _transfer_post_arguments(request)),
        idempotency_key=request.idempotency_key,
        currencies=_posted_currencies(request),
        committed=True,
    )


@dataclass(frozen=True)
class _GroupItem:
    """A request waiting for group commit, with the posting function's item built in the
    requesting thread: its ids, trace context and actor."""

    request: TransferRequest
    item: dict[str, Any]


def _transfer_group_write(group: list[_GroupItem]) -> list[TransferOutcome | errors.LedgerError]:
    """Post a group of requests in one durable transaction (retried whole after a
    serialization failure or deadlock): one outcome or refusal per request, in order."""

    def work() -> list[dict[str, Any]]:
        results = _transfers_post_in_transaction([waiting.item for waiting in group])
        if any(result["outcome"] == "posted" for result in results):
            outbox_relay_kick_on_commit()
        return results

    # Each item carries its actor, which ledger_post_transfers sets before posting it.
    results = in_durable_transaction(work, record_actor=False)
    return [
        _transfer_outcome(waiting.request, result, committed=True)
        for waiting, result in zip(group, results, strict=True)
    ]


_transfer_group_commit: GroupCommit[_GroupItem, TransferOutcome | errors.LedgerError] = GroupCommit(
    name="transfers",
    write_group=_transfer_group_write,
    write_alone=lambda waiting: _transfer_post_alone(waiting.request),
    max_group=lambda: settings.LEDGER["GROUP_COMMIT_MAX"],
)


def transfer_batch_create(
    *, atomic: bool, requests: Sequence[TransferRequest]
) -> list[TransferOutcome | errors.LedgerError]:
    """Post up to MAX_BATCH_TRANSFERS requests in one durable transaction, each exactly once per
    its own key, and answer one outcome per request, in order: the transfer (posted or
    replayed) or the error that refused it.

    They are posted as group commit posts concurrent requests, by one call of
    ledger_post_transfers: every account involved is locked first, once, in id order, so the
    posting function's own locks are no-ops and two batches over the same accounts queue
    instead of deadlocking. It returns refusals instead of raising them, so a refused item
    never aborts the transaction: with `atomic` false the others commit and each refusal is
    stored against its key, as POST /transfers would; with `atomic` true one refusal rolls
    everything back (no transfer, no idempotency record, no outbox row) and raises BatchRefused.
    """
    if not 1 <= len(requests) <= MAX_BATCH_TRANSFERS:
        raise errors.InvalidRequest(f"A batch has 1 to {MAX_BATCH_TRANSFERS} transfers.", field="transfers")
    first_index: dict[str, int] = {}
    for index, request in enumerate(requests):
        earlier = first_index.setdefault(request.idempotency_key, index)
        if earlier != index:
            raise errors.InvalidRequest(
                f"transfers[{earlier}] and transfers[{index}] have the same idempotency key "
                f"'{request.idempotency_key}'; each transfer of a batch needs its own.",
                field=f"transfers[{index}].idempotencyKey",
                items=[earlier, index],
            )
    _currencies_check(requests)
    items = [_transfer_group_item(request) for request in requests]

    def work() -> list[dict[str, Any]]:
        results = _transfers_post_in_transaction(items)
        if atomic and not all(_succeeded(result) for result in results):
            transaction.set_rollback(True)
        elif any(result["outcome"] == "posted" for result in results):
            outbox_relay_kick_on_commit()
        return results

    # As in group commit: each item carries its actor.
    results = in_durable_transaction(work, record_actor=False)
    committed = not atomic or all(_succeeded(result) for result in results)
    outcomes = [
        _transfer_outcome(request, result, committed=committed)
        for request, result in zip(requests, results, strict=True)
    ]
    if committed:
        return outcomes
    refusals = sum(isinstance(outcome, errors.LedgerError) for outcome in outcomes)
    raise errors.BatchRefused(
        f"{refusals} of the {len(requests)} transfers {'was' if refusals == 1 else 'were'} refused, so none was posted "
        "(atomic batch).",
        results=[
            outcome if isinstance(outcome, errors.LedgerError) else result["outcome"]
            for outcome, result in zip(outcomes, results, strict=True)
        ],
        refused=refusals,
    )


def hold_post(
    *, transfer_id: UUID, idempotency_key: str, amount: int | None = None, owner: str | None = None
) -> TransferOutcome:
    """Post a pending transfer: all it holds or, for a hold of one posting, `amount` of it
    (the rest is released). Exactly once per key, as transfer_create. Refused with
    TransferNotPending when it is posted, voided or expired (past its expiry, this expires it),
    with AmountExceedsHold above the amount held."""
    if amount is not None and not 1 <= amount <= INT64_MAX:
        raise errors.InvalidRequest("amount must be between 1 and 2^63-1 minor units.", field="amount")
    request: dict[str, Any] = {"command": "post", "transferId": str(transfer_id)}
    if amount is not None:
        request["amount"] = amount
    return _hold_command(
        command="post",
        transfer_id=transfer_id,
        idempotency_key=idempotency_key,
        amount=amount,
        fingerprint=request_fingerprint(request=request, owner=owner),
    )


def hold_void(*, transfer_id: UUID, idempotency_key: str, owner: str | None = None) -> TransferOutcome:
    """Release a pending transfer: status voided. Exactly once per key; refused as hold_post."""
    request = {"command": "void", "transferId": str(transfer_id)}
    return _hold_command(
        command="void",
        transfer_id=transfer_id,
        idempotency_key=idempotency_key,
        amount=None,
        fingerprint=request_fingerprint(request=request, owner=owner),
    )


def holds_expire(*, limit: int) -> int:
    """Expire up to `limit` holds past their expiry (TransferExpired each); returns how many.
    Holds whose accounts another transaction has locked are left for the next run."""
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)

    def work() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT ledger_holds_expire(%s, %s::uuid[], %s)",
                [limit, [new_id() for _ in range(limit)], Jsonb(trace_headers)],  # type: ignore[list-item]  # Jsonb
            )
            expired = cursor.fetchone()[0]
        if expired:
            outbox_relay_kick_on_commit()
        return expired

    return in_durable_transaction(work)


def _hold_command(
    *, command: str, transfer_id: UUID, idempotency_key: str, amount: int | None, fingerprint: str
) -> TransferOutcome:
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    # Enough ids for the largest hold; the function uses those its postings need.
    arguments = [
        idempotency_key,
        fingerprint,
        command,
        transfer_id,
        amount,
        [new_id() for _ in range(2 * MAX_POSTINGS)],
        [new_id() for _ in range(1 + 2 * MAX_POSTINGS)],
        Jsonb(trace_headers),
    ]

    return _ledger_command(
        "SELECT ledger_hold_command(%s, %s, %s, %s, %s, %s::uuid[], %s::uuid[], %s)::text",
        lambda: arguments,
        idempotency_key=idempotency_key,
        currencies=[],
    )


def _succeeded(result: dict[str, Any]) -> bool:
    """Posted now, or the replay of a transfer posted earlier under the same key and request."""
    return result.get("transfer") is not None


def _currencies_check(requests: Sequence[TransferRequest]) -> None:
    """Refuse an unknown currency before the transaction, naming the item, as the posting function does alone."""
    codes = sorted({posting.currency for request in requests for posting in request.postings})
    with connection.cursor() as cursor:
        cursor.execute("SELECT code FROM currency WHERE code = ANY(%s)", [codes])
        known = {row[0] for row in cursor.fetchall()}
    for index, request in enumerate(requests):
        for posting_index, posting in enumerate(request.postings):
            if posting.currency not in known:
                field = "currency" if request.single else f"postings[{posting_index}].currency"
                raise errors.UnknownCurrency(
                    f"Unknown currency '{posting.currency}'. GET /currencies lists the registered ones.",
                    field=f"transfers[{index}].{field}",
                )


POST_TRANSFER_SQL = (
    "SELECT ledger_post_transfer(%s, %s, %s, %s::uuid[], %s::uuid[], %s::bigint[], %s::text[], %s, %s, "
    "%s, %s::uuid[], %s::uuid[], %s, %s, %s)::text"
)


def _transfers_post_in_transaction(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Post a group of items (_transfer_group_item) in the caller's transaction, in one call
    of ledger_post_transfers: their outcomes as JSON, in order (ADR 0013)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ledger_post_transfers(%s::jsonb)::text", [orjson.dumps(items).decode()])
        return orjson.loads(cursor.fetchone()[0])


def _transfer_group_item(request: TransferRequest) -> dict[str, Any]:
    """The request as an item of ledger_post_transfers, with its ids, the current trace
    context and the current actor: the arguments it would get alone (_transfer_post_arguments)."""
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    postings = request.postings
    return {
        "key": request.idempotency_key,
        "fingerprint": request.fingerprint,
        "single": request.single,
        "from": [posting.from_account_id for posting in postings],
        "to": [posting.to_account_id for posting in postings],
        "amount": [posting.amount for posting in postings],
        "currency": [posting.currency for posting in postings],
        "metadata": request.metadata,
        "description": request.description,
        "transferId": new_id(),
        "entryIds": [new_id() for _ in range(2 * len(postings))],
        "eventIds": [new_id() for _ in range(1 + 2 * len(postings))],
        "headers": trace_headers,
        "pending": request.hold is not None,
        "expiresAt": request.expires_at,
        "actor": actor_current(),
    }


def _transfer_post_arguments(request: TransferRequest) -> list[Any]:
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    postings = request.postings
    return [
        request.idempotency_key,
        request.fingerprint,
        request.single,
        [posting.from_account_id for posting in postings],
        [posting.to_account_id for posting in postings],
        [posting.amount for posting in postings],
        [posting.currency for posting in postings],
        Jsonb(request.metadata),
        request.description,
        new_id(),
        [new_id() for _ in range(2 * len(postings))],
        [new_id() for _ in range(1 + 2 * len(postings))],
        Jsonb(trace_headers),
        request.hold is not None,
        request.expires_at,
    ]


def _ledger_call(statement: str, arguments: list[Any]) -> dict[str, Any]:
    """Call one ledger function in the caller's transaction; its outcome as JSON (ADR 0013)."""
    with connection.cursor() as cursor:
        cursor.execute(statement, arguments)
        return orjson.loads(cursor.fetchone()[0])


def _ledger_command(
    statement: str, arguments: Callable[[], list[Any]], *, idempotency_key: str, currencies: list[str] | None
) -> TransferOutcome:
    """Call one ledger function that answers with a transfer (_ledger_durable_call); raise its refusal."""
    outcome = _ledger_outcome(
        _ledger_durable_call(statement, arguments),
        idempotency_key=idempotency_key,
        currencies=currencies,
        committed=True,
    )
    if isinstance(outcome, errors.LedgerError):
        raise outcome
    return outcome


def _ledger_durable_call(statement: str, arguments: Callable[[], list[Any]]) -> dict[str, Any]:
    """Call one ledger function in its own durable transaction, with `arguments()` built inside
    it; kick the relay on commit when it wrote events (posted or settled)."""

    def work() -> dict[str, Any]:
        result = _ledger_call(statement, arguments())
        if result["outcome"] in ("posted", "settled"):
            outbox_relay_kick_on_commit()
        return result

    return in_durable_transaction(work)


def _outcome_error(result: dict[str, Any], *, idempotency_key: str, subject: str) -> errors.LedgerError | None:
    """The domain error a ledger function's outcome stands for, if any: the key first used with
    another request, or the refusal (replayed when it was stored against the key before)."""
    if result["outcome"] == "conflict":
        return errors.IdempotencyKeyReused(
            f"Idempotency key '{idempotency_key}' was first used with a different request; "
            f"use a new key for a new {subject}.",
            field="idempotencyKey",
        )
    if result.get("error") is not None:
        error = errors.LedgerError.from_outcome(result["error"])
        error.replayed = result["outcome"] == "replayed"
        return error
    return None


def _posted_currencies(request: TransferRequest) -> list[str]:
    """What a request counts as posted in the metrics: nothing yet for a hold."""
    return [] if request.hold is not None else sorted({posting.currency for posting in request.postings})


def _transfer_outcome(
    request: TransferRequest, result: dict[str, Any], *, committed: bool
) -> TransferOutcome | errors.LedgerError:
    """The posting function's outcome as a TransferOutcome or the domain error it stands for;
    counts it in the metrics (a posting only once `committed`)."""
    return _ledger_outcome(
        result, idempotency_key=request.idempotency_key, currencies=_posted_currencies(request), committed=committed
    )


def _ledger_outcome(
    result: dict[str, Any], *, idempotency_key: str, currencies: list[str] | None, committed: bool
) -> TransferOutcome | errors.LedgerError:
    """`currencies`: those to count as posted; None: those of the posted document's postings."""
    replayed = result["outcome"] == "replayed"
    error = _outcome_error(result, idempotency_key=idempotency_key, subject="transfer")
    if error is None:
        if committed and not replayed:
            if currencies is None:
                currencies = sorted({posting["currency"] for posting in result["transfer"]["postings"]})
            for currency in currencies:
                metrics.TRANSFERS_POSTED.labels(currency=currency).inc()
        document = result["transfer"]
        positions: dict[UUID, int] = {}
        for entry in document["entries"]:
            account_id = UUID(entry["accountId"])
            positions[account_id] = max(positions.get(account_id, 0), entry["sequence"])
        return TransferOutcome(document=document, replayed=replayed, positions=positions)
    if not replayed:
        metrics.TRANSFERS_FAILED.labels(reason=error.code).inc()
    return error


def transfer_reverse(
    *,
    idempotency_key: str,
    transfer_id: UUID,
    amount: int | None = None,
    description: str | None = None,
    owner: str | None = None,
) -> TransferOutcome:
    """Post a new transfer that moves a posted transfer's postings back, exactly once per key.

    Without `amount`, every posting is reversed whole; with it, part of a transfer of one
    posting (a transfer of several is only reversed whole). Everything reversed never
    exceeds the original (ReversalExceedsOriginal), only a posted transfer is reversed
    (TransferNotPosted), and the reversal obeys every rule of a transfer, the overdraft
    included. The new transfer's `reversalOf` is the original, whose `reversedAmount` grows
    by what it moved back, in the same transaction (ledger_reverse_transfer). Idempotent as
    transfer_create.
    """
    if amount is not None and not 1 <= amount <= INT64_MAX:
        raise errors.InvalidRequest("amount must be between 1 and 2^63-1 minor units.", field="amount")
    _description_check(description)
    request: dict[str, Any] = {"reverse": str(transfer_id)}
    if amount is not None:
        request["amount"] = amount
    if description is not None:
        request["description"] = description
    fingerprint = request_fingerprint(request=request, owner=owner)
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)

    def arguments() -> list[Any]:
        # Read in the transaction; immutable, so without a lock (the function locks the transfer).
        posting_count = Transfer.objects.filter(id=transfer_id).values_list("posting_count", flat=True).first()
        postings = posting_count or 1
        return [
            idempotency_key,
            fingerprint,
            transfer_id,
            amount,
            description,
            new_id(),
            [new_id() for _ in range(2 * postings)],
            [new_id() for _ in range(2 + 2 * postings)],
            Jsonb(trace_headers),
        ]

    return _ledger_command(
        "SELECT ledger_reverse_transfer(%s, %s, %s, %s, %s, %s, %s::uuid[], %s::uuid[], %s)::text",
        arguments,
        idempotency_key=idempotency_key,
        currencies=None,
    )


def _description_check(description: str | None) -> None:
    if description is not None and len(description) > DESCRIPTION_MAX_LENGTH:
        raise errors.InvalidRequest(
            f"description has at most {DESCRIPTION_MAX_LENGTH} characters.", field="description"
        )


@dataclass(frozen=True)
class GrantOutcome:
    #: The grant as the API shows it (ledger_grant_document).
    document: dict[str, Any]
    replayed: bool


def grant_create(
    *,
    account_id: UUID,
    funding_account_id: UUID,
    amount: int,
    idempotency_key: str,
    expire_to_account_id: UUID | None = None,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    priority: int = GRANT_PRIORITY_DEFAULT,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    owner: str | None = None,
) -> GrantOutcome:
    """Credit `amount` to the account from the funding account and make it a grant (a lot):
    usable from `effective_at` (default now; until then its funding transfer is a hold),
    burnt down by the account's debits in priority order, and past `expires_at` moved to
    `expire_to_account_id` (default: the funding account). The funding transfer obeys every
    rule of a transfer. Exactly once per key, as transfer_create (ledger_grant_create)."""
    if not 1 <= amount <= INT64_MAX:
        raise errors.InvalidRequest("amount must be between 1 and 2^63-1 minor units.", field="amount")
    if not GRANT_PRIORITY_MIN <= priority <= GRANT_PRIORITY_MAX:
        raise errors.InvalidRequest(
            f"priority must be between {GRANT_PRIORITY_MIN} and {GRANT_PRIORITY_MAX}.", field="priority"
        )
    _description_check(description)
    expire_to = expire_to_account_id or funding_account_id
    request = {
        "grant": str(account_id),
        "from": str(funding_account_id),
        "expireTo": str(expire_to),
        "amount": amount,
        "effectiveAt": effective_at.isoformat() if effective_at else None,
        "expiresAt": expires_at.isoformat() if expires_at else None,
        "priority": priority,
        "description": description,
        "metadata": metadata or {},
    }
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    arguments = [
        idempotency_key,
        request_fingerprint(request=request, owner=owner),
        new_id(),
        account_id,
        funding_account_id,
        expire_to,
        amount,
        priority,
        effective_at,
        expires_at,
        description,
        Jsonb(metadata or {}),
        new_id(),
        [new_id() for _ in range(2)],
        [new_id() for _ in range(3)],
        Jsonb(trace_headers),
    ]
    return _grant_command(
        "SELECT ledger_grant_create(%s, %s, %s, %s, %s, %s, %s, %s::smallint, %s, %s, %s, %s, %s, %s::uuid[], "
        "%s::uuid[], %s)::text",
        arguments,
        idempotency_key=idempotency_key,
        subject="grant",
    )


def grant_void(
    *, grant_id: UUID, idempotency_key: str, description: str | None = None, owner: str | None = None
) -> GrantOutcome:
    """Void a grant: its unconsumed, unreserved remainder goes back to its funding account
    (a scheduled grant's hold is voided); what its holds reserve follows when they release
    it. Refused with GrantNotActive once it has expired or was voided. Exactly once per key."""
    _description_check(description)
    request = {"command": "grant_void", "grantId": str(grant_id), "description": description}
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    arguments = [
        idempotency_key,
        request_fingerprint(request=request, owner=owner),
        grant_id,
        description,
        Jsonb(trace_headers),
    ]
    return _grant_command(
        "SELECT ledger_grant_void(%s, %s, %s, %s, %s)::text", arguments, idempotency_key=idempotency_key, subject="void"
    )


def grants_book_due(*, limit: int) -> int:
    """Book what is due on up to `limit` idle accounts: grants taken effect (GrantActivated)
    or past their expiry (the expiry transfer, GrantExpired), and holds past their expiry on
    those accounts. Accounts another transaction has locked are left for the next run (that
    transaction books them itself). Returns how many bookings it made."""
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)

    def work() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT ledger_grants_book_due(%s, %s)",
                [limit, Jsonb(trace_headers)],  # type: ignore[list-item]  # Jsonb is a psycopg adapter
            )
            booked = cursor.fetchone()[0]
        if booked:
            outbox_relay_kick_on_commit()
        return booked

    return in_durable_transaction(work)


def _grant_command(statement: str, arguments: list[Any], *, idempotency_key: str, subject: str) -> GrantOutcome:
    result = _ledger_durable_call(statement, lambda: arguments)
    error = _outcome_error(result, idempotency_key=idempotency_key, subject=subject)
    if error is not None:
        raise error
    return GrantOutcome(document=result["grant"], replayed=result["outcome"] == "replayed")
