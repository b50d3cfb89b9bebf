"""Posting transfers: the one place that moves money.

The work happens in one round trip, in the PL/pgSQL function ledger_post_transfer
(sql/functions/ledger_post_transfer.v4.sql): claim the idempotency key, lock every account
involved in id order, check the business rules, write the transfer, the two entries of each
posting, the balances and the outbox events, and record the outcome against the key. The
triggers of 0002 check every row it writes. A reversal is posted by the same function, called
by ledger_reverse_transfer (sql/functions/ledger_reverse_transfer.v1.sql) under the original
transfer's row lock. This module owns the transaction, the input
checks, the ids and the trace context, and turns outcomes into domain errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import UUID

import orjson
from django.db import connection
from opentelemetry import propagate
from psycopg.types.json import Jsonb

from apps.ledger.models import DESCRIPTION_MAX_LENGTH, MAX_POSTINGS, Transfer
from apps.ledger.selectors import transfer_get
from apps.outbox.services import outbox_relay_kick_on_commit
from creditledger import errors, metrics
from creditledger.db import in_durable_transaction
from creditledger.ids import new_id

INT64_MAX = 2**63 - 1


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


def request_fingerprint(*, request: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the whole request (ADR 0003)."""
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


def transfer_create(
    *,
    idempotency_key: str,
    from_account_id: UUID,
    to_account_id: UUID,
    amount: int,
    currency: str,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
) -> TransferOutcome:
    """Move `amount` minor units from one account to another, exactly once per key.

    The first outcome for a key (the transfer, or the business error that refused it) is
    stored in the same transaction and returned again for the same request; the same key
    with a different request raises IdempotencyKeyReused. Invalid input (400: an amount
    out of range, an unknown currency) is not stored, as with Stripe.
    """
    posting = Posting(from_account_id, to_account_id, amount, currency)
    metadata = metadata or {}
    # The seed's fingerprint, so that keys used before postings existed still replay.
    request = {**posting.canonical(), "metadata": metadata}
    if description is not None:
        request["description"] = description
    return _transfer_post(
        idempotency_key=idempotency_key,
        postings=[posting],
        single=True,
        metadata=metadata,
        description=description,
        fingerprint=request_fingerprint(request=request),
    )


def transfer_create_postings(
    *,
    idempotency_key: str,
    postings: Sequence[Posting],
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
) -> TransferOutcome:
    """Post 1 to MAX_POSTINGS postings, in any mix of currencies, as one transfer: all or none.

    Each posting is checked as a single transfer is, and refusals name it
    (`postings[2].amount`). The overdraft rule applies to each account's balance after all
    of its postings: credits in the same transfer count (ADR 0016). Idempotent as
    transfer_create; the fingerprint covers the postings in their order.
    """
    if not 1 <= len(postings) <= MAX_POSTINGS:
        raise errors.InvalidRequest(f"A transfer has 1 to {MAX_POSTINGS} postings.", field="postings")
    metadata = metadata or {}
    request: dict[str, Any] = {"postings": [posting.canonical() for posting in postings], "metadata": metadata}
    if description is not None:
        request["description"] = description
    return _transfer_post(
        idempotency_key=idempotency_key,
        postings=postings,
        single=False,
        metadata=metadata,
        description=description,
        fingerprint=request_fingerprint(request=request),
    )


def _transfer_post(
    *,
    idempotency_key: str,
    postings: Sequence[Posting],
    single: bool,
    metadata: dict[str, Any],
    description: str | None,
    fingerprint: str,
) -> TransferOutcome:
    for index, posting in enumerate(postings):
        if posting.amount < 1 or posting.amount > INT64_MAX:
            raise errors.InvalidRequest(
                "amount must be between 1 and 2^63-1 minor units.",
                field="amount" if single else f"postings[{index}].amount",
            )
    _description_check(description)
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    arguments = [
        idempotency_key,
        fingerprint,
        single,
        [posting.from_account_id for posting in postings],
        [posting.to_account_id for posting in postings],
        [posting.amount for posting in postings],
        [posting.currency for posting in postings],
        Jsonb(metadata),
        description,
        new_id(),
        [new_id() for _ in range(2 * len(postings))],
        [new_id() for _ in range(1 + 2 * len(postings))],
        Jsonb(trace_headers),
    ]

    def work() -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT ledger_post_transfer(%s, %s, %s, %s::uuid[], %s::uuid[], %s::bigint[], %s::text[], %s, %s, "
                "%s, %s::uuid[], %s::uuid[], %s)::text",
                arguments,  # type: ignore[arg-type]  # django-stubs' SQL parameter types lack psycopg's Jsonb
            )
            result = orjson.loads(cursor.fetchone()[0])
        if result["outcome"] == "posted":
            outbox_relay_kick_on_commit()
        return result

    return _outcome(in_durable_transaction(work), idempotency_key=idempotency_key)


def transfer_reverse(
    *,
    idempotency_key: str,
    transfer_id: UUID,
    amount: int | None = None,
    description: str | None = None,
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
    fingerprint = request_fingerprint(request=request)
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)

    def work() -> dict[str, Any]:
        with connection.cursor() as cursor:
            # Immutable, so read without a lock; the function locks the transfer itself.
            posting_count = Transfer.objects.filter(id=transfer_id).values_list("posting_count", flat=True).first()
            postings = posting_count or 1
            arguments = [
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
            cursor.execute(
                "SELECT ledger_reverse_transfer(%s, %s, %s, %s, %s, %s, %s::uuid[], %s::uuid[], %s)::text",
                arguments,  # type: ignore[arg-type]  # django-stubs' SQL parameter types lack psycopg's Jsonb
            )
            result = orjson.loads(cursor.fetchone()[0])
        if result["outcome"] == "posted":
            outbox_relay_kick_on_commit()
        return result

    return _outcome(in_durable_transaction(work), idempotency_key=idempotency_key)


def _description_check(description: str | None) -> None:
    if description is not None and len(description) > DESCRIPTION_MAX_LENGTH:
        raise errors.InvalidRequest(
            f"description has at most {DESCRIPTION_MAX_LENGTH} characters.", field="description"
        )


def _outcome(result: dict[str, Any], *, idempotency_key: str) -> TransferOutcome:
    """The transfer a posting function returned, or the domain error it refused with."""
    replayed = result["outcome"] == "replayed"
    if result["outcome"] == "conflict":
        error: errors.LedgerError = errors.IdempotencyKeyReused(
            f"Idempotency key '{idempotency_key}' was first used with a different request; "
            "use a new key for a new transfer.",
            field="idempotencyKey",
        )
    elif result.get("error") is not None:
        error = errors.LedgerError.from_outcome(result["error"])
        error.replayed = replayed
    else:
        document = result["transfer"]
        if not replayed:
            for currency in sorted({posting["currency"] for posting in document["postings"]}):
                metrics.TRANSFERS_POSTED.labels(currency=currency).inc()
        positions: dict[UUID, int] = {}
        for entry in document["entries"]:
            account_id = UUID(entry["accountId"])
            positions[account_id] = max(positions.get(account_id, 0), entry["sequence"])
        return TransferOutcome(document=document, replayed=replayed, positions=positions)
    if not replayed:
        metrics.TRANSFERS_FAILED.labels(reason=error.code).inc()
    raise error
