"""Posting transfers: the one place that moves money.

The work happens in one round trip, in the PL/pgSQL function ledger_post_transfer
(sql/0004_post_transfer.sql): claim the idempotency key, lock both accounts in id order,
check the business rules, write the transfer, its two entries, the balances and the
outbox events, and record the outcome against the key. The triggers of 0002 check every
row it writes. This module owns the transaction, the input checks, the ids and the trace
context, and turns outcomes into domain errors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import UUID

import orjson
from django.db import connection
from opentelemetry import propagate
from psycopg.types.json import Jsonb

from apps.ledger.models import Transfer
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
    #: The sequence of the transfer's entry on each of its two accounts: how far the read
    #: model must have got on each account to include this transfer.
    positions: dict[UUID, int]

    @property
    def transfer_id(self) -> UUID:
        return UUID(self.document["transferId"])

    @cached_property
    def transfer(self) -> Transfer:
        return transfer_get(transfer_id=self.transfer_id)


def request_fingerprint(
    *, from_account_id: UUID, to_account_id: UUID, amount: int, currency: str, metadata: dict[str, Any]
) -> str:
    canonical = orjson.dumps(
        {
            "from": str(from_account_id),
            "to": str(to_account_id),
            "amount": amount,
            "currency": currency,
            "metadata": metadata,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


def transfer_create(
    *,
    idempotency_key: str,
    from_account_id: UUID,
    to_account_id: UUID,
    amount: int,
    currency: str,
    metadata: dict[str, Any] | None = None,
) -> TransferOutcome:
    """Move `amount` minor units from one account to another, exactly once per key.

    The first outcome for a key (the transfer, or the business error that refused it) is
    stored in the same transaction and returned again for the same request; the same key
    with a different request raises IdempotencyKeyReused. Invalid input (400: an amount
    out of range, an unknown currency) is not stored, as with Stripe.
    """
    metadata = metadata or {}
    if amount < 1 or amount > INT64_MAX:
        raise errors.InvalidRequest("amount must be between 1 and 2^63-1 minor units.", field="amount")
    fingerprint = request_fingerprint(
        from_account_id=from_account_id,
        to_account_id=to_account_id,
        amount=amount,
        currency=currency,
        metadata=metadata,
    )
    trace_headers: dict[str, str] = {}
    propagate.inject(trace_headers)
    arguments = [
        idempotency_key,
        fingerprint,
        from_account_id,
        to_account_id,
        amount,
        currency,
        Jsonb(metadata),
        new_id(),
        [new_id(), new_id()],
        [new_id(), new_id(), new_id()],
        Jsonb(trace_headers),
    ]

    def work() -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT ledger_post_transfer(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)::text",
                arguments,  # type: ignore[arg-type]  # django-stubs' SQL parameter types lack psycopg's Jsonb
            )
            result = orjson.loads(cursor.fetchone()[0])
        if result["outcome"] == "posted":
            outbox_relay_kick_on_commit()
        return result

    result = in_durable_transaction(work)
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
        if not replayed:
            metrics.TRANSFERS_POSTED.labels(currency=currency).inc()
        document = result["transfer"]
        positions = {UUID(entry["accountId"]): entry["sequence"] for entry in document["entries"]}
        return TransferOutcome(document=document, replayed=replayed, positions=positions)
    if not replayed:
        metrics.TRANSFERS_FAILED.labels(reason=error.code).inc()
    raise error
