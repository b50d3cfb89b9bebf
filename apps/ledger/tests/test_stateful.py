"""The ledger against a model it must agree with: Hypothesis drives random sequences of every
command (single and multi-leg transfers, holds and their posts and voids, reversals, freezes,
replays)
through the services, and after every step each account's balance, pending totals, available
amount and status must be the model's, and every invariant must hold.

The model is deliberately naive: a dict per account, and the rules as the API documents them
(docs/domain.md). Accounts are fresh for each example, so examples do not need a clean database.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.accounts.models import Account
from apps.accounts.services import account_create, account_update
from apps.ledger.selectors import account_live_state
from apps.ledger.services import (
    HoldRequest,
    Posting,
    TransferOutcome,
    hold_post,
    hold_void,
    transfer_create,
    transfer_create_postings,
    transfer_reverse,
)
from apps.ledger.verification import ledger_verify
from creditledger import errors

pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNTS = 4
ISSUER = 2
_keys = count()


def key() -> str:
    return f"stateful-{next(_keys)}"


@dataclass
class ModelAccount:
    id: UUID
    limit: int | None
    balance: int = 0
    pending_debits: int = 0
    pending_credits: int = 0
    status: str = "active"

    def can_pay(self, debits: int, credits: int = 0) -> bool:
        """The overdraft rule: what stays after open holds and this request's net change."""
        return self.limit is None or self.balance - self.pending_debits - debits + credits >= -self.limit

    @property
    def available(self) -> int | None:
        return None if self.limit is None else self.balance - self.pending_debits + self.limit


@dataclass
class ModelHold:
    transfer_id: UUID
    postings: list[tuple[int, int, int]]  # (from index, to index, amount)


@dataclass
class Replayable:
    """A request that succeeded, to send again with the same key."""

    send: Any
    transfer_id: UUID
    legs: list[tuple[int, int, int]]
    reversed: bool = False


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    done = Bundle("done")

    def __init__(self) -> None:
        super().__init__()
        self.accounts: list[ModelAccount] = []
        for n in range(ACCOUNTS):
            limit = [0, 100, None, 0][n]  # two never negative, one down to -100, one unlimited (the issuer)
            created = account_create(currency="USD", overdraft_limit=limit)
            self.accounts.append(ModelAccount(id=created.id, limit=limit))
        issuer = self.accounts[ISSUER]
        for account in self.accounts:
            if account is not issuer:
                transfer_create(
                    idempotency_key=key(),
                    from_account_id=issuer.id,
                    to_account_id=account.id,
                    amount=500,
                    currency="USD",
                )
                issuer.balance -= 500
                account.balance += 500

    # -- commands ------------------------------------------------------------------------

    @rule(
        target=done,
        source=st.integers(0, ACCOUNTS - 1),
        destination=st.integers(0, ACCOUNTS - 1),
        amount=st.integers(1, 400),
    )
    def transfer(self, source: int, destination: int, amount: int) -> Any:
        idempotency_key = key()

        def send() -> TransferOutcome:
            return transfer_create(
                idempotency_key=idempotency_key,
                from_account_id=self.accounts[source].id,
                to_account_id=self.accounts[destination].id,
                amount=amount,
                currency="USD",
            )

        return self._posted(send, [(source, destination, amount)]) or multiple()

    @rule(
        target=done,
        legs=st.lists(
            st.tuples(st.integers(0, ACCOUNTS - 1), st.integers(0, ACCOUNTS - 1), st.integers(1, 300)),
            min_size=1,
            max_size=4,
        ),
    )
    def multi_leg_transfer(self, legs: list[tuple[int, int, int]]) -> Any:
        idempotency_key = key()

        def send() -> TransferOutcome:
            return transfer_create_postings(
                idempotency_key=idempotency_key,
                postings=[Posting(self.accounts[a].id, self.accounts[b].id, amount, "USD") for a, b, amount in legs],
            )

        return self._posted(send, legs) or multiple()

    @rule(
        target=holds,
        legs=st.lists(
            st.tuples(st.integers(0, ACCOUNTS - 1), st.integers(0, ACCOUNTS - 1), st.integers(1, 300)),
            min_size=1,
            max_size=2,
        ),
    )
    def hold(self, legs: list[tuple[int, int, int]]) -> Any:
        refusal = self._refusal(legs, pending=True)
        outcome = self._attempt(
            lambda: transfer_create_postings(
                idempotency_key=key(),
                postings=[Posting(self.accounts[a].id, self.accounts[b].id, amount, "USD") for a, b, amount in legs],
                hold=HoldRequest(timeout_seconds=3600),
            ),
            refusal,
        )
        if outcome is None:
            return multiple()  # refused: nothing for the bundle
        assert outcome.document["status"] == "pending"
        for a, b, amount in legs:
            self.accounts[a].pending_debits += amount
            self.accounts[b].pending_credits += amount
        return ModelHold(outcome.transfer_id, legs)

    @rule(held=consumes(holds), part=st.integers(1, 100))
    def post_hold(self, held: ModelHold, part: int) -> None:
        single = len(held.postings) == 1
        amount = max(1, held.postings[0][2] * part // 100) if single else None
        refusal = self._hold_refusal(held)
        outcome = self._attempt(
            lambda: hold_post(transfer_id=held.transfer_id, idempotency_key=key(), amount=amount), refusal
        )
        if outcome is None:
            return
        assert outcome.document["status"] == "posted"
        self._release(held)
        for a, b, held_amount in held.postings:
            moved = amount if amount is not None else held_amount
            self.accounts[a].balance -= moved
            self.accounts[b].balance += moved

    @rule(held=consumes(holds))
    def void_hold(self, held: ModelHold) -> None:
        outcome = self._attempt(lambda: hold_void(transfer_id=held.transfer_id, idempotency_key=key()), None)
        assert outcome is not None
        assert outcome.document["status"] == "voided"
        self._release(held)

    @precondition(lambda self: any(a.status == "active" for a in self.accounts))
    @rule(index=st.integers(0, ACCOUNTS - 1))
    def freeze(self, index: int) -> None:
        account = self.accounts[index]
        if account.status != "active":
            return
        account_update(account_id=account.id, status="frozen", reason="stateful test")
        account.status = "frozen"

    @rule(index=st.integers(0, ACCOUNTS - 1))
    def unfreeze(self, index: int) -> None:
        account = self.accounts[index]
        if account.status != "frozen":
            return
        account_update(account_id=account.id, status="active")
        account.status = "active"

    @rule(earlier=done)
    def reverse(self, earlier: Replayable) -> None:
        """Reverse a posted transfer whole: once, and only if the money is still there."""
        inverted = [(b, a, amount) for a, b, amount in earlier.legs]
        refusal = errors.ReversalExceedsOriginal if earlier.reversed else self._refusal(inverted, pending=False)
        outcome = self._attempt(
            lambda: transfer_reverse(idempotency_key=key(), transfer_id=earlier.transfer_id), refusal
        )
        if outcome is None:
            return
        assert outcome.document["reversalOf"] == str(earlier.transfer_id)
        earlier.reversed = True
        for a, b, amount in inverted:
            self.accounts[a].balance -= amount
            self.accounts[b].balance += amount

    @rule(earlier=done)
    def replay(self, earlier: Replayable) -> None:
        outcome = earlier.send()
        assert outcome.replayed
        assert outcome.transfer_id == earlier.transfer_id

    # -- what must always hold -----------------------------------------------------------

    @invariant()
    def accounts_agree_with_the_model(self) -> None:
        stored = {account.id: account for account in Account.objects.filter(id__in=[a.id for a in self.accounts])}
        for model in self.accounts:
            account = stored[model.id]
            pending = account_live_state(account_id=model.id)
            assert (account.balance, account.status) == (model.balance, model.status)
            assert (account.pending_debits, account.pending_credits) == (model.pending_debits, model.pending_credits)
            assert (pending.pending_debits, pending.pending_credits) == (model.pending_debits, model.pending_credits)
            if model.limit is not None:
                assert account.balance - pending.pending_debits + model.limit == model.available
                assert model.available >= 0

    def teardown(self) -> None:
        report = ledger_verify()
        assert report.ok, report.summary_lines()

    # -- the model's rules ---------------------------------------------------------------

    def _refusal(self, legs: list[tuple[int, int, int]], *, pending: bool) -> type[errors.LedgerError] | None:
        """What the ledger must refuse the request with, first rule first (docs/domain.md)."""
        for a, b, _amount in legs:
            if a == b:
                return errors.SameAccount
            if "frozen" in (self.accounts[a].status, self.accounts[b].status):
                return errors.AccountNotActive
        net: dict[int, tuple[int, int]] = {}
        for a, b, amount in legs:
            debits, credits = net.get(a, (0, 0))
            net[a] = (debits + amount, credits)
            debits, credits = net.get(b, (0, 0))
            net[b] = (debits, credits + amount)
        for index, (debits, credits) in net.items():
            # A posted transfer nets credits against debits; a hold reserves its debits alone.
            counted_credits = 0 if pending else credits
            if debits > counted_credits and not self.accounts[index].can_pay(debits, counted_credits):
                return errors.InsufficientFunds
        return None

    def _hold_refusal(self, held: ModelHold) -> type[errors.LedgerError] | None:
        for a, b, _amount in held.postings:
            if "frozen" in (self.accounts[a].status, self.accounts[b].status):
                return errors.AccountNotActive
        return None

    def _attempt(self, send: Any, refusal: type[errors.LedgerError] | None) -> TransferOutcome | None:
        if refusal is None:
            return send()
        with pytest.raises(refusal):
            send()
        return None

    def _posted(self, send: Any, legs: list[tuple[int, int, int]]) -> Replayable | None:
        outcome = self._attempt(send, self._refusal(legs, pending=False))
        if outcome is None:
            return None
        assert outcome.document["status"] == "posted"
        for a, b, amount in legs:
            self.accounts[a].balance -= amount
            self.accounts[b].balance += amount
        return Replayable(send=send, transfer_id=outcome.transfer_id, legs=legs)

    def _release(self, held: ModelHold) -> None:
        for a, b, amount in held.postings:
            self.accounts[a].pending_debits -= amount
            self.accounts[b].pending_credits -= amount


LedgerMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)


def test_the_ledger_agrees_with_a_simple_model() -> None:
    run_state_machine_as_test(LedgerMachine, settings=LedgerMachine.TestCase.settings)
