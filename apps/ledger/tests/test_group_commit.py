"""Group commit of POST /transfers (docs/adr/0021-group-commit.md) under real concurrency:
threads with their own connections, the groups observed through the one call of
ledger_post_transfers each group's transaction makes."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from apps.accounts.models import Account
from apps.ledger import services
from apps.ledger.models import IdempotencyRecord, Transfer
from apps.ledger.services import HoldRequest, TransferOutcome, transfer_create
from apps.ledger.verification import ledger_verify
from apps.outbox.models import OutboxEvent
from creditledger import errors
from creditledger.actor import actor_set, api_key_actor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def group_calls(monkeypatch) -> list[list[str]]:
    """The idempotency keys of each call of ledger_post_transfers (one per group's transaction)."""
    calls: list[list[str]] = []
    post = services._transfers_post_in_transaction

    def recorded(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append([item["key"] for item in items])
        return post(items)

    monkeypatch.setattr(services, "_transfers_post_in_transaction", recorded)
    return calls


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def lock_awaited() -> bool:
    """Whether a session of this database waits for a lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else read once per transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


class Requests:
    """Requests posted each in its own thread; `answers` in the order they were submitted."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.answers: dict[int, Any] = {}

    def submit(self, work: Callable[[], Any]) -> None:
        """Post `work()` and wait until it has joined the queue (or posts as the leader)."""
        index = len(self.threads)
        waiting = services._transfer_group_commit.waiting()

        def run() -> None:
            try:
                self.answers[index] = work()
            except Exception as exc:  # noqa: BLE001 - handed back to the test
                self.answers[index] = exc
            finally:
                connection.close()

        self.threads.append(threading.Thread(target=run))
        self.threads[-1].start()
        if index == 0:
            wait_for(lock_awaited)
        else:
            wait_for(lambda: services._transfer_group_commit.waiting() == waiting + 1)

    def joined(self) -> list[Any]:
        for thread in self.threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in self.threads), "a request hung"
        return [self.answers[index] for index in range(len(self.threads))]


@contextmanager
def one_group(account: Account, leader: Callable[[], Any]) -> Iterator[Requests]:
    """Make the requests submitted in the block one group, in their order: `leader` (a transfer
    from `account`) is posted first, alone, and waits for the lock this test holds on
    `account`, while the others queue; the lock is released at the block's end."""
    requests = Requests()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM account WHERE id = %s FOR UPDATE", [account.id])
        requests.submit(leader)
        yield requests


def as_actor(actor: str, work: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        actor_set(actor)
        return work()

    return run


def test_a_lone_request_is_posted_at_once_in_a_group_of_one(make_account, make_transfer, group_calls):
    a, b = make_account(), make_account()

    started = time.monotonic()
    make_transfer(a, b, 100, idempotency_key="lone")
    elapsed = time.monotonic() - started

    assert group_calls == [["lone"]]
    assert elapsed < 1


def test_with_group_commit_off_each_request_has_its_own_transaction(make_account, make_transfer, group_calls, settings):
    settings.LEDGER = {**settings.LEDGER, "GROUP_COMMIT": False}
    a, b = make_account(), make_account()

    outcome = make_transfer(a, b, 100)

    assert group_calls == []
    assert outcome.document["status"] == "posted"


def test_requests_that_arrive_together_each_keep_their_key_refusal_events_and_actor(make_account, group_calls):
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account()
    transfer_create(
        idempotency_key="fund", from_account_id=bank.id, to_account_id=wallet.id, amount=500, currency="USD"
    )
    keys = ("a1", "a2", "same", "same-again", "other", "too-much", "hold")
    actors = {key: api_key_actor(uuid.uuid4()) for key in keys}

    def post(
        key: str, source: Account, amount: int, idempotency_key: str | None = None, hold: HoldRequest | None = None
    ) -> Callable[[], Any]:
        return as_actor(
            actors[key],
            lambda: transfer_create(
                idempotency_key=idempotency_key or key,
                from_account_id=source.id,
                to_account_id=shop.id,
                amount=amount,
                currency="USD",
                hold=hold,
            ),
        )

    with one_group(bank, post("a1", bank, 1)) as requests:
        requests.submit(post("a2", bank, 2))
        requests.submit(post("same", bank, 3))
        requests.submit(post("same-again", bank, 3, idempotency_key="same"))  # the same request: a replay
        requests.submit(post("other", bank, 4, idempotency_key="same"))  # another request: 409
        requests.submit(post("too-much", wallet, 600))  # refused: the wallet holds 500
        requests.submit(post("a2", wallet, 500, idempotency_key="wallet"))
        requests.submit(post("hold", bank, 5, hold=HoldRequest(timeout_seconds=600)))
    answers = requests.joined()

    assert group_calls == [["fund"], ["a1"], ["a2", "same", "same", "same", "too-much", "wallet", "hold"]]
    a1, a2, same, same_again, _, _, from_wallet, hold = answers
    assert [type(answer).__name__ for answer in answers] == [
        "TransferOutcome", "TransferOutcome", "TransferOutcome", "TransferOutcome",
        "IdempotencyKeyReused", "InsufficientFunds", "TransferOutcome", "TransferOutcome",
    ]  # fmt: skip
    assert hold.document["status"] == "pending"
    assert Transfer.objects.get(id=hold.transfer_id).actor == actors["hold"]
    assert not any(outcome.replayed for outcome in (a1, a2, same, from_wallet))
    assert same_again.replayed
    assert same_again.transfer_id == same.transfer_id
    wallet.refresh_from_db()
    assert wallet.balance == 0  # posted after the refused 600, in the same transaction
    for key in ("a1", "a2", "same", "too-much", "hold"):
        assert IdempotencyRecord.objects.get(key=key).actor == actors[key]
    for outcome, key in ((a1, "a1"), (a2, "a2"), (same, "same"), (from_wallet, "a2")):
        transfer = Transfer.objects.get(id=outcome.transfer_id)
        assert transfer.actor == actors[key]
        events = [event for event in OutboxEvent.objects.all() if str(transfer.id) in str(event.payload["data"])]
        assert len(events) == 3  # TransferPosted and an EntryPosted per account
        assert {event.payload["actor"] for event in events} == {actors[key]}
    assert not Transfer.objects.filter(idempotency_key="too-much").exists()
    assert ledger_verify().ok


def payments(*, prefix: str, payer: Account, payee: Account) -> Callable[[int], Callable[[], Any]]:
    """post_one(index): a request paying `index` from payer to payee, under its own key."""

    def post_one(index: int) -> Callable[[], Any]:
        return lambda: transfer_create(
            idempotency_key=f"{prefix}-{index}",
            from_account_id=payer.id,
            to_account_id=payee.id,
            amount=index,
            currency="USD",
        )

    return post_one


def test_a_group_whose_transaction_fails_posts_each_request_alone_once(make_account, monkeypatch):
    a, b = make_account(), make_account()
    post = services._transfers_post_in_transaction
    groups: list[int] = []

    def failing_groups(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = post(items)  # the work is done, then the whole transaction rolls back
        groups.append(len(items))
        if len(items) > 1:
            raise DatabaseError("an item broke the group")
        return results

    monkeypatch.setattr(services, "_transfers_post_in_transaction", failing_groups)

    post_one = payments(prefix="alone", payer=b, payee=a)

    with one_group(b, post_one(1)) as requests:
        for index in range(2, 6):
            requests.submit(post_one(index))
    answers = requests.joined()

    assert groups == [1, 4]
    assert all(isinstance(answer, TransferOutcome) and not answer.replayed for answer in answers)
    assert Transfer.objects.count() == 5
    a.refresh_from_db()
    assert a.balance == 1 + 2 + 3 + 4 + 5


def test_a_serialization_failure_retries_the_whole_group_and_posts_each_request_once(make_account, monkeypatch):
    a, b = make_account(), make_account()
    post = services._transfers_post_in_transaction
    calls: list[int] = []

    def fails_once(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = post(items)
        calls.append(len(items))
        if len(items) > 1 and calls.count(len(items)) == 1:
            with connection.cursor() as cursor:
                cursor.execute("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = 'serialization_failure'; END $$")
        return results

    monkeypatch.setattr(services, "_transfers_post_in_transaction", fails_once)

    post_one = payments(prefix="retried", payer=b, payee=a)

    with one_group(b, post_one(1)) as requests:
        for index in range(2, 5):
            requests.submit(post_one(index))
    answers = requests.joined()

    assert calls == [1, 3, 3]
    assert all(isinstance(answer, TransferOutcome) and not answer.replayed for answer in answers)
    a.refresh_from_db()
    assert a.balance == 1 + 2 + 3 + 4
    assert Transfer.objects.count() == 4


def test_64_clients_with_refusals_and_replays_get_the_answers_of_a_sequential_ledger(
    make_account, run_together, group_calls
):
    """The issue's check: each client posts random debits from wallets that may not go below
    zero (so some are refused), replays some of its keys (same request: the first answer
    again) and reuses some with another request (409), while other clients race it on shared
    keys. Every answer is checked against a model of what a sequential ledger answers."""
    clients, steps = 64, 6
    bank, shop = make_account(), make_account()
    wallets = [make_account(overdraft_limit=0) for _ in range(8)]
    for index, wallet in enumerate(wallets):
        transfer_create(
            idempotency_key=f"fund-{index}",
            from_account_id=bank.id,
            to_account_id=wallet.id,
            amount=1000,
            currency="USD",
        )

    def request(key: str, wallet: Account, amount: int) -> tuple[str, str, int]:
        return key, str(wallet.id), amount

    def post(sent: tuple[str, str, int]) -> Any:
        key, wallet_id, amount = sent
        try:
            return transfer_create(
                idempotency_key=key,
                from_account_id=uuid.UUID(wallet_id),
                to_account_id=shop.id,
                amount=amount,
                currency="USD",
            )
        except errors.LedgerError as exc:
            return exc

    def client(index: int) -> list[tuple[tuple[str, str, int], str, Any]]:
        rng = random.Random(index)
        log: list[tuple[tuple[str, str, int], str, Any]] = []
        mine: list[tuple[str, str, int]] = []
        for step in range(steps):
            roll = rng.random()
            if mine and roll < 0.2:
                sent, kind = rng.choice(mine), "replay"
            elif mine and roll < 0.3:
                key, wallet_id, amount = rng.choice(mine)
                sent, kind = (key, wallet_id, amount + 1), "reuse"
            elif roll < 0.45:  # a key every client with the same step and parity races for
                sent, kind = request(f"shared-{step}-{index % 2}", wallets[step], 50), "shared"
            else:
                sent, kind = request(f"c{index}-{step}", rng.choice(wallets), rng.randint(1, 400)), "new"
            log.append((sent, kind, post(sent)))
            if kind in ("new", "shared"):
                mine.append(sent)
        return log

    logs = run_together(clients, client)

    assert [log for log in logs if isinstance(log, BaseException)] == []
    assert max(len(keys) for keys in group_calls) > 1, "no group of more than one formed"
    first: dict[str, tuple[tuple[str, str, int], Any]] = {}  # key -> the request that claimed it, its answer
    by_key: dict[str, list[tuple[tuple[str, str, int], str, Any]]] = defaultdict(list)
    for log in logs:
        for sent, kind, answer in log:
            by_key[sent[0]].append((sent, kind, answer))
    for key, answers in by_key.items():
        originals = [
            (sent, answer)
            for sent, _, answer in answers
            if not getattr(answer, "replayed", False) and not isinstance(answer, errors.IdempotencyKeyReused)
        ]
        assert len(originals) == 1, f"{key}: {len(originals)} first answers"
        first[key] = originals[0]
        claimed, answer = originals[0]
        for sent, kind, other in answers:
            if sent != claimed:
                assert isinstance(other, errors.IdempotencyKeyReused), f"{key}: {kind} answered {other!r}"
            elif other is not answer:  # the same request again: the first answer, replayed
                assert getattr(other, "replayed", False), f"{key}: {kind} answered {other!r}"
                assert type(other) is type(answer)
                if isinstance(answer, TransferOutcome):
                    assert other.transfer_id == answer.transfer_id
    refused = [answer for _, answer in first.values() if isinstance(answer, errors.LedgerError)]
    assert refused, "no refusal: the test drives no insufficient funds"
    assert {type(answer) for answer in refused} == {errors.InsufficientFunds}

    # The model: each wallet holds what it was funded with less what was posted from it, and
    # every refusal came while it held less than the debit needs.
    posted = {key: answer for key, (_, answer) in first.items() if isinstance(answer, TransferOutcome)}
    expected = {wallet.id: 1000 for wallet in wallets}
    for key, (sent, _) in first.items():
        if key in posted:
            expected[uuid.UUID(sent[1])] -= sent[2]
    for wallet in wallets:
        wallet.refresh_from_db()
        assert wallet.balance == expected[wallet.id] >= 0
    for key, (sent, answer) in first.items():
        if isinstance(answer, errors.InsufficientFunds):
            assert expected[uuid.UUID(sent[1])] < sent[2], f"{key} refused, yet the wallet ends with enough"
    transferred = Transfer.objects.filter(idempotency_key__in=list(first)).values_list("idempotency_key", flat=True)
    assert set(transferred) == set(posted)
    assert ledger_verify().ok
