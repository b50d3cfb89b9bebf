"""Grants against a model they must agree with: Hypothesis drives random sequences of grants
(priorities, expiries, scheduled starts), spends, holds and their posts and voids, reversals,
grant voids and top-ups on one customer account while the ledger's clock moves; after every
step every grant, the balance, the available amount and the explanation must be the model's,
and every invariant must hold.

The model is naive on purpose: a list of lots and an unrestricted balance, with the rules of
docs/credits.md written the plain way (effects due by now applied before each step, as reads
compute them whether booked or not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import count
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from apps.accounts.services import account_create
from apps.ledger.explanation import account_explanation
from apps.ledger.selectors import account_live_state, grant_list, ledger_now
from apps.ledger.services import (
    HoldRequest,
    grant_create,
    grant_void,
    grants_book_due,
    hold_post,
    hold_void,
    transfer_create,
    transfer_reverse,
)
from apps.ledger.verification import ledger_verify
from creditledger import errors
from tests.support import LedgerClock

pytestmark = pytest.mark.django_db(transaction=True)

_keys = count()


def key() -> str:
    return f"grants-stateful-{next(_keys)}"


@dataclass
class Lot:
    grant_id: str
    order: int
    amount: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    consumed: int = 0
    reserved: int = 0
    expired: int = 0
    voided: int = 0
    status: str = "active"

    @property
    def remaining(self) -> int:
        return self.amount - self.consumed - self.reserved - self.expired - self.voided

    def burn_key(self) -> tuple:
        return (self.priority, self.expires_at is None, self.expires_at or self.effective_at, self.order)


@dataclass
class Spend:
    transfer_id: UUID
    amount: int
    drawn: list[tuple[Lot, int]]  # in burn order
    reversed: bool = False


@dataclass
class Held:
    transfer_id: UUID
    amount: int
    reserved: list[tuple[Lot, int]] = field(default_factory=list)


class GrantsMachine(RuleBasedStateMachine):
    spends = Bundle("spends")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.clock = LedgerClock()
        self.issuer = account_create(currency="USD")
        self.customer = account_create(currency="USD", overdraft_limit=0)
        self.shop = account_create(currency="USD")
        self.start = ledger_now()
        self.lots: list[Lot] = []
        self.unrestricted = 0
        self.pending = 0

    # -- the model's clock -----------------------------------------------------------------

    def now(self) -> datetime:
        return self.start + self.clock.offset

    def settle(self) -> None:
        """Apply what is due by now: grants take effect, and expire with their unreserved remainder."""
        now = self.now()
        for lot in self.lots:
            if lot.status == "scheduled" and lot.effective_at <= now:
                lot.status = "active"
            if lot.status in ("scheduled", "active") and lot.expires_at is not None and lot.expires_at <= now:
                lot.expired += lot.remaining
                lot.status = "expired"

    def balance(self) -> int:
        return self.unrestricted + sum(lot.remaining + lot.reserved for lot in self.lots if lot.status != "scheduled")

    def available(self) -> int:
        return self.balance() - self.pending

    def usable(self) -> list[Lot]:
        return sorted((lot for lot in self.lots if lot.status == "active" and lot.remaining > 0), key=Lot.burn_key)

    def draw(self, amount: int, *, reserve: bool) -> list[tuple[Lot, int]]:
        drawn = []
        for lot in self.usable():
            taken = min(amount, lot.remaining)
            if reserve:
                lot.reserved += taken
            else:
                lot.consumed += taken
            drawn.append((lot, taken))
            amount -= taken
            if amount == 0:
                break
        if not reserve:
            self.unrestricted -= amount
        self.exhaust()
        return drawn

    def exhaust(self) -> None:
        for lot in self.lots:
            if lot.status == "active" and lot.remaining == 0 and lot.reserved == 0:
                lot.status = "exhausted"
            elif lot.status == "exhausted" and lot.remaining + lot.reserved > 0:
                lot.status = "active"

    def give_back(self, lot: Lot, amount: int) -> None:
        """Credits back to a lot: usable while it lives, else booked out at once."""
        if lot.status == "voided":
            lot.voided += amount
        elif lot.status == "expired" or (lot.expires_at is not None and lot.expires_at <= self.now()):
            lot.expired += amount
            lot.expired += lot.remaining  # an unbooked expiry books the whole remainder
            lot.status = "expired"

    # -- commands --------------------------------------------------------------------------

    @rule(
        amount=st.integers(1, 60),
        priority=st.sampled_from([10, 50, 90]),
        expires_in=st.one_of(st.none(), st.integers(1, 10)),
        starts_in=st.sampled_from([0, 0, 0, 2]),
    )
    def grant(self, amount: int, priority: int, expires_in: int | None, starts_in: int) -> None:
        self.settle()
        now = self.now()
        effective = now + timedelta(days=starts_in) if starts_in else None
        expires = now + timedelta(days=starts_in + expires_in) if expires_in else None
        outcome = grant_create(
            account_id=self.customer.id,
            funding_account_id=self.issuer.id,
            amount=amount,
            idempotency_key=key(),
            priority=priority,
            effective_at=effective,
            expires_at=expires,
        )
        document = outcome.document
        self.lots.append(
            Lot(
                grant_id=document["grantId"],
                order=len(self.lots),
                amount=amount,
                priority=priority,
                effective_at=datetime.fromisoformat(document["effectiveAt"]),
                expires_at=datetime.fromisoformat(document["expiresAt"]) if document["expiresAt"] else None,
                status="scheduled" if starts_in else "active",
            )
        )
        self.exhaust()

    @rule(amount=st.integers(1, 40))
    def top_up(self, amount: int) -> None:
        self.settle()
        transfer_create(
            idempotency_key=key(),
            from_account_id=self.issuer.id,
            to_account_id=self.customer.id,
            amount=amount,
            currency="USD",
        )
        self.unrestricted += amount

    @rule(target=spends, amount=st.integers(1, 50))
    def spend(self, amount: int) -> Any:
        self.settle()
        send = lambda: transfer_create(  # noqa: E731
            idempotency_key=key(),
            from_account_id=self.customer.id,
            to_account_id=self.shop.id,
            amount=amount,
            currency="USD",
            description="usage",
        )
        if amount > self.available():
            with pytest.raises(errors.InsufficientFunds):
                send()
            return multiple()
        outcome = send()
        return Spend(outcome.transfer_id, amount, self.draw(amount, reserve=False))

    @rule(target=holds, amount=st.integers(1, 50))
    def hold(self, amount: int) -> Any:
        self.settle()
        send = lambda: transfer_create(  # noqa: E731
            idempotency_key=key(),
            from_account_id=self.customer.id,
            to_account_id=self.shop.id,
            amount=amount,
            currency="USD",
            hold=HoldRequest(),
        )
        if amount > self.available():
            with pytest.raises(errors.InsufficientFunds):
                send()
            return multiple()
        outcome = send()
        self.pending += amount
        return Held(outcome.transfer_id, amount, self.draw(amount, reserve=True))

    @rule(held=consumes(holds))
    def post_hold(self, held: Held) -> None:
        self.settle()
        hold_post(transfer_id=held.transfer_id, idempotency_key=key())
        self.pending -= held.amount
        for lot, taken in held.reserved:
            lot.reserved -= taken
            lot.consumed += taken
        self.unrestricted -= held.amount - sum(taken for _, taken in held.reserved)
        self.exhaust()

    @rule(held=consumes(holds))
    def void_hold(self, held: Held) -> None:
        self.settle()
        hold_void(transfer_id=held.transfer_id, idempotency_key=key())
        self.pending -= held.amount
        for lot, taken in held.reserved:
            lot.reserved -= taken
            self.give_back(lot, taken)
        self.exhaust()

    @rule(spent=spends)
    def reverse(self, spent: Spend) -> None:
        self.settle()
        send = lambda: transfer_reverse(idempotency_key=key(), transfer_id=spent.transfer_id)  # noqa: E731
        if spent.reversed:
            with pytest.raises(errors.ReversalExceedsOriginal):
                send()
            return
        send()
        spent.reversed = True
        self.unrestricted += spent.amount - sum(taken for _, taken in spent.drawn)
        for lot, taken in reversed(spent.drawn):
            lot.consumed -= taken
            self.give_back(lot, taken)
        self.exhaust()

    @rule(index=st.integers(0, 20))
    def void_grant(self, index: int) -> None:
        if not self.lots:
            return
        self.settle()
        lot = self.lots[index % len(self.lots)]
        send = lambda: grant_void(grant_id=UUID(lot.grant_id), idempotency_key=key())  # noqa: E731
        if lot.status in ("expired", "voided"):
            with pytest.raises(errors.GrantNotActive):
                send()
            return
        send()
        lot.voided += lot.remaining
        lot.status = "voided"

    @rule(days=st.integers(1, 4))
    def advance(self, days: int) -> None:
        self.clock.advance(timedelta(days=days))

    @rule()
    def beat(self) -> None:
        grants_book_due(limit=10)

    # -- what must always hold -------------------------------------------------------------

    @invariant()
    def grants_agree_with_the_model(self) -> None:
        self.settle()
        stored = {g["grantId"]: g for g in grant_list(account_id=self.customer.id)}
        for lot in self.lots:
            document = stored[lot.grant_id]
            assert (
                document["status"],
                document["remaining"],
                document["consumed"],
                document["reserved"],
                document["expired"],
                document["voided"],
            ) == (lot.status, lot.remaining, lot.consumed, lot.reserved, lot.expired, lot.voided), lot

    @invariant()
    def balances_agree_and_the_explanation_reconciles(self) -> None:
        self.settle()
        explanation = account_explanation(account_id=self.customer.id, since=self.start - timedelta(seconds=1))
        assert explanation.balance == self.balance()
        assert explanation.unrestricted == self.unrestricted
        assert sum(grant.in_balance for grant in explanation.grants) + explanation.unrestricted == explanation.balance
        running = explanation.opening_balance
        for change in explanation.changes:
            running += change.amount
            assert change.balance_after == running
        assert running == explanation.balance
        live = account_live_state(account_id=self.customer.id)
        assert live.pending_debits == self.pending
        self.customer.refresh_from_db()
        assert self.customer.balance + live.unbooked == self.balance()

    def teardown(self) -> None:
        try:
            report = ledger_verify()
            assert report.ok, report.summary_lines()
        finally:
            self.clock.reset()


GrantsMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)


def test_grants_agree_with_a_simple_model() -> None:
    run_state_machine_as_test(GrantsMachine, settings=GrantsMachine.TestCase.settings)
