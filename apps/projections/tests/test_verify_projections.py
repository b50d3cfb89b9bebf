"""verify_projections compares the projections with the ledger and names every drifted row."""

from __future__ import annotations

import io
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from apps.ledger.selectors import ledger_now
from apps.ledger.services import grant_create, grant_void, grants_book_due
from apps.projections.models import ProjectedBalance, ProjectedGrant, ProjectedStatementLine, ProjectedTransfer
from apps.projections.verification import projections_verify

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "read"])

COPY_MODES = pytest.mark.parametrize("ledger_copy", [False, True], ids=["same-database", "ledger-copied"])


@pytest.fixture
def projected(make_account, make_transfer, sync_projections):
    """alice pays bob 1000 and bob pays back 250, all applied; carol has no entries and no
    projection row yet (as if her AccountCreated were still on its way)."""
    alice, bob = make_account(name="alice"), make_account(name="bob")
    first = make_transfer(alice, bob, 1000, metadata={"order": 7}).transfer
    back = make_transfer(bob, alice, 250).transfer
    sync_projections()
    carol = make_account(name="carol")
    return {"alice": alice, "bob": bob, "carol": carol, "first": first, "back": back}


def verify(*args):
    """Run the command; (stdout, the CommandError or None)."""
    out = io.StringIO()
    try:
        call_command("verify_projections", *args, stdout=out, stderr=io.StringIO())
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def test_projections_that_match_the_ledger_pass(projected):
    out, error = verify()

    assert error is None
    assert "accounts checked: 3" in out
    assert "entries checked: 4" in out
    assert "transfers checked: 2" in out
    assert "grants checked: 0" in out
    assert "balances: 0 missing, 0 extra, 0 different" in out
    assert "drift found: 0" in out
    assert "The projections match the ledger." in out


def test_an_empty_ledger_and_projection_pass():
    report = projections_verify()

    assert report.ok
    assert (report.accounts, report.entries, report.transfers, report.grants) == (0, 0, 0, 0)


@COPY_MODES
def test_a_deleted_statement_line_is_missing(projected, ledger_copy):
    bob = projected["bob"]
    ProjectedStatementLine.objects.filter(account_id=bob.id, sequence=2).delete()

    report = projections_verify(ledger_copy=ledger_copy)

    assert report.drift == {
        "balance": {"missing": 0, "extra": 0, "different": 0},
        "statement line": {"missing": 1, "extra": 0, "different": 0},
        "transfer": {"missing": 0, "extra": 0, "different": 0},
        "grant": {"missing": 0, "extra": 0, "different": 0},
    }
    assert [str(example) for example in report.examples] == [
        f"statement line {bob.id}#2: in the ledger, not in the projection"
    ]


@COPY_MODES
def test_a_changed_balance_is_named_with_both_values_and_the_command_fails(projected, ledger_copy, settings):
    settings.READ_DATABASE_IS_DEFAULT = not ledger_copy  # what the command decides from
    alice = projected["alice"]
    ProjectedBalance.objects.filter(account_id=alice.id).update(balance=-700)

    out, error = verify()

    assert error is not None
    assert error.returncode == 1
    assert "drift found: 1" in out
    assert f"balance {alice.id}: balance -750 in the ledger, -700 in the projection" in out
    assert "consumer lag" in out
    assert str(projected["bob"].id) not in out


@COPY_MODES
def test_extra_and_different_transfers_are_found(projected, ledger_copy):
    first, back = projected["first"], projected["back"]
    stray = uuid.uuid4()
    row = ProjectedTransfer.objects.get(transfer_id=first.id)
    row.entries[0]["amount"] = -999
    row.metadata = {"order": 8}
    row.save()
    ProjectedTransfer.objects.filter(transfer_id=back.id).update(transfer_id=stray)

    report = projections_verify(ledger_copy=ledger_copy)

    assert report.drift["transfer"] == {"missing": 1, "extra": 1, "different": 1}
    details = {example.key: (example.kind, example.detail) for example in report.examples}
    assert details[str(stray)] == ("extra", "in the projection, not in the ledger")
    assert details[str(back.id)] == ("missing", "in the ledger, not in the projection")
    kind, detail = details[str(first.id)]
    assert kind == "different"
    assert detail.startswith('metadata {"order":7} in the ledger, {"order":8} in the projection; entries [')
    assert '"amount":-1000' in detail
    assert '"amount":-999' in detail


def test_a_projection_row_of_an_account_the_ledger_does_not_have_is_extra(projected):
    now = datetime.now(UTC)
    ghost = uuid.uuid4()
    ProjectedBalance.objects.create(
        account_id=ghost, currency="USD", balance=0, last_sequence=0, updated_at=now, applied_at=now
    )

    report = projections_verify()

    assert report.drift["balance"] == {"missing": 0, "extra": 1, "different": 0}
    assert [example.key for example in report.examples] == [str(ghost)]


def test_an_account_without_entries_needs_no_projection_row_but_may_have_one(projected, sync_projections):
    assert not ProjectedBalance.objects.filter(account_id=projected["carol"].id).exists()
    assert projections_verify().ok

    sync_projections()  # applies carol's AccountCreated

    assert ProjectedBalance.objects.filter(account_id=projected["carol"].id, last_sequence=0).exists()
    assert projections_verify().ok


def test_a_projection_behind_the_ledger_is_drift_until_the_consumer_catches_up(
    projected, make_transfer, sync_projections
):
    make_transfer(projected["alice"], projected["bob"], 5)

    behind = projections_verify()
    assert behind.drift["statement line"]["missing"] == 2
    assert behind.drift["balance"]["different"] == 2
    assert behind.drift["transfer"]["missing"] == 1

    def sync_and_close() -> None:
        sync_projections()
        connections.close_all()

    catch_up = threading.Timer(0.5, sync_and_close)
    catch_up.start()
    try:
        out, error = verify("--wait", "10")
    finally:
        catch_up.join()

    assert error is None, out
    assert "drift found: 0" in out


def test_waiting_gives_up_and_reports_what_is_still_behind(projected, make_transfer):
    make_transfer(projected["alice"], projected["bob"], 5)

    report = projections_verify(wait=1.2)

    assert not report.ok
    assert report.attempts >= 2
    assert report.drift_count == 5


def test_json_output_and_a_limit_on_the_examples(projected):
    ProjectedStatementLine.objects.all().delete()

    out, error = verify("--json", "--limit", "1")

    assert error is not None
    report = json.loads(out)
    assert report["ok"] is False
    assert report["drift_count"] == 4
    assert report["drift"]["statement line"]["missing"] == 4
    assert len(report["examples"]) == 1
    assert report["examples"][0]["projection"] == "statement line"
    assert report["examples"][0]["kind"] == "missing"


@pytest.fixture
def granted(make_account, make_transfer, ledger_clock, sync_projections):
    """A customer's grants, every event applied: "Welcome" created, drawn 10 and expired (20 to
    breakage); "December" scheduled, then activated; "Promo" voided; "Top-up" drawn 5 after
    its GrantCreated, a change no event carries."""
    promotions, breakage = make_account(name="promotions"), make_account(name="breakage")
    customer, usage = make_account(name="customer", overdraft_limit=0), make_account(name="usage")
    now = ledger_now()

    def grant(description: str, amount: int, **terms) -> str:
        outcome = grant_create(
            account_id=customer.id,
            funding_account_id=promotions.id,
            amount=amount,
            idempotency_key=f"grant-{description}",
            description=description,
            **terms,
        )
        return outcome.document["grantId"]

    grants = {
        "Welcome": grant("Welcome", 30, expires_at=now + timedelta(days=1), expire_to_account_id=breakage.id),
        "Top-up": grant("Top-up", 50, metadata={"order": "T-1"}),
        "December": grant("December", 100, effective_at=now + timedelta(days=1)),
        "Promo": grant("Promo", 40),
    }
    grant_void(grant_id=uuid.UUID(grants["Promo"]), idempotency_key="void-promo")
    make_transfer(customer, usage, 10)  # from Welcome, the soonest to expire
    ledger_clock.advance(timedelta(days=2))
    assert grants_book_due(limit=10) == 2  # December's activation, Welcome's expiry
    make_transfer(customer, usage, 5)  # from Top-up, the first created of those left
    sync_projections()
    return grants


def grant_document(grant_id: str) -> dict:
    return ProjectedGrant.objects.get(grant_id=grant_id).document


def test_grants_as_their_events_left_them_match_the_ledger(granted):
    welcome = grant_document(granted["Welcome"])
    assert (welcome["status"], welcome["consumed"], welcome["expired"], welcome["expiredAmount"]) == (
        "expired",
        10,
        20,
        20,
    )
    assert grant_document(granted["December"])["status"] == "active"
    assert grant_document(granted["Promo"])["status"] == "voided"
    # The draw from Top-up came with no grant event: its projection is still as created.
    assert (grant_document(granted["Top-up"])["consumed"], grant_document(granted["Top-up"])["status"]) == (
        0,
        "active",
    )

    out, error = verify()

    assert error is None, out
    assert "grants checked: 4" in out
    assert "grants: 0 missing, 0 extra, 0 different" in out


@COPY_MODES
def test_a_changed_grant_at_the_ledgers_latest_change_is_named_by_the_fields_that_differ(granted, ledger_copy):
    welcome = ProjectedGrant.objects.get(grant_id=granted["Welcome"])
    welcome.document = {**welcome.document, "remaining": 7, "expired": 13}
    welcome.save()

    report = projections_verify(ledger_copy=ledger_copy)

    assert report.drift["grant"] == {"missing": 0, "extra": 0, "different": 1}
    assert [str(example) for example in report.examples] == [
        (
            f"grant {granted['Welcome']}: document.expired 20 in the ledger, 13 in the projection; "
            "document.remaining 0 in the ledger, 7 in the projection"
        )
    ]


@COPY_MODES
def test_a_grant_behind_the_ledger_is_compared_on_what_its_events_keep_current(granted, ledger_copy):
    top_up = ProjectedGrant.objects.get(grant_id=granted["Top-up"])
    top_up.document = {**top_up.document, "remaining": 3, "reserved": 47}  # counters: the events lag here anyway
    top_up.save()
    assert projections_verify(ledger_copy=ledger_copy).ok

    top_up.document = {**top_up.document, "metadata": {"order": "T-2"}}
    top_up.status = "exhausted"  # counts as active
    top_up.save()
    report = projections_verify(ledger_copy=ledger_copy)
    assert report.drift["grant"] == {"missing": 0, "extra": 0, "different": 1}
    assert [example.detail for example in report.examples] == [
        'document.metadata {"order":"T-1"} in the ledger, {"order":"T-2"} in the projection'
    ]

    top_up.status = "expired"
    top_up.save()
    report = projections_verify(ledger_copy=ledger_copy)
    assert report.examples[0].detail.startswith("status active in the ledger, expired in the projection; ")


def test_missing_extra_and_later_grants_are_found(granted):
    ProjectedGrant.objects.filter(grant_id=granted["Promo"]).delete()
    stray = ProjectedGrant.objects.get(grant_id=granted["December"])
    stray.grant_id = uuid.uuid4()
    stray.save()
    ProjectedGrant.objects.filter(grant_id=granted["Top-up"]).update(updated_at=datetime(2999, 1, 1, tzinfo=UTC))

    report = projections_verify()

    assert report.drift["grant"] == {"missing": 1, "extra": 1, "different": 1}
    details = {example.key: (example.kind, example.detail) for example in report.examples}
    assert details[granted["Promo"]] == ("missing", "in the ledger, not in the projection")
    assert details[str(stray.grant_id)] == ("extra", "in the projection, not in the ledger")
    kind, detail = details[granted["Top-up"]]
    assert kind == "different"
    assert detail.startswith("updated_at ")
    assert detail.endswith(" in the ledger, 2999-01-01T00:00:00+00:00 in the projection")


def test_a_grant_event_not_applied_yet_is_drift_until_the_consumer_applies_it(granted, sync_projections):
    grant_void(grant_id=uuid.UUID(granted["Top-up"]), idempotency_key="void-top-up")

    behind = projections_verify()
    assert behind.drift["grant"] == {"missing": 0, "extra": 0, "different": 1}
    assert "status voided in the ledger, active in the projection" in behind.examples[-1].detail

    sync_projections()
    assert projections_verify().ok
