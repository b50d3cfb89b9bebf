"""Who did it (issue 12): every write records its actor, `key:<id>` with an API key,
`anonymous` without one, `system` for the ledger's own bookings, and its events carry it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import Account, AccountChange, Currency
from apps.apikeys.services import api_key_create
from apps.ledger.models import CreditGrant, IdempotencyRecord, Transfer
from apps.ledger.selectors import transfer_commands
from apps.ledger.services import grants_book_due, holds_expire
from apps.outbox.models import OutboxEvent
from apps.outbox.schemas import event_validate
from creditledger.api.scopes import SCOPES

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


@pytest.fixture
def keyed(settings) -> tuple[APIClient, str]:
    """A client with a key of every scope, and the actor it writes as."""
    settings.LEDGER_AUTH = "required"
    created = api_key_create(name="billing", scopes=list(SCOPES))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {created.printed}")
    return api, f"key:{created.key.id}"


def created(response) -> dict:
    assert response.status_code == 201, response.content
    return response.json()


def paid_held_and_granted(api, bank, wallet, shop) -> tuple[dict, dict]:
    """Through `api`: 500 paid from bank to wallet, then a hold of 100 from wallet to shop and a
    grant of 20 from bank to wallet, both expiring in a minute. Returns (hold, grant)."""
    expires = (timezone.now() + timedelta(minutes=1)).isoformat()
    pay = {"from": str(bank.id), "to": str(wallet.id), "amount": 500, "currency": "USD", "idempotencyKey": "pay-1"}
    created(api.post("/transfers", pay, format="json"))
    hold = {
        "from": str(wallet.id),
        "to": str(shop.id),
        "amount": 100,
        "currency": "USD",
        "idempotencyKey": "hold-1",
        "pending": True,
        "expiresAt": expires,
    }
    held = created(api.post("/transfers", hold, format="json"))
    grant = {"from": str(bank.id), "amount": 20, "idempotencyKey": "g-1", "expiresAt": expires}
    return held, created(api.post(f"/accounts/{wallet.id}/grants", grant, format="json"))


def actors_of_events(**filters) -> set[str]:
    payloads = [row.payload for row in OutboxEvent.objects.filter(**filters)]
    for payload in payloads:
        event_validate(payload)
    return {payload["actor"] for payload in payloads}


def test_every_write_with_a_key_records_the_key_and_its_events_carry_it(keyed):
    api, actor = keyed
    currency = created(api.post("/currencies", {"code": "GPU_HOURS", "scale": 3, "name": "GPU hours"}, format="json"))
    bank, wallet, shop = (
        created(api.post("/accounts", {"currency": "USD", "name": name}, format="json"))["accountId"]
        for name in ("bank", "wallet", "shop")
    )
    paid = created(
        api.post(
            "/transfers",
            {"from": bank, "to": wallet, "amount": 1000, "currency": "USD", "idempotencyKey": "pay-1"},
            format="json",
        )
    )
    held = created(
        api.post(
            "/transfers",
            {"from": wallet, "to": shop, "amount": 300, "currency": "USD", "idempotencyKey": "hold-1", "pending": True},
            format="json",
        )
    )
    posted = api.post(f"/transfers/{held['transferId']}/post", {"idempotencyKey": "post-1"}, format="json")
    reversal = created(
        api.post(f"/transfers/{paid['transferId']}/reverse", {"idempotencyKey": "rev-1", "amount": 100}, format="json")
    )
    grant = created(
        api.post(f"/accounts/{wallet}/grants", {"from": bank, "amount": 50, "idempotencyKey": "g-1"}, format="json")
    )
    voided = api.post(f"/grants/{grant['grantId']}/void", {"idempotencyKey": "gv-1"}, format="json")
    batch = api.post(
        "/transfers/batch",
        {
            "atomic": True,
            "transfers": [{"from": bank, "to": shop, "amount": 5, "currency": "USD", "idempotencyKey": "b-1"}],
        },
        format="json",
    )

    assert (posted.status_code, voided.status_code, batch.status_code) == (200, 200, 200), batch.content
    assert Currency.objects.get(code=currency["code"]).actor == actor
    assert set(Account.objects.filter(id__in=[bank, wallet, shop]).values_list("actor", flat=True)) == {actor}
    assert set(Transfer.objects.values_list("actor", flat=True)) == {actor}
    assert Transfer.objects.get(id=reversal["transferId"]).actor == actor
    assert CreditGrant.objects.get(id=grant["grantId"]).actor == actor
    assert IdempotencyRecord.objects.get(key__endswith="post-1").actor == actor
    assert IdempotencyRecord.objects.get(key__endswith="gv-1").actor == actor
    assert Transfer.objects.get(idempotency_key__endswith="b-1").actor == actor
    (command,) = transfer_commands(transfer=Transfer.objects.get(id=held["transferId"]))
    assert (command.command, command.actor) == ("post", actor)
    assert actors_of_events() == {actor}


def test_an_account_change_by_key_records_the_key(keyed):
    api, actor = keyed
    account = created(api.post("/accounts", {"currency": "USD"}, format="json"))["accountId"]

    frozen = api.patch(f"/accounts/{account}", {"status": "frozen", "reason": "fraud"}, format="json")

    assert frozen.status_code == 200, frozen.content
    assert AccountChange.objects.get(account_id=account).actor == actor
    assert actors_of_events(event_type="AccountUpdated") == {actor}


def test_without_a_key_http_writes_are_anonymous_and_the_ledger_own_bookings_system(api, make_account, ledger_clock):
    bank, wallet, shop = make_account(), make_account(), make_account()
    held, _ = paid_held_and_granted(api, bank, wallet, shop)
    before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()

    bank_actor = Account.objects.get(id=bank.id).actor
    assert set(Transfer.objects.values_list("actor", flat=True)) == {"anonymous"}
    ledger_clock.advance(timedelta(minutes=2))
    assert holds_expire(limit=10) == 1
    grants_book_due(limit=10)  # what holds_expire did not book already

    assert bank_actor == "system"  # created by a service outside any request
    assert Transfer.objects.get(id=held["transferId"]).status == "expired"
    assert actors_of_events(id__gt=before) == {"system"}
    grant_expiry = Transfer.objects.exclude(actor="anonymous").get()  # the grant's remainder, expired
    assert grant_expiry.actor == "system"


def test_transfers_are_filtered_by_who_created_them(keyed, make_account, sync_projections):
    api, actor = keyed
    bank, wallet = make_account(), make_account()
    pay = {"from": str(bank.id), "to": str(wallet.id), "amount": 10, "currency": "USD"}
    by_key = created(api.post("/transfers", {**pay, "idempotencyKey": "by-key"}, format="json"))
    held = created(api.post("/transfers", {**pay, "idempotencyKey": "held", "pending": True}, format="json"))
    other = api_key_create(name="other", scopes=list(SCOPES))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {other.printed}")
    posted = api.post(f"/transfers/{held['transferId']}/post", {"idempotencyKey": "post"}, format="json")
    by_other = created(api.post("/transfers", {**pay, "idempotencyKey": "by-other"}, format="json"))
    sync_projections()

    def listed(who: str) -> list[str]:
        response = api.get("/transfers", {"actor": who})
        assert response.status_code == 200, response.content
        return [item["transferId"] for item in response.json()["data"]]

    assert posted.status_code == 200
    assert listed(actor) == [held["transferId"], by_key["transferId"]]  # a hold stays its creator's once posted
    assert listed(f"key:{other.key.id}") == [by_other["transferId"]]
    # The id as the key prints it (no dashes), or in capitals, names the same key.
    assert listed(f"key:{other.key.id.hex}") == listed(f"key:{str(other.key.id).upper()}") == [by_other["transferId"]]
    assert listed("system") == []


@pytest.mark.parametrize("value", ["key:1", "admin", "user:", "KEY:" + "0" * 36, "x" * 200])
def test_a_bad_actor_filter_is_a_400(api, problem, value):
    body = problem(api.get("/transfers", {"actor": value}), 400, "validation_error", field="actor")

    assert "Not an actor" in body["errors"][0]["message"] or "characters" in body["errors"][0]["message"]


def test_what_a_keyed_command_books_on_the_way_is_the_systems(keyed, make_account, ledger_clock):
    """A grant's expiry booked by the debit that found it due, and a hold's expiry found by the
    post sent to it, are the ledger's own bookings: `system`, not the key's."""
    api, actor = keyed
    bank, wallet, shop = make_account(), make_account(), make_account()
    held, grant = paid_held_and_granted(api, bank, wallet, shop)
    ledger_clock.advance(timedelta(minutes=2))
    before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()

    spent = created(
        api.post(
            "/transfers",
            {"from": str(wallet.id), "to": str(shop.id), "amount": 5, "currency": "USD", "idempotencyKey": "spend-1"},
            format="json",
        )
    )
    posted = api.post(f"/transfers/{held['transferId']}/post", {"idempotencyKey": "post-1"}, format="json")

    assert posted.status_code == 409, posted.content  # the hold had expired
    assert Transfer.objects.get(id=spent["transferId"]).actor == actor
    expiry = Transfer.objects.get(description__startswith="Expiry of grant")
    assert expiry.actor == "system"
    assert Transfer.objects.get(id=held["transferId"]).status == "expired"
    assert CreditGrant.objects.get(id=grant["grantId"]).status == "expired"
    events = {row.payload["type"]: row.payload["actor"] for row in OutboxEvent.objects.filter(id__gt=before)}
    assert events["GrantExpired"] == "system"
    assert events["TransferExpired"] == "system"
    assert events["TransferPosted"] in {actor, "system"}  # the spend's and the expiry's
    assert {row.payload["actor"] for row in OutboxEvent.objects.filter(id__gt=before, key=spent["transferId"])} == {
        actor
    }
