"""POST /transfers/{id}/reverse over HTTP: whole, partial and multi-leg reversals, the limits
on what can be reversed, the overdraft rules, idempotency, and the links both ways.

Transactional: each reversal really commits, so PostgreSQL's deferred checks run.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection

from apps.accounts.models import Account, AccountStatus
from apps.ledger.models import Transfer
from apps.ledger.verification import ledger_verify

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

MISSING_ID = "01900000-0000-7000-8000-000000000000"


def reverse(api, transfer_id, body=None, **headers):
    return api.post(f"/transfers/{transfer_id}/reverse", body or {}, format="json", **headers)


@pytest.fixture
def alice(make_account) -> Account:
    return make_account(name="alice")


@pytest.fixture
def bob(make_account) -> Account:
    return make_account(name="bob", overdraft_limit=0)


@pytest.fixture
def paid(api, alice, bob) -> dict:
    """alice paid bob 1234 USD."""
    response = api.post(
        "/transfers",
        {"from": str(alice.id), "to": str(bob.id), "amount": 1234, "currency": "USD", "idempotencyKey": "pay-1"},
        format="json",
    )
    assert response.status_code == 201
    return response.json()


def balances(*accounts: Account) -> list[int]:
    return [Account.objects.get(id=account.id).balance for account in accounts]


def test_a_whole_reversal_moves_everything_back_and_links_both_ways(api, paid, alice, bob):
    response = reverse(api, paid["transferId"], {"idempotencyKey": "refund-1"})

    assert response.status_code == 201, response.content
    reversal = response.json()
    assert reversal["transferId"] != paid["transferId"]
    assert (reversal["from"], reversal["to"], reversal["amount"], reversal["currency"]) == (
        str(bob.id),
        str(alice.id),
        1234,
        "USD",
    )
    assert reversal["reversalOf"] == paid["transferId"]
    assert reversal["reversedAmount"] == 0
    assert reversal["consistencyToken"]
    assert "Idempotent-Replayed" not in response
    assert balances(alice, bob) == [0, 0]

    original = api.get(f"/transfers/{paid['transferId']}").json()
    assert (original["reversalOf"], original["reversedAmount"]) == (None, 1234)
    assert api.get(f"/transfers/{reversal['transferId']}").json()["reversalOf"] == paid["transferId"]
    assert ledger_verify().ok


def test_the_list_shows_the_reversal_links(api, paid, sync_projections):
    reversal = reverse(api, paid["transferId"], {"idempotencyKey": "refund-1", "amount": 34}).json()
    sync_projections()

    listed = {item["transferId"]: item for item in api.get("/transfers").json()["data"]}

    assert (listed[paid["transferId"]]["reversalOf"], listed[paid["transferId"]]["reversedAmount"]) == (None, 34)
    assert (listed[reversal["transferId"]]["reversalOf"], listed[reversal["transferId"]]["reversedAmount"]) == (
        paid["transferId"],
        0,
    )


def test_an_ordinary_transfer_shows_no_reversal(paid):
    assert (paid["reversalOf"], paid["reversedAmount"]) == (None, 0)


def test_partial_reversals_add_up_to_the_original_and_no_further(api, paid, alice, bob, problem, ledger_state):
    for key, amount, reversed_amount in (("r-1", 500, 500), ("r-2", 500, 1000), ("r-3", 234, 1234)):
        response = reverse(api, paid["transferId"], {"idempotencyKey": key, "amount": amount})
        assert response.status_code == 201, response.content
        assert response.json()["amount"] == amount
        assert api.get(f"/transfers/{paid['transferId']}").json()["reversedAmount"] == reversed_amount
    assert balances(alice, bob) == [0, 0]

    before = ledger_state()
    body = problem(
        reverse(api, paid["transferId"], {"idempotencyKey": "r-4", "amount": 1}),
        422,
        "reversal_exceeds_original",
        field="amount",
    )
    assert (body["remaining"], body["requested"]) == (0, 1)
    assert ledger_state() == before
    assert ledger_verify().ok


def test_a_reversal_beyond_what_remains_is_a_422_naming_the_remainder(api, paid, problem, ledger_state):
    assert reverse(api, paid["transferId"], {"idempotencyKey": "r-1", "amount": 500}).status_code == 201
    before = ledger_state()

    too_much = problem(
        reverse(api, paid["transferId"], {"idempotencyKey": "r-2", "amount": 735}), 422, "reversal_exceeds_original"
    )
    # Without an amount, the whole transfer: more than is left too.
    whole = problem(reverse(api, paid["transferId"], {"idempotencyKey": "r-3"}), 422, "reversal_exceeds_original")

    assert (too_much["remaining"], too_much["requested"]) == (734, 735)
    assert (whole["remaining"], whole["requested"]) == (734, 1234)
    assert ledger_state() == before
    # The refusal is the key's outcome: a retry replays it.
    replay = reverse(api, paid["transferId"], {"idempotencyKey": "r-2", "amount": 735})
    assert problem(replay, 422, "reversal_exceeds_original")["remaining"] == 734
    assert replay["Idempotent-Replayed"] == "true"


def test_a_reversal_of_more_than_the_original_is_refused(api, paid, problem, ledger_state):
    before = ledger_state()
    body = problem(
        reverse(api, paid["transferId"], {"idempotencyKey": "r-1", "amount": 1235}), 422, "reversal_exceeds_original"
    )
    assert body["remaining"] == 1234
    assert ledger_state() == before


@pytest.fixture
def trade(api, make_account) -> tuple[dict, dict[str, Account]]:
    """A buyer pays 1000 USD for 1000 CREDITS, in one transfer of two postings."""
    accounts = {
        "buyer_usd": make_account("USD"),
        "shop_usd": make_account("USD", overdraft_limit=0),
        "shop_credits": make_account("CREDITS"),
        "buyer_credits": make_account("CREDITS", overdraft_limit=0),
    }
    response = api.post(
        "/transfers",
        {
            "postings": [
                {
                    "from": str(accounts["buyer_usd"].id),
                    "to": str(accounts["shop_usd"].id),
                    "amount": 1000,
                    "currency": "USD",
                },
                {
                    "from": str(accounts["shop_credits"].id),
                    "to": str(accounts["buyer_credits"].id),
                    "amount": 700,
                    "currency": "CREDITS",
                },
            ],
            "idempotencyKey": "buy-1",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json(), accounts


def test_a_multi_leg_transfer_is_reversed_whole_once(api, trade, problem, ledger_state):
    original, accounts = trade

    response = reverse(api, original["transferId"], {"idempotencyKey": "unbuy-1", "description": "Order cancelled"})

    assert response.status_code == 201, response.content
    reversal = response.json()
    assert reversal["postings"] == [
        {"from": posting["to"], "to": posting["from"], "amount": posting["amount"], "currency": posting["currency"]}
        for posting in original["postings"]
    ]
    assert (reversal["from"], reversal["amount"], reversal["reversalOf"]) == (None, None, original["transferId"])
    assert reversal["description"] == "Order cancelled"
    assert api.get(f"/transfers/{original['transferId']}").json()["reversedAmount"] == 1700
    assert balances(*accounts.values()) == [0, 0, 0, 0]

    before = ledger_state()
    again = problem(
        reverse(api, original["transferId"], {"idempotencyKey": "unbuy-2"}), 422, "reversal_exceeds_original"
    )
    assert (again["remaining"], again["requested"]) == (0, 1700)
    assert ledger_state() == before
    assert ledger_verify().ok


def test_an_amount_on_a_multi_leg_transfer_is_a_400_and_not_stored(
    api, trade, problem, ledger_state, idempotency_records
):
    original, _ = trade
    before, records = ledger_state(), idempotency_records()

    problem(
        reverse(api, original["transferId"], {"idempotencyKey": "unbuy-1", "amount": 100}),
        400,
        "invalid_request",
        field="amount",
    )

    assert (ledger_state(), idempotency_records()) == (before, records)


def test_a_reversal_the_account_can_no_longer_pay_is_refused(
    api, paid, alice, bob, make_account, problem, ledger_state
):
    carol = make_account(name="carol")
    spend = {"from": str(bob.id), "to": str(carol.id), "amount": 1000, "currency": "USD", "idempotencyKey": "spend"}
    assert api.post("/transfers", spend, format="json").status_code == 201
    before = ledger_state()

    body = problem(reverse(api, paid["transferId"], {"idempotencyKey": "refund-1"}), 422, "insufficient_funds")

    assert (body["available"], body["requested"]) == (234, 1234)
    assert ledger_state() == before
    assert api.get(f"/transfers/{paid['transferId']}").json()["reversedAmount"] == 0
    # What is still there can be reversed.
    assert reverse(api, paid["transferId"], {"idempotencyKey": "refund-2", "amount": 234}).status_code == 201
    assert balances(bob) == [0]


@pytest.mark.parametrize(("frozen", "field"), [("alice", "to"), ("bob", "from")])
def test_a_reversal_involving_a_frozen_account_is_refused(api, paid, alice, bob, problem, ledger_state, frozen, field):
    Account.objects.filter(id={"alice": alice, "bob": bob}[frozen].id).update(status=AccountStatus.FROZEN)
    before = ledger_state()

    problem(reverse(api, paid["transferId"], {"idempotencyKey": "refund-1"}), 422, "account_not_active", field=field)

    assert ledger_state() == before


def test_a_replay_returns_the_same_reversal_once(api, paid, bob):
    body = {"idempotencyKey": "refund-1", "amount": 100, "description": "Goodwill"}
    first = reverse(api, paid["transferId"], body)
    second = reverse(api, paid["transferId"], body)
    by_header = reverse(
        api, paid["transferId"], {"amount": 100, "description": "Goodwill"}, HTTP_IDEMPOTENCY_KEY="refund-1"
    )

    assert first.status_code == second.status_code == by_header.status_code == 201
    assert second["Idempotent-Replayed"] == by_header["Idempotent-Replayed"] == "true"
    assert second.json()["transferId"] == by_header.json()["transferId"] == first.json()["transferId"]
    assert first.json()["description"] == "Goodwill"
    assert Transfer.objects.filter(reversal_of=paid["transferId"]).count() == 1
    assert api.get(f"/transfers/{paid['transferId']}").json()["reversedAmount"] == 100
    assert balances(bob) == [1134]


@pytest.mark.parametrize(
    "other",
    [
        {"amount": 101},
        {"amount": 100, "description": "Another reason"},
        {},
    ],
)
def test_the_same_key_with_another_request_is_a_409(api, paid, problem, ledger_state, other):
    assert reverse(api, paid["transferId"], {"idempotencyKey": "refund-1", "amount": 100}).status_code == 201
    before = ledger_state()

    problem(reverse(api, paid["transferId"], {"idempotencyKey": "refund-1", **other}), 409, "idempotency_key_reused")

    assert ledger_state() == before


def test_a_key_already_used_by_a_transfer_is_a_409(api, paid, problem, ledger_state):
    before = ledger_state()
    problem(reverse(api, paid["transferId"], {"idempotencyKey": "pay-1"}), 409, "idempotency_key_reused")
    assert ledger_state() == before


def test_a_reversal_of_a_reversal_is_an_ordinary_reversal(api, paid, alice, bob):
    reversal = reverse(api, paid["transferId"], {"idempotencyKey": "refund-1"}).json()

    response = reverse(api, reversal["transferId"], {"idempotencyKey": "refund-refund-1"})

    assert response.status_code == 201, response.content
    assert response.json()["reversalOf"] == reversal["transferId"]
    assert (response.json()["from"], response.json()["to"]) == (str(alice.id), str(bob.id))
    assert api.get(f"/transfers/{reversal['transferId']}").json()["reversedAmount"] == 1234
    assert api.get(f"/transfers/{paid['transferId']}").json()["reversedAmount"] == 1234
    assert balances(alice, bob) == [-1234, 1234]


@pytest.mark.parametrize("transfer_id", [MISSING_ID, "not-a-uuid"])
def test_reversing_an_unknown_transfer_is_a_404(api, problem, ledger_state, idempotency_records, transfer_id):
    before, records = ledger_state(), idempotency_records()
    problem(reverse(api, transfer_id, {"idempotencyKey": "refund-1"}), 404, "transfer_not_found")
    assert (ledger_state(), idempotency_records()) == (before, records)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"amount": 0}, "validation_error", "amount"),
        ({"amount": "12"}, "validation_error", "amount"),
        ({"amount": 2**63}, "validation_error", "amount"),
        ({"description": "x" * 501}, "validation_error", "description"),
        ({"from": MISSING_ID}, "validation_error", "from"),
        ({}, "invalid_request", "idempotencyKey"),
    ],
)
def test_invalid_input_is_a_400(api, paid, problem, ledger_state, body, code, field):
    body = {"idempotencyKey": "refund-1", **body} if field != "idempotencyKey" else body
    before = ledger_state()
    problem(reverse(api, paid["transferId"], body), 400, code, field=field)
    assert ledger_state() == before


def hold(api, source, destination, amount, key, **extra):
    response = api.post(
        "/transfers",
        {
            "from": str(source.id),
            "to": str(destination.id),
            "amount": amount,
            "currency": "USD",
            "idempotencyKey": key,
            "pending": True,
            **extra,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"
    return response.json()


def test_a_pending_hold_cannot_be_reversed(api, alice, bob, problem, ledger_state):
    held = hold(api, alice, bob, 100, "held-1")
    before = ledger_state()

    body = problem(reverse(api, held["transferId"], {"idempotencyKey": "refund-1"}), 409, "transfer_not_posted")

    assert body["transferStatus"] == "pending"
    assert ledger_state() == before
    assert Transfer.objects.get(id=held["transferId"]).status == "pending"
    # The refusal is stored against the key: a retry replays it, even once the hold is posted.
    assert (
        api.post(f"/transfers/{held['transferId']}/post", {"idempotencyKey": "post-1"}, format="json").status_code
        == 200
    )
    replay = problem(reverse(api, held["transferId"], {"idempotencyKey": "refund-1"}), 409, "transfer_not_posted")
    assert replay["transferStatus"] == "pending"


def test_a_voided_hold_cannot_be_reversed(api, alice, bob, problem, ledger_state):
    held = hold(api, alice, bob, 100, "held-1")
    voided = api.post(f"/transfers/{held['transferId']}/void", {"idempotencyKey": "void-1"}, format="json")
    assert voided.status_code == 200, voided.content
    before = ledger_state()

    body = problem(reverse(api, held["transferId"], {"idempotencyKey": "refund-1"}), 409, "transfer_not_posted")

    assert body["transferStatus"] == "voided"
    assert ledger_state() == before


def test_a_hold_posted_in_part_is_reversed_up_to_what_was_posted(api, alice, bob, problem, ledger_state):
    """transfer.amount stays what was held (500); the entries say what was posted (300): the
    reversal's limit is the latter, in the API, in SQL and in verify_ledger."""
    held = hold(api, alice, bob, 500, "held-1")
    posted = api.post(
        f"/transfers/{held['transferId']}/post", {"idempotencyKey": "post-1", "amount": 300}, format="json"
    )
    assert posted.status_code == 200, posted.content
    assert posted.json()["amount"] == 300
    assert Transfer.objects.get(id=held["transferId"]).amount == 500
    before_balances = balances(alice, bob)

    too_much = problem(
        reverse(api, held["transferId"], {"idempotencyKey": "refund-0", "amount": 301}),
        422,
        "reversal_exceeds_original",
    )
    assert (too_much["remaining"], too_much["requested"]) == (300, 301)

    partial = reverse(api, held["transferId"], {"idempotencyKey": "refund-1", "amount": 100})
    assert partial.status_code == 201, partial.content
    assert (partial.json()["amount"], partial.json()["reversalOf"]) == (100, held["transferId"])

    # No amount means the whole transfer, what was posted: 300, of which 200 remain.
    whole = problem(reverse(api, held["transferId"], {"idempotencyKey": "refund-2"}), 422, "reversal_exceeds_original")
    assert (whole["remaining"], whole["requested"]) == (200, 300)

    rest = reverse(api, held["transferId"], {"idempotencyKey": "refund-3", "amount": 200})
    assert rest.status_code == 201, rest.content
    state = ledger_state()
    over = problem(
        reverse(api, held["transferId"], {"idempotencyKey": "refund-4", "amount": 1}), 422, "reversal_exceeds_original"
    )
    assert over["remaining"] == 0
    assert ledger_state() == state

    original = api.get(f"/transfers/{held['transferId']}").json()
    assert (original["status"], original["amount"], original["reversedAmount"]) == ("posted", 300, 300)
    assert balances(alice, bob) == [before_balances[0] + 300, before_balances[1] - 300]
    assert ledger_verify().ok

    # SQL agrees: the counter cannot be pushed past what was posted, even by hand.
    with pytest.raises(IntegrityError, match="cannot move back"), connection.cursor() as cursor:
        cursor.execute("UPDATE transfer SET reversed_amount = 301 WHERE id = %s", [held["transferId"]])


def test_a_hold_posted_whole_is_reversed_whole(api, alice, bob):
    held = hold(api, alice, bob, 250, "held-1")
    assert (
        api.post(f"/transfers/{held['transferId']}/post", {"idempotencyKey": "post-1"}, format="json").status_code
        == 200
    )

    response = reverse(api, held["transferId"], {"idempotencyKey": "refund-1"})

    assert response.status_code == 201, response.content
    assert response.json()["amount"] == 250
    assert api.get(f"/transfers/{held['transferId']}").json()["reversedAmount"] == 250
    assert ledger_verify().ok
