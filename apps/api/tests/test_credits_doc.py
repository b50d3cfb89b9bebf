"""The worked example of docs/credits.md (and the README's), request by request: a monthly plan
with a promotion and a top-up, usage, the expiry booking and the explanation. Each answer the
doc shows (through its `jq` filter) is asserted here, so the doc cannot drift from the API.
The ledger's clock is set to the example's days (2026-12-01 09:00 UTC first)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.ledger.selectors import ledger_now
from apps.ledger.tasks import book_grants_due

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


def pick(body: dict, *keys: str) -> dict:
    return {key: body[key] for key in keys}


def test_the_worked_example_of_a_monthly_plan(api, ledger_clock, sync_projections):
    def on(moment: datetime) -> None:
        ledger_clock.advance(moment - ledger_now())

    def account(body: dict) -> str:
        return api.post("/accounts", {"currency": "CREDITS", **body}, format="json").json()["accountId"]

    on(datetime(2026, 12, 1, 9, tzinfo=UTC))
    plans = account({"name": "Plan credits"})
    promotions = account({"name": "Promotions"})
    sales = account({"name": "Top-up sales"})
    breakage = account({"name": "Expired credits"})
    wallet = account({"name": "Acme wallet", "externalRef": "customer-42", "overdraftLimit": 0})
    usage = account({"name": "API usage"})

    def grant(body: dict) -> dict:
        response = api.post(f"/accounts/{wallet}/grants", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    def spend(amount: int, key: str) -> dict:
        body = {"from": wallet, "to": usage, "amount": amount, "currency": "CREDITS", "description": "API usage"}
        response = api.post("/transfers", {**body, "idempotencyKey": key}, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    def grants() -> list[dict]:
        listed = api.get(f"/accounts/{wallet}/grants").json()["data"]
        return [pick(g, "description", "priority", "remaining", "consumed", "expired", "status") for g in listed]

    def balance(account_id: str) -> dict:
        sync_projections()
        return pick(api.get(f"/accounts/{account_id}/balance").json(), "balance", "available", "expiringSoon")

    # 1. The plan: 1,000 credits until the period's end; what is left then goes to breakage.
    plan = grant(
        {
            "from": plans,
            "amount": 1000,
            "expiresAt": "2027-01-01T00:00:00Z",
            "expireTo": breakage,
            "description": "December plan",
            "idempotencyKey": "plan-2026-12-customer-42",
        }
    )
    assert pick(plan, "amount", "remaining", "priority", "status", "expiresAt") == {
        "amount": 1000,
        "remaining": 1000,
        "priority": 50,
        "status": "active",
        "expiresAt": "2027-01-01T00:00:00.000000Z",
    }
    assert plan["expireTo"] == breakage
    # 2. A promotion at a higher priority (a lower number burns first).
    promotion = grant(
        {
            "from": promotions,
            "amount": 200,
            "priority": 10,
            "expiresAt": "2027-01-01T00:00:00Z",
            "description": "Welcome bonus",
            "idempotencyKey": "welcome-customer-42",
        }
    )
    assert pick(promotion, "status", "priority") == {"status": "active", "priority": 10}
    # 3. A purchased top-up that never expires.
    on(datetime(2026, 12, 5, 9, tzinfo=UTC))
    topup = grant({"from": sales, "amount": 500, "description": "Top-up pack", "idempotencyKey": "topup-customer-42-1"})
    assert pick(topup, "status", "expiresAt") == {"status": "active", "expiresAt": None}
    assert balance(wallet) == {
        "balance": 1700,
        "available": 1700,
        "expiringSoon": {"amount": 1200, "at": "2027-01-01T00:00:00Z"},
    }

    # 4. Usage: the promotion first, then the plan (it expires before the top-up).
    on(datetime(2026, 12, 10, 9, tzinfo=UTC))
    assert pick(spend(700, "usage-customer-42-2026-12-10"), "status", "amount") == {"status": "posted", "amount": 700}
    assert grants() == [
        {
            "description": "December plan",
            "priority": 50,
            "remaining": 500,
            "consumed": 500,
            "expired": 0,
            "status": "active",
        },
        {
            "description": "Top-up pack",
            "priority": 50,
            "remaining": 500,
            "consumed": 0,
            "expired": 0,
            "status": "active",
        },
        {
            "description": "Welcome bonus",
            "priority": 10,
            "remaining": 0,
            "consumed": 200,
            "expired": 0,
            "status": "exhausted",
        },
    ]
    on(datetime(2026, 12, 20, 9, tzinfo=UTC))
    assert pick(spend(400, "usage-customer-42-2026-12-20"), "status", "amount") == {"status": "posted", "amount": 400}
    assert balance(wallet) == {
        "balance": 600,
        "available": 600,
        "expiringSoon": {"amount": 100, "at": "2027-01-01T00:00:00Z"},
    }

    # 5. The period ends: the plan's last 100 no longer count, before and after the booking.
    on(datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC))
    assert balance(wallet) == {"balance": 500, "available": 500, "expiringSoon": None}
    assert book_grants_due() == 1  # what the beat task does within a second on a running stack
    history = api.get(f"/grants/{plan['grantId']}").json()["history"]
    assert [pick(h, "kind", "amount", "description") for h in history] == [
        {"kind": "draw", "amount": 500, "description": "API usage"},
        {"kind": "draw", "amount": 400, "description": "API usage"},
        {"kind": "expire", "amount": 100, "description": 'Expiry of grant "December plan"'},
    ]
    expiry = api.get(f"/transfers/{history[-1]['transferId']}").json()
    assert pick(expiry, "from", "to", "amount", "description", "metadata") == {
        "from": wallet,
        "to": breakage,
        "amount": 100,
        "description": 'Expiry of grant "December plan"',
        "metadata": {"grantId": plan["grantId"], "effectiveAt": "2027-01-01T00:00:00.000000Z"},
    }
    assert expiry["idempotencyKey"] == f"ledger:{expiry['transferId']}"
    assert balance(wallet)["balance"] == 500
    assert balance(breakage)["balance"] == 100

    # 6. The explanation.
    on(datetime(2027, 1, 2, 9, tzinfo=UTC))
    explanation = api.get(f"/accounts/{wallet}/explain", {"since": "2026-12-01T00:00:00Z"}).json()
    assert explanation["summary"] == [
        (
            '0 CREDITS on Dec 1 → 500 CREDITS now: +1000 "December plan" granted on Dec 1; '
            '+200 "Welcome bonus" granted on Dec 1; +500 "Top-up pack" granted on Dec 5; '
            '-1100 "API usage" in 2 changes, Dec 10–Dec 20 (from "Welcome bonus" 200, "December plan" 900); '
            '-100 "December plan" expired on Jan 1.'
        ),
        'The balance is 500 of "Top-up pack", and 0 unrestricted.',
    ]
    assert (explanation["openingBalance"], explanation["balance"], explanation["unrestricted"]) == (0, 500, 0)
    assert [
        pick(g, "description", "granted", "consumed", "expired", "remaining", "status") for g in explanation["grants"]
    ] == [
        {
            "description": "Welcome bonus",
            "granted": 200,
            "consumed": 200,
            "expired": 0,
            "remaining": 0,
            "status": "exhausted",
        },
        {
            "description": "December plan",
            "granted": 1000,
            "consumed": 900,
            "expired": 100,
            "remaining": 0,
            "status": "expired",
        },
        {
            "description": "Top-up pack",
            "granted": 500,
            "consumed": 0,
            "expired": 0,
            "remaining": 500,
            "status": "active",
        },
    ]
    assert [
        [
            c["at"][:10],
            c["kind"],
            c["amount"],
            c["balanceAfter"],
            [(g["description"], g["amount"]) for g in c["grants"]],
        ]
        for c in explanation["changes"]
    ] == [
        ["2026-12-01", "grant", 1000, 1000, []],
        ["2026-12-01", "grant", 200, 1200, []],
        ["2026-12-05", "grant", 500, 1700, []],
        ["2026-12-10", "usage", -700, 1000, [("Welcome bonus", 200), ("December plan", 500)]],
        ["2026-12-20", "usage", -400, 600, [("December plan", 400)]],
        ["2027-01-01", "expiry", -100, 500, [("December plan", 100)]],
    ]
    assert explanation["changes"][-1]["at"] == "2027-01-01T00:00:00Z"  # when it expired, not when it was booked
