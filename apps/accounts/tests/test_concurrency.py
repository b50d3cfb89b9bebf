"""account_update racing transfers on the same account, over HTTP from threads."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Account, AccountStatus
from apps.outbox.models import OutboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_freeze_racing_transfers_lets_each_one_either_post_before_it_or_be_refused(make_account, run_together):
    account, other = make_account(), make_account()
    count = 12

    def work(index: int):
        client = APIClient()
        if index == count // 2:
            return client.patch(f"/accounts/{account.id}", {"status": "frozen", "reason": "race"}, format="json")
        source, destination = (account, other) if index % 2 else (other, account)
        body = {"from": str(source.id), "to": str(destination.id), "amount": 10 + index, "currency": "USD"}
        return client.post("/transfers", {**body, "idempotencyKey": f"race-{index}"}, format="json")

    results = run_together(count, work)

    assert [result for result in results if isinstance(result, BaseException)] == []
    freeze = results.pop(count // 2)
    assert freeze.status_code == 200
    assert {response.status_code for response in results} <= {201, 422}
    refused = [response.json() for response in results if response.status_code == 422]
    assert {(body["code"], body["accountStatus"]) for body in refused} <= {("account_not_active", "frozen")}
    posted = {response.json()["transferId"] for response in results if response.status_code == 201}
    # Serialized by the account's row lock: every posted transfer's events precede the freeze's.
    frozen_at = OutboxEvent.objects.get(event_type="AccountUpdated").id
    posted_events = OutboxEvent.objects.filter(event_type="TransferPosted")
    assert set(posted_events.values_list("key", flat=True)) == posted
    assert all(event_id < frozen_at for event_id in posted_events.values_list("id", flat=True))
    stored = Account.objects.get(id=account.id)
    assert stored.status == AccountStatus.FROZEN
    assert stored.last_sequence == len(posted)
    assert len(posted) + len(refused) == count - 1
