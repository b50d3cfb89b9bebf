"""Credit grants through the API: POST /accounts/{id}/grants, burn-down, expiry, void, and
GET /accounts/{id}/explain (docs/credits.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.ledger.models import CreditGrant, Entry, Transfer
from apps.ledger.selectors import ledger_now

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])


@pytest.fixture
def plan(make_account):
    """An issuer with unlimited overdraft, a breakage account and a customer who may not go negative."""
    return {
        "promotions": make_account(name="promotions"),
        "breakage": make_account(name="breakage"),
        "customer": make_account(name="customer", overdraft_limit=0),
        "api": make_account(name="api usage"),
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def grant(api, plan, amount, key, **extra):
    return api.post(
        f"/accounts/{plan['customer'].id}/grants",
        {"from": str(plan["promotions"].id), "amount": amount, "idempotencyKey": key, **extra},
        format="json",
    )


def spend(api, plan, amount, key, description="API usage"):
    return api.post(
        "/transfers",
        {
            "from": str(plan["customer"].id),
            "to": str(plan["api"].id),
            "amount": amount,
            "currency": "USD",
            "idempotencyKey": key,
            "description": description,
        },
        format="json",
    )


def hold(api, plan, amount, key):
    return api.post(
        "/transfers",
        {
            "from": str(plan["customer"].id),
            "to": str(plan["api"].id),
            "amount": amount,
            "currency": "USD",
            "idempotencyKey": key,
            "pending": True,
        },
        format="json",
    )


def grants_by_description(api, account):
    return {g["description"]: g for g in api.get(f"/accounts/{account.id}/grants").json()["data"]}


def balance(api, account):
    return api.get(f"/accounts/{account.id}/balance").json()


def test_a_grant_credits_the_account_from_the_funding_account(api, plan, sync_projections):
    created = grant(api, plan, 1000, "g1", description="Welcome bonus", metadata={"campaign": "fall"})

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["accountId"] == str(plan["customer"].id)
    assert (body["amount"], body["remaining"], body["consumed"], body["reserved"], body["expired"]) == (
        1000,
        1000,
        0,
        0,
        0,
    )
    assert (body["priority"], body["status"], body["expiresAt"]) == (50, "active", None)
    assert body["from"] == body["expireTo"] == str(plan["promotions"].id)
    transfer = Transfer.objects.get(id=body["transferId"])
    assert (transfer.from_account_id, transfer.to_account_id, transfer.amount) == (
        plan["promotions"].id,
        plan["customer"].id,
        1000,
    )
    sync_projections()
    assert balance(api, plan["customer"])["balance"] == 1000
    assert balance(api, plan["promotions"])["balance"] == -1000


def test_a_grant_is_created_once_per_key(api, plan):
    first = grant(api, plan, 100, "g1")
    again = grant(api, plan, 100, "g1")
    other = grant(api, plan, 200, "g1")

    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["grantId"] == first.json()["grantId"]
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert CreditGrant.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"amount": 0}, 400, "validation_error", "amount"),
        ({"priority": 101}, 400, "validation_error", "priority"),
        ({"expiresAt": "2020-01-01T00:00:00Z"}, 400, "invalid_request", "expiresAt"),
        ({"expiresAt": "2020-01-01"}, 400, "validation_error", "expiresAt"),
        ({"from": "01935c9e-8f00-7000-8000-000000000001"}, 404, "account_not_found", "from"),
        ({"expireTo": "01935c9e-8f00-7000-8000-000000000001"}, 404, "account_not_found", "expireTo"),
        ({"surprise": 1}, 400, "validation_error", "surprise"),
        (
            {"from": "01935c9e-8f00-7000-8000-000000000001", "expireTo": "01935c9e-8f00-7000-8000-000000000002"},
            404,
            "account_not_found",
            "expireTo",
        ),
    ],
)
def test_a_bad_grant_request_is_refused_and_changes_nothing(
    api, plan, problem, ledger_state, body, status, code, field
):
    before = ledger_state()

    response = grant(api, plan, body.pop("amount", 100), "bad", **body)

    problem(response, status, code, field)
    assert ledger_state() == before
    assert CreditGrant.objects.count() == 0


def test_a_grant_the_funding_account_cannot_cover_is_refused(api, make_account, plan, problem, ledger_state):
    capped = make_account(overdraft_limit=0)
    before = ledger_state()

    response = api.post(
        f"/accounts/{plan['customer'].id}/grants",
        {"from": str(capped.id), "amount": 10, "idempotencyKey": "poor"},
        format="json",
    )

    problem(response, 422, "insufficient_funds")
    assert ledger_state() == before


def test_expired_credits_go_to_an_account_in_the_same_currency(api, make_account, plan, problem):
    euro = make_account(currency="EUR")

    problem(grant(api, plan, 10, "g", expireTo=str(euro.id)), 422, "currency_mismatch", "expireTo")


def test_debits_burn_grants_by_priority_then_expiry_then_creation_then_unrestricted(api, plan, make_transfer):
    now = ledger_now()
    make_transfer(plan["promotions"], plan["customer"], 5)  # unrestricted
    grant(api, plan, 10, "never", description="never expires")
    grant(api, plan, 10, "late", description="expires late", expiresAt=iso(now + timedelta(days=20)))
    grant(api, plan, 10, "soon", description="expires soon", expiresAt=iso(now + timedelta(days=10)))
    grant(api, plan, 10, "first", description="priority first", priority=10)

    assert spend(api, plan, 25, "s1").status_code == 201
    grants = grants_by_description(api, plan["customer"])
    assert [grants[d]["remaining"] for d in ("priority first", "expires soon", "expires late", "never expires")] == [
        0,
        0,
        5,
        10,
    ]
    assert grants["priority first"]["status"] == "exhausted"

    assert spend(api, plan, 18, "s2").status_code == 201
    grants = grants_by_description(api, plan["customer"])
    assert grants["expires late"]["remaining"] == grants["never expires"]["remaining"] == 0
    explanation = api.get(f"/accounts/{plan['customer'].id}/explain").json()
    assert explanation["unrestricted"] == 2
    assert explanation["balance"] == 2


def test_each_debit_records_the_grants_it_drew_from(api, plan):
    grant(api, plan, 10, "a", description="Promo", priority=10)
    grant(api, plan, 10, "b", description="Plan")

    spent = spend(api, plan, 15, "s").json()

    debit = Entry.objects.get(transfer_id=spent["transferId"], amount__lt=0)
    drawn = {a.grant.description: a.amount for a in debit_allocations(debit)}
    assert drawn == {"Promo": 10, "Plan": 5}


def debit_allocations(entry):
    from apps.ledger.models import GrantAllocation

    return GrantAllocation.objects.filter(entry=entry).select_related("grant")


def test_past_its_expiry_a_grant_counts_for_nothing_before_and_after_the_booking(
    api, plan, ledger_clock, sync_projections, problem
):
    now = ledger_now()
    grant(api, plan, 30, "g", description="Welcome bonus", expiresAt=iso(now + timedelta(days=10)))
    spend(api, plan, 3, "s")
    sync_projections()
    before = balance(api, plan["customer"])
    assert (before["balance"], before["available"]) == (27, 27)
    assert before["expiringSoon"]["amount"] == 27

    ledger_clock.advance(timedelta(days=11))
    lapsed = balance(api, plan["customer"])
    assert (lapsed["balance"], lapsed["available"], lapsed["expiringSoon"]) == (0, 0, None)
    problem(spend(api, plan, 1, "late"), 422, "insufficient_funds")  # and it books the expiry

    expiry = Transfer.objects.get(
        metadata__grantId=grants_by_description(api, plan["customer"])["Welcome bonus"]["grantId"]
    )
    assert (expiry.from_account_id, expiry.to_account_id, expiry.amount) == (
        plan["customer"].id,
        plan["promotions"].id,
        27,
    )
    assert expiry.description == 'Expiry of grant "Welcome bonus"'
    # Booked, and not yet in the read model: still not counted.
    booked = balance(api, plan["customer"])
    assert (booked["balance"], booked["available"], booked["consistency"]["upToDate"]) == (0, 0, False)
    assert type(booked["balance"]) is int
    welcome = grants_by_description(api, plan["customer"])["Welcome bonus"]
    assert (welcome["status"], welcome["expired"], welcome["remaining"]) == ("expired", 27, 0)
    sync_projections()
    assert balance(api, plan["customer"])["balance"] == 0
    assert balance(api, plan["promotions"])["balance"] == -3


def test_the_beat_task_books_expiries_of_idle_accounts_exactly_once(api, plan, ledger_clock):
    from apps.ledger.tasks import book_grants_due

    now = ledger_now()
    grant(api, plan, 30, "g", expireTo=str(plan["breakage"].id), expiresAt=iso(now + timedelta(days=1)))
    assert book_grants_due() == 0

    ledger_clock.advance(timedelta(days=2))
    assert book_grants_due() == 1
    assert book_grants_due() == 0

    plan["breakage"].refresh_from_db()
    assert plan["breakage"].balance == 30
    assert Entry.objects.filter(account=plan["breakage"]).count() == 1


def test_a_scheduled_grant_counts_from_its_effective_time(api, plan, ledger_clock, problem, sync_projections):
    now = ledger_now()
    created = grant(api, plan, 100, "g", description="December plan", effectiveAt=iso(now + timedelta(days=1)))
    assert created.json()["status"] == "scheduled"
    sync_projections()
    before = balance(api, plan["customer"])
    assert (before["balance"], before["pendingCredits"], before["available"]) == (0, 100, 0)
    problem(spend(api, plan, 1, "early"), 422, "insufficient_funds")

    ledger_clock.advance(timedelta(days=2))
    after = balance(api, plan["customer"])
    assert (after["balance"], after["pendingCredits"], after["available"]) == (100, 0, 100)
    assert spend(api, plan, 40, "now").status_code == 201  # books the activation, then draws from it
    assert grants_by_description(api, plan["customer"])["December plan"]["remaining"] == 60
    # The activation and the debit are in the ledger, not yet in the read model: the activation
    # counts already, the debit once the read model has it.
    lagging = balance(api, plan["customer"])
    assert (lagging["balance"], lagging["available"], lagging["consistency"]["upToDate"]) == (100, 60, False)
    sync_projections()
    assert balance(api, plan["customer"])["balance"] == 60


def test_a_hold_reserves_from_grants_and_a_void_returns_them(api, plan):
    grant(api, plan, 10, "g", description="Promo")
    held = hold(api, plan, 8, "h").json()
    promo = grants_by_description(api, plan["customer"])["Promo"]
    assert (promo["remaining"], promo["reserved"]) == (2, 8)

    api.post(f"/transfers/{held['transferId']}/void", {"idempotencyKey": "v"}, format="json")

    promo = grants_by_description(api, plan["customer"])["Promo"]
    assert (promo["remaining"], promo["reserved"], promo["consumed"]) == (10, 0, 0)


def test_what_a_hold_returns_to_an_expired_grant_expires_at_once(api, plan, ledger_clock):
    now = ledger_now()
    grant(api, plan, 10, "g", description="Promo", expiresAt=iso(now + timedelta(days=1)))
    held = hold(api, plan, 8, "h").json()
    ledger_clock.advance(timedelta(days=2))
    spend(api, plan, 1, "x")  # refused, but books the expiry of the 2 unreserved
    promo = grants_by_description(api, plan["customer"])["Promo"]
    assert (promo["status"], promo["expired"], promo["reserved"]) == ("expired", 2, 8)

    api.post(f"/transfers/{held['transferId']}/void", {"idempotencyKey": "v"}, format="json")

    promo = grants_by_description(api, plan["customer"])["Promo"]
    assert (promo["expired"], promo["reserved"], promo["remaining"]) == (10, 0, 0)
    plan["customer"].refresh_from_db()
    assert plan["customer"].balance == 0


def test_a_reversal_restores_the_grants_in_reverse_burn_order(api, plan):
    grant(api, plan, 10, "a", description="Promo", priority=10)
    grant(api, plan, 10, "b", description="Plan")
    spent = spend(api, plan, 15, "s").json()

    reversed_ = api.post(
        f"/transfers/{spent['transferId']}/reverse", {"idempotencyKey": "r", "amount": 7}, format="json"
    )

    assert reversed_.status_code == 201, reversed_.content
    grants = grants_by_description(api, plan["customer"])
    assert (grants["Plan"]["remaining"], grants["Promo"]["remaining"]) == (10, 2)


def test_a_grant_void_returns_its_remainder_and_keeps_what_was_consumed(api, plan, problem):
    created = grant(api, plan, 10, "g", description="Promo").json()
    spend(api, plan, 4, "s")

    voided = api.post(f"/grants/{created['grantId']}/void", {"idempotencyKey": "v"}, format="json")

    assert voided.status_code == 200, voided.content
    assert (voided.json()["status"], voided.json()["voided"], voided.json()["consumed"]) == ("voided", 6, 4)
    plan["customer"].refresh_from_db()
    plan["promotions"].refresh_from_db()
    assert (plan["customer"].balance, plan["promotions"].balance) == (0, -4)
    replay = api.post(f"/grants/{created['grantId']}/void", {"idempotencyKey": "v"}, format="json")
    assert replay["Idempotent-Replayed"] == "true"
    problem(
        api.post(f"/grants/{created['grantId']}/void", {"idempotencyKey": "v2"}, format="json"), 409, "grant_not_active"
    )


def test_the_transfer_that_funds_a_grant_is_moved_only_by_the_grant(api, plan, problem):
    now = ledger_now()
    scheduled = grant(api, plan, 10, "g", effectiveAt=iso(now + timedelta(days=1))).json()
    active = grant(api, plan, 10, "g2").json()

    problem(
        api.post(f"/transfers/{scheduled['transferId']}/post", {"idempotencyKey": "p"}, format="json"),
        409,
        "grant_transfer",
    )
    problem(
        api.post(f"/transfers/{active['transferId']}/reverse", {"idempotencyKey": "r"}, format="json"),
        409,
        "grant_transfer",
    )


def test_a_grant_shows_its_history(api, plan):
    created = grant(api, plan, 10, "g", description="Promo").json()
    spent = spend(api, plan, 4, "s").json()

    detail = api.get(f"/grants/{created['grantId']}")

    assert detail.status_code == 200
    assert [(h["kind"], h["amount"], h["transferId"]) for h in detail.json()["history"]] == [
        ("draw", 4, spent["transferId"])
    ]
    assert api.get("/grants/nope").status_code == 404
    assert api.get("/grants/01935c9e-8f00-7000-8000-000000000001").json()["code"] == "grant_not_found"


def test_the_list_filters_by_status(api, plan):
    grant(api, plan, 10, "a", description="used up")
    grant(api, plan, 10, "b", description="fresh")
    spend(api, plan, 10, "s")

    listed = api.get(f"/accounts/{plan['customer'].id}/grants", {"status": "active"}).json()["data"]

    assert [g["description"] for g in listed] == ["fresh"]
    assert api.get(f"/accounts/{plan['customer'].id}/grants", {"status": "bogus"}).status_code == 400


def test_the_explanation_answers_why_37_not_41(api, plan, ledger_clock):
    start = ledger_now()
    grant(api, plan, 40, "g", description="Welcome bonus", expiresAt=iso(start + timedelta(days=19)))
    api.post(
        "/transfers",
        {
            "from": str(plan["promotions"].id),
            "to": str(plan["customer"].id),
            "amount": 1,
            "currency": "USD",
            "idempotencyKey": "topup",
        },
        format="json",
    )
    ledger_clock.advance(timedelta(days=11))
    spend(api, plan, 3, "usage")
    ledger_clock.advance(timedelta(days=10))

    since = iso(start + timedelta(seconds=1))
    explanation = api.get(f"/accounts/{plan['customer'].id}/explain", {"since": since})

    assert explanation.status_code == 200, explanation.content
    body = explanation.json()
    assert (body["openingBalance"], body["balance"], body["unrestricted"]) == (41, 1, 1)
    assert [(c["kind"], c["amount"], c["balanceAfter"]) for c in body["changes"]] == [
        ("usage", -3, 38),
        ("expiry", -37, 1),
    ]
    assert body["changes"][0]["grants"][0]["description"] == "Welcome bonus"
    assert body["changes"][1]["at"].startswith(iso(start + timedelta(days=19))[:16])
    assert body["summary"][0].startswith("41 USD on ")
    assert '-3 "API usage"' in body["summary"][0]
    assert '(from "Welcome bonus")' in body["summary"][0]
    assert '-37 "Welcome bonus" expired' in body["summary"][0]
    welcome = body["grants"][0]
    assert (welcome["granted"], welcome["consumed"], welcome["expired"], welcome["remaining"], welcome["status"]) == (
        40,
        3,
        37,
        0,
        "expired",
    )


def test_the_explanation_refuses_since_after_as_of(api, plan, problem):
    problem(
        api.get(
            f"/accounts/{plan['customer'].id}/explain",
            {"since": "2026-12-02T00:00:00Z", "asOf": "2026-12-01T00:00:00Z"},
        ),
        400,
        "invalid_request",
        "since",
    )
    assert api.get("/accounts/01935c9e-8f00-7000-8000-000000000001/explain").status_code == 404


def test_an_account_tied_to_live_grants_cannot_close(api, plan, problem):
    grant(api, plan, 10, "g", expireTo=str(plan["breakage"].id))
    for account in ("promotions", "breakage"):
        api.patch(f"/accounts/{plan[account].id}", {"status": "frozen"}, format="json")

    body = problem(
        api.patch(f"/accounts/{plan['breakage'].id}", {"status": "closed"}, format="json"), 422, "account_not_empty"
    )

    assert body["grants"] == 1
    plan["breakage"].refresh_from_db()
    assert plan["breakage"].status == "frozen"


def test_entry_events_carry_the_grants_each_entry_drew_from(api, plan, make_transfer):
    from apps.outbox.models import OutboxEvent

    def entry_event(transfer):
        debit = Entry.objects.get(transfer_id=transfer["transferId"], amount__lt=0)
        return OutboxEvent.objects.get(event_type="EntryPosted", payload__data__entryId=str(debit.id)).payload["data"]

    promo = grant(api, plan, 10, "g", description="Promo").json()
    make_transfer(plan["promotions"], plan["customer"], 20)

    partly = spend(api, plan, 15, "s1").json()
    unrestricted = spend(api, plan, 10, "s2").json()

    assert entry_event(partly)["allocations"] == [{"grantId": promo["grantId"], "kind": "draw", "amount": 10}]
    assert "allocations" not in entry_event(unrestricted)


def test_a_grant_used_up_before_its_expiry_stays_exhausted_in_the_list_and_the_explanation(api, plan, ledger_clock):
    now = ledger_now()
    grant(api, plan, 10, "g", description="Promo", expiresAt=iso(now + timedelta(days=1)))
    spend(api, plan, 10, "s")
    ledger_clock.advance(timedelta(days=2))

    listed = grants_by_description(api, plan["customer"])["Promo"]
    explained = api.get(f"/accounts/{plan['customer'].id}/explain").json()["grants"][0]

    assert (listed["status"], listed["expired"]) == ("exhausted", 0)
    assert (explained["status"], explained["expired"], explained["consumed"]) == ("exhausted", 0, 10)


def test_a_long_window_explains_the_latest_changes_and_still_reconciles(api, plan, make_transfer):
    make_transfer(plan["promotions"], plan["customer"], 100)
    for index in range(5):
        spend(api, plan, index + 1, f"s{index}")

    body = api.get(f"/accounts/{plan['customer'].id}/explain", {"limit": 3}).json()

    assert body["limited"] is True
    assert [change["amount"] for change in body["changes"]] == [-3, -4, -5]
    assert body["openingBalance"] == 100 - 1 - 2
    assert body["openingBalance"] + sum(change["amount"] for change in body["changes"]) == body["balance"] == 85
    earlier = api.get(f"/accounts/{plan['customer'].id}/explain", {"limit": 3, "asOf": body["since"]}).json()
    assert [change["amount"] for change in earlier["changes"]] == [100, -1, -2]
    assert earlier["balance"] == body["openingBalance"]
    assert api.get(f"/accounts/{plan['customer'].id}/explain").json()["limited"] is False
