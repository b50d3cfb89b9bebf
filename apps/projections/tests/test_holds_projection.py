"""Holds in the read model: each hold event moves its transfer's projection row, and a
rebuild from the ledger gives the same rows as the events did."""

from __future__ import annotations

import time

import pytest

from apps.ledger.services import HoldRequest, hold_post, hold_void, holds_expire
from apps.projections.models import ProjectedBalance, ProjectedTransfer
from apps.projections.replay import projections_replay
from apps.projections.verification import projections_verify

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

COMPARED = ("transfer_id", "status", "amount", "currency", "postings", "description", "metadata", "entries")


def rows() -> dict[str, dict]:
    return {str(row["transfer_id"]): row for row in ProjectedTransfer.objects.values(*COMPARED)}


@pytest.fixture
def holds(make_account, make_transfer, sync_projections):
    """One hold of each fate: posted in part, voided, expired, and still pending."""
    bank, wallet, shop = make_account(), make_account(overdraft_limit=0), make_account(overdraft_limit=0)
    make_transfer(bank, wallet, 1000)
    posted = make_transfer(wallet, shop, 300, hold=HoldRequest(timeout_seconds=60)).transfer_id
    voided = make_transfer(wallet, shop, 200, hold=HoldRequest(timeout_seconds=60)).transfer_id
    expired = make_transfer(wallet, shop, 100, hold=HoldRequest(timeout_seconds=1)).transfer_id
    pending = make_transfer(wallet, shop, 50, hold=HoldRequest(timeout_seconds=60)).transfer_id
    hold_post(transfer_id=posted, idempotency_key="post-1", amount=120)
    hold_void(transfer_id=voided, idempotency_key="void-1")
    time.sleep(1.1)
    assert holds_expire(limit=10) == 1
    sync_projections()
    return {"posted": posted, "voided": voided, "expired": expired, "pending": pending, "wallet": wallet, "shop": shop}


def test_each_hold_event_moves_its_transfer_row(holds):
    projected = rows()

    assert {fate: projected[str(holds[fate])]["status"] for fate in ("posted", "voided", "expired", "pending")} == {
        "posted": "posted",
        "voided": "voided",
        "expired": "expired",
        "pending": "pending",
    }
    assert projected[str(holds["posted"])]["amount"] == 120
    assert len(projected[str(holds["posted"])]["entries"]) == 2
    assert projected[str(holds["pending"])]["entries"] == []
    balances = {row.account_id: row.balance for row in ProjectedBalance.objects.all()}
    assert (balances[holds["wallet"].id], balances[holds["shop"].id]) == (1000 - 120, 120)
    assert projections_verify(limit=10).ok


def test_a_rebuild_from_the_ledger_gives_the_rows_the_events_gave(holds):
    from_events = rows()

    projections_replay()

    assert rows() == from_events
    assert projections_verify(limit=10).ok
