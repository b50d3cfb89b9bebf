"""AccountUpdated as a consumer gets it: valid against the registry, applied by the projector."""

from __future__ import annotations

import orjson
import pytest

from apps.accounts.services import account_update
from apps.outbox.models import OutboxEvent
from apps.outbox.schemas import event_validate
from apps.projections.projector import ConsumedMessage, projection_batch_apply
from apps.projections.verification import projections_verify

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def test_an_account_update_is_a_valid_event_on_the_account_key(make_account):
    account = make_account()

    account_update(account_id=account.id, metadata={"tier": "gold"}, status="frozen", reason="review")

    row = OutboxEvent.objects.get(event_type="AccountUpdated")
    event = event_validate(row.payload)
    assert (row.topic, row.key) == ("ledger.account.v1", str(account.id))
    assert (event["aggregateType"], event["aggregateId"], event["version"]) == ("account", str(account.id), 1)
    assert event["data"] == {
        "accountId": str(account.id),
        "changedFields": ["metadata", "status"],
        "status": "frozen",
        "metadata": {"tier": "gold"},
        "reason": "review",
    }
    assert row.headers["event_type"] == "AccountUpdated"


def test_the_projector_applies_it_and_the_read_model_is_unchanged(make_account, make_transfer, sync_projections):
    account, other = make_account(), make_account()
    make_transfer(other, account, 40)
    sync_projections()
    account_update(account_id=account.id, overdraft_limit=0)
    row = OutboxEvent.objects.get(event_type="AccountUpdated")

    message = ConsumedMessage(
        topic=row.topic, partition=0, offset=row.id, key=row.key.encode(), value=orjson.dumps(row.payload)
    )

    result = projection_batch_apply([message], consumer_group="tests")

    assert dict(result.applied) == {"AccountUpdated": 1}
    assert result.dead_letters == []
    assert projections_verify().ok
