"""The seed README's walkthrough, verbatim: two accounts, one transfer, replayed once."""

import pytest

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def test_seed_walkthrough(api, sync_projections):
    a = api.post("/accounts", {"currency": "USD"}, format="json")
    b = api.post("/accounts", {"currency": "USD"}, format="json")
    assert a.status_code == b.status_code == 201
    body = {
        "from": a.json()["accountId"],
        "to": b.json()["accountId"],
        "amount": 1234,
        "currency": "USD",
        "idempotencyKey": "demo-1",
    }

    first = api.post("/transfers", body, format="json")
    again = api.post("/transfers", body, format="json")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    sync_projections()
    balance = api.get(f"/accounts/{b.json()['accountId']}/balance").json()
    assert balance["balance"] == 1234
    assert balance["currency"] == "USD"
    lines = api.get(f"/accounts/{a.json()['accountId']}/statements").json()["data"]
    assert [(line["amount"], line["balanceAfter"]) for line in lines] == [(-1234, -1234)]
