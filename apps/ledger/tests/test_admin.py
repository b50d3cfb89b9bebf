"""The admin is a read-only window on the ledger for support staff.

These tests run inside a transaction (not `transaction=True`): the `support` group comes from a
data migration, and the flush after a transactional test would remove it. pytest-django runs
these tests before any transactional one.
"""

import re
import time
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from apps.accounts.models import Account, Currency
from apps.ledger import admin as ledger_admin
from apps.ledger.explanation import account_explanation
from apps.ledger.models import CreditGrant, Entry, Hold, IdempotencyRecord, Transfer
from apps.ledger.selectors import ledger_now
from apps.ledger.services import (
    HoldRequest,
    Posting,
    grant_create,
    grants_book_due,
    hold_post,
    hold_void,
    holds_expire,
    transfer_create_postings,
    transfer_reverse,
)
from apps.outbox.models import OutboxEvent
from creditledger import errors

pytestmark = pytest.mark.django_db

LEDGER_MODELS = [Currency, Account, Transfer, Entry, IdempotencyRecord, OutboxEvent]


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def ledger(make_account, make_transfer):
    alice = make_account("USD", name="Alice", external_ref="crm-42")
    bob = make_account("USD", name="Bob")
    transfer = make_transfer(alice, bob, 1234, idempotency_key="order-7").transfer
    other = make_transfer(bob, alice, 5, idempotency_key="order-8").transfer
    return {"alice": alice, "bob": bob, "transfer": transfer, "other": other}


@pytest.fixture
def support_client():
    user = User.objects.create_user("agent", password="unused", is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    client = Client()
    client.force_login(user)
    return client


def row_ids(response):
    return {obj.pk for obj in response.context["cl"].result_list}


COMMAND_ROW = re.compile(
    r"<tr><td>(post|void|expiry|reverse)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>"
)


def commands_shown(client, transfer_id):
    """The rows of a transfer page's commands table: (command, key, at, amount, outcome, by)."""
    content = client.get(admin_url(Transfer, "change", transfer_id)).content.decode()
    return COMMAND_ROW.findall(content)


def test_support_group_has_exactly_the_view_permissions():
    group = Group.objects.get(name="support")

    granted = set(group.permissions.values_list("content_type__app_label", "codename"))

    assert granted == {
        ("accounts", "view_currency"),
        ("accounts", "view_account"),
        ("ledger", "view_transfer"),
        ("ledger", "view_entry"),
        ("ledger", "view_idempotencyrecord"),
        ("ledger", "view_creditgrant"),
        ("outbox", "view_outboxevent"),
    }


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=lambda model: model.__name__)
def test_support_sees_every_changelist_without_actions(support_client, ledger, model):
    response = support_client.get(admin_url(model, "changelist"))

    assert response.status_code == 200
    assert len(row_ids(response)) == model.objects.count() > 0
    assert response.context["action_form"] is None  # no "delete selected"


def test_support_sees_an_account(support_client, ledger):
    alice = ledger["alice"]

    response = support_client.get(admin_url(Account, "change", alice.id))

    assert response.status_code == 200
    content = response.content.decode()
    assert "crm-42" in content
    assert f"?account={alice.id}" in content  # the link to her statement
    assert 'name="_save"' not in content


def test_support_sees_a_transfer_with_its_entries(support_client, ledger):
    transfer, alice, bob = ledger["transfer"], ledger["alice"], ledger["bob"]

    response = support_client.get(admin_url(Transfer, "change", transfer.id))

    assert response.status_code == 200
    content = response.content.decode()
    assert "order-7" in content
    assert "-1234 USD" in content
    assert ">1234 USD" in content
    assert admin_url(Account, "change", alice.id) in content
    assert admin_url(Account, "change", bob.id) in content
    inline = response.context["inline_admin_formsets"][0]
    entries = set(Entry.objects.filter(transfer=transfer).values_list("pk", flat=True))
    assert {form.original.pk for form in inline} == entries
    assert 'name="_save"' not in content


def test_a_transfer_page_links_its_reversals_and_a_reversal_page_its_original(support_client, ledger):
    transfer = ledger["transfer"]
    first = transfer_reverse(idempotency_key="refund-1", transfer_id=transfer.id, amount=200).transfer_id
    second = transfer_reverse(idempotency_key="refund-2", transfer_id=transfer.id, amount=300).transfer_id

    original_page = support_client.get(admin_url(Transfer, "change", transfer.id)).content.decode()
    reversal_page = support_client.get(admin_url(Transfer, "change", first)).content.decode()
    found = support_client.get(admin_url(Transfer, "changelist"), {"q": str(transfer.id)})

    assert admin_url(Transfer, "change", first) in original_page
    assert admin_url(Transfer, "change", second) in original_page
    assert admin_url(Transfer, "change", transfer.id) in reversal_page
    assert {row.pk for row in found.context["cl"].result_list} == {transfer.id, first, second}


@pytest.mark.parametrize("model", [Entry, IdempotencyRecord, OutboxEvent], ids=lambda model: model.__name__)
def test_support_sees_the_other_change_pages(support_client, ledger, model):
    obj = model.objects.first()

    response = support_client.get(admin_url(model, "change", obj.pk))

    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()


def test_staff_outside_the_support_group_sees_nothing(ledger):
    client = Client()
    client.force_login(User.objects.create_user("intern", is_staff=True))

    assert client.get(admin_url(Transfer, "changelist")).status_code == 403


def test_search_transfers_by_idempotency_key_id_and_account(support_client, ledger):
    transfer, other, alice = ledger["transfer"], ledger["other"], ledger["alice"]
    url = admin_url(Transfer, "changelist")

    assert row_ids(support_client.get(url, {"q": "order-7"})) == {transfer.id}
    assert row_ids(support_client.get(url, {"q": f" {other.id} "})) == {other.id}
    assert row_ids(support_client.get(url, {"q": str(alice.id)})) == {transfer.id, other.id}
    assert row_ids(support_client.get(url, {"q": "order"})) == set()  # exact, not a substring


def test_search_accounts_by_external_ref_id_and_name(support_client, ledger):
    alice, bob = ledger["alice"], ledger["bob"]
    url = admin_url(Account, "changelist")

    assert row_ids(support_client.get(url, {"q": "crm-42"})) == {alice.id}
    assert row_ids(support_client.get(url, {"q": "crm-"})) == {alice.id}  # a prefix
    assert row_ids(support_client.get(url, {"q": "rm-42"})) == set()  # not a substring
    assert row_ids(support_client.get(url, {"q": "CRM-42"})) == set()  # external references keep their case
    assert row_ids(support_client.get(url, {"q": str(bob.id)})) == {bob.id}
    assert row_ids(support_client.get(url, {"q": "ali"})) == {alice.id}  # names in any case
    assert row_ids(support_client.get(url, {"q": "BO"})) == {bob.id}


def test_account_search_is_served_by_indexes(support_client, ledger):
    response = support_client.get(admin_url(Account, "changelist"), {"q": "crm-4"})

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a plan that still scans has no index to use
        plan = response.context["cl"].queryset.explain()
    assert "Seq Scan" not in plan
    assert "account_external_ref_b86fbba5_like" in plan
    assert "account_name_upper_prefix" in plan


def test_search_entries_by_account_and_transfer(support_client, ledger):
    transfer, alice = ledger["transfer"], ledger["alice"]
    url = admin_url(Entry, "changelist")

    assert row_ids(support_client.get(url, {"q": str(transfer.id)})) == set(
        Entry.objects.filter(transfer=transfer).values_list("pk", flat=True)
    )
    assert row_ids(support_client.get(url, {"q": str(alice.id)})) == set(
        Entry.objects.filter(account=alice).values_list("pk", flat=True)
    )
    # A term that is no UUID matches nothing, rather than failing or scanning the table as text.
    response = support_client.get(url, {"q": "not-a-uuid"})
    assert response.status_code == 200
    assert row_ids(response) == set()


def test_search_compares_the_indexed_columns_themselves(support_client, ledger):
    response = support_client.get(admin_url(Entry, "changelist"), {"q": str(ledger["alice"].id)})

    sql = str(response.context["cl"].queryset.query)
    assert '"entry"."account_id" = ' in sql
    assert '"entry"."transfer_id" = ' in sql
    assert "::varchar" not in sql
    assert "LIKE" not in sql.upper()


def test_account_statement_lists_its_entries_latest_first(support_client, ledger):
    alice = ledger["alice"]

    response = support_client.get(admin_url(Entry, "changelist"), {"account": str(alice.id)})

    assert [entry.sequence for entry in response.context["cl"].result_list] == [2, 1]


def test_search_idempotency_records_and_outbox(support_client, ledger):
    transfer = ledger["transfer"]

    records = support_client.get(admin_url(IdempotencyRecord, "changelist"), {"q": "order-7"})
    events = support_client.get(admin_url(OutboxEvent, "changelist"), {"q": str(transfer.id)})

    assert row_ids(records) == {"order-7"}
    assert {event.event_type for event in events.context["cl"].result_list} == {"TransferPosted"}


def test_filters_by_currency_status_and_date(support_client, ledger, make_account):
    euro = make_account("EUR")
    url = admin_url(Account, "changelist")

    assert row_ids(support_client.get(url, {"currency__code__exact": "EUR"})) == {euro.id}
    recent = {"status__exact": "active", "created_at__gte": "2000-01-01 00:00:00+00:00"}
    assert len(row_ids(support_client.get(url, recent))) == 3
    assert row_ids(support_client.get(admin_url(Transfer, "changelist"), {"status__exact": "posted"})) == {
        ledger["transfer"].id,
        ledger["other"].id,
    }


def test_list_pages_query_a_constant_number_of_times(support_client, ledger, make_transfer):
    def queries(model):
        with CaptureQueriesContext(connection) as captured:
            assert support_client.get(admin_url(model, "changelist")).status_code == 200
        return len(captured)

    before = {model: queries(model) for model in LEDGER_MODELS}
    for _ in range(3):
        make_transfer(ledger["alice"], ledger["bob"], 1)

    assert {model: queries(model) for model in LEDGER_MODELS} == before


@pytest.mark.parametrize("model", LEDGER_MODELS, ids=lambda model: model.__name__)
def test_nobody_may_add_change_or_delete_not_even_a_superuser(admin_client, support_client, ledger, model):
    obj = model.objects.first()
    count = model.objects.count()

    for client in (admin_client, support_client):
        assert client.get(admin_url(model, "add")).status_code == 403
        assert client.post(admin_url(model, "add"), {}).status_code == 403
        assert client.post(admin_url(model, "change", obj.pk), {}).status_code == 403
        assert client.get(admin_url(model, "delete", obj.pk)).status_code == 403
        assert client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
        assert (
            client.post(
                admin_url(model, "changelist"), {"action": "delete_selected", "_selected_action": [obj.pk]}
            ).status_code
            != 302
        )

    assert model.objects.count() == count


def test_a_superuser_sees_the_change_page_read_only(admin_client, ledger):
    response = admin_client.get(admin_url(Account, "change", ledger["alice"].id))

    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()


def test_support_sees_a_multi_leg_transfer_with_its_description_and_every_posting(support_client, make_account):
    buyer_usd, shop_usd = make_account("USD"), make_account("USD")
    shop_credits, buyer_credits = make_account("CREDITS"), make_account("CREDITS")
    transfer = transfer_create_postings(
        idempotency_key="buy-credits",
        postings=[
            Posting(buyer_usd.id, shop_usd.id, 1000, "USD"),
            Posting(shop_credits.id, buyer_credits.id, 1000, "CREDITS"),
        ],
        description="Buy 1,000 CREDITS for 10 USD",
    ).transfer

    listed = support_client.get(admin_url(Transfer, "changelist")).content.decode()
    response = support_client.get(admin_url(Transfer, "change", transfer.id))

    assert "Buy 1,000 CREDITS for 10 USD" in listed
    assert "2 postings" in listed
    content = response.content.decode()
    assert "Buy 1,000 CREDITS for 10 USD" in content
    assert "-1000 USD" in content
    assert "-1000 CREDITS" in content
    entries = next(inline for inline in response.context["inline_admin_formsets"] if inline.opts.model is Entry)
    assert [(form.original.posting_index, form.original.amount) for form in entries] == [
        (0, -1000),
        (0, 1000),
        (1, -1000),
        (1, 1000),
    ]


def test_support_sees_what_a_hold_reserved_until_when_and_whether_it_is_still_open(
    support_client, make_account, make_transfer
):
    wallet, shop = make_account("USD"), make_account("USD")
    hold = make_transfer(wallet, shop, 300, hold=HoldRequest(timeout_seconds=600)).transfer_id

    pending = support_client.get(admin_url(Transfer, "change", hold)).content.decode()
    hold_post(transfer_id=hold, idempotency_key="post-it", amount=120)
    posted = support_client.get(admin_url(Transfer, "change", hold)).content.decode()

    assert "Pending" in pending
    assert "<td>300 USD</td>" in pending
    assert "<td>open</td>" in pending
    expires_at = Hold.objects.get(transfer_id=hold).expires_at
    assert expires_at is not None
    assert str(expires_at.year) in pending
    assert "-300 USD" not in pending  # nothing posted yet
    assert "<td>closed</td>" in posted
    assert "-120 USD" in posted


def test_a_hold_page_shows_the_post_that_settled_it_with_its_key_and_what_it_released(
    support_client, make_account, make_transfer
):
    wallet, shop = make_account("USD"), make_account("USD")
    hold = make_transfer(wallet, shop, 300, hold=HoldRequest(timeout_seconds=600)).transfer_id
    assert commands_shown(support_client, hold) == []  # pending: nothing done to it yet

    hold_post(transfer_id=hold, idempotency_key="capture-1", amount=120)
    with pytest.raises(errors.TransferNotPending):  # refused: its record keeps the refusal, not the hold
        hold_void(transfer_id=hold, idempotency_key="late-void")

    (row,) = commands_shown(support_client, hold)
    command, key, at, amount, outcome, by = row
    assert (command, key, amount, outcome, by) == ("post", "capture-1", "120 USD", "posted, 180 USD released", "system")
    assert at == str(Transfer.objects.get(id=hold).updated_at)


def test_a_hold_page_shows_the_void_that_released_it(support_client, make_account, make_transfer):
    wallet, shop = make_account("USD"), make_account("USD")
    hold = make_transfer(wallet, shop, 300, hold=HoldRequest()).transfer_id

    hold_void(transfer_id=hold, idempotency_key="cancel-order-9")

    assert [row[:2] + row[3:] for row in commands_shown(support_client, hold)] == [
        ("void", "cancel-order-9", "-", "voided, 300 USD released", "system")
    ]


def test_a_hold_page_shows_its_expiry_without_a_key(support_client, make_account, make_transfer):
    wallet, shop = make_account("USD"), make_account("USD")
    expires_at = timezone.now() + timedelta(milliseconds=300)
    hold = make_transfer(wallet, shop, 300, hold=HoldRequest(expires_at=expires_at)).transfer_id
    time.sleep(0.4)

    assert holds_expire(limit=10) == 1

    assert [row[:2] + row[3:] for row in commands_shown(support_client, hold)] == [
        ("expiry", "-", "-", "expired, 300 USD released", "-")
    ]


def test_a_multi_leg_hold_posted_whole_shows_every_currency_it_posted(support_client, make_account):
    buyer_usd, shop_usd = make_account("USD"), make_account("USD")
    shop_credits, buyer_credits = make_account("CREDITS"), make_account("CREDITS")
    hold = transfer_create_postings(
        idempotency_key="reserve-credits",
        postings=[
            Posting(buyer_usd.id, shop_usd.id, 1000, "USD"),
            Posting(shop_credits.id, buyer_credits.id, 1000, "CREDITS"),
        ],
        hold=HoldRequest(),
    ).transfer_id

    hold_post(transfer_id=hold, idempotency_key="confirm-credits")

    assert [row[:2] + row[3:] for row in commands_shown(support_client, hold)] == [
        ("post", "confirm-credits", "1000 CREDITS, 1000 USD", "posted", "system")
    ]


def test_a_transfer_page_lists_its_reversals_as_commands_with_their_keys_and_links(support_client, ledger):
    transfer = ledger["transfer"]
    first = transfer_reverse(idempotency_key="refund-1", transfer_id=transfer.id, amount=200).transfer_id
    second = transfer_reverse(idempotency_key="refund-2", transfer_id=transfer.id, amount=300).transfer_id

    rows = commands_shown(support_client, transfer.id)

    assert [(command, key, amount, by) for command, key, _, amount, _, by in rows] == [
        ("reverse", "refund-1", "200 USD", "system"),
        ("reverse", "refund-2", "300 USD", "system"),
    ]
    assert [outcome for *_, outcome, _ in rows] == [
        f'reversal <a href="{admin_url(Transfer, "change", reversal)}">{reversal}</a>' for reversal in (first, second)
    ]
    assert commands_shown(support_client, first) == []  # a reversal itself has had nothing done to it


class _Tables(HTMLParser):
    """The text of each cell of each row of the tables of a page, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = dict(attrs).get("id")
            self.tables.setdefault(self._table or "", [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(content: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(content)
    return parser.tables


@pytest.fixture
def why_37(make_account, make_transfer, ledger_clock):
    """41 USD a month ago, 37 now: 3 of usage drew from "Welcome bonus", whose last 1 then
    expired (not booked yet: nothing has touched the account since)."""
    promotions, usage = make_account(name="Promotions"), make_account(name="API")
    customer = make_account(name="Acme", external_ref="customer-42", overdraft_limit=0)
    start = ledger_now()
    bonus = grant_create(
        account_id=customer.id,
        funding_account_id=promotions.id,
        amount=4,
        idempotency_key="bonus",
        expires_at=start + timedelta(days=19),
        priority=10,
        description="Welcome bonus",
    ).document
    plan = grant_create(
        account_id=customer.id,
        funding_account_id=promotions.id,
        amount=37,
        idempotency_key="plan",
        description="Plan",
    ).document
    ledger_clock.advance(timedelta(days=11))
    spent = make_transfer(customer, usage, 3, description="API usage").transfer
    ledger_clock.advance(timedelta(days=10))
    return {
        "customer": customer,
        "start": start,
        "bonus": bonus,
        "plan": plan,
        "usage": spent,
        "url": admin_url(Account, "change", customer.id),
    }


def test_the_account_page_answers_why_37_not_41(support_client, why_37):
    customer, bonus, plan = why_37["customer"], why_37["bonus"], why_37["plan"]
    since = (why_37["start"] + timedelta(seconds=1)).isoformat()

    response = support_client.get(why_37["url"], {"since": since})

    assert response.status_code == 200
    content = response.content.decode()
    text = " ".join(content.split())
    assert "Balance now: 37 USD</strong> = 37 USD in grants + 0 USD unrestricted" in text
    assert "The booked balance is 38 USD" in text  # the expiry is due, not yet booked
    expected = account_explanation(account_id=customer.id, since=why_37["start"] + timedelta(seconds=1))
    assert expected.summary[0].startswith("41 USD on ")
    assert '-3 "API usage"' in expected.summary[0]
    assert '-1 "Welcome bonus" expired' in expected.summary[0]
    for sentence in expected.summary:
        assert escape(sentence) in content
    page = tables(content)
    assert page["explanation-grants"][1:] == [
        [
            "Welcome bonus",
            "4 USD",
            "3 USD",
            "0 USD",
            "1 USD",
            "0 USD",
            "0 USD",
            "10",
            bonus["effectiveAt"].replace("Z", "+00:00"),
            bonus["expiresAt"].replace("Z", "+00:00"),
            "expired",
        ],
        [
            "Plan",
            "37 USD",
            "0 USD",
            "0 USD",
            "0 USD",
            "0 USD",
            "37 USD",
            "50",
            plan["effectiveAt"].replace("Z", "+00:00"),
            "never",
            "active",
        ],
        ["unrestricted (burns last, never expires)", "", "0 USD", ""],
    ]
    changes = [row[1:] for row in page["explanation-changes"][1:]]
    assert changes == [
        [
            "expiry",
            "-1 USD",
            "37 USD",
            "",
            'Expiry of grant "Welcome bonus"',
            "Welcome bonus: 1 USD",
            f"due, not booked yet; the grant's transfer: {bonus['transferId']}",
        ],
        ["usage", "-3 USD", "38 USD", "", "API usage", "Welcome bonus: 3 USD", str(why_37["usage"].id)],
    ]
    assert admin_url(Transfer, "change", why_37["usage"].id) in content
    assert admin_url(CreditGrant, "change", bonus["grantId"]) in content
    assert admin_url(CreditGrant, "change", plan["grantId"]) in content


def test_the_account_page_links_every_transfer_of_its_changes(support_client, why_37):
    content = support_client.get(why_37["url"]).content.decode()

    transfers = set(Entry.objects.filter(account=why_37["customer"]).values_list("transfer_id", flat=True))
    assert len(transfers) == 3  # the two grants and the usage
    for transfer_id in transfers:
        assert admin_url(Transfer, "change", transfer_id) in content
    assert "0 USD on " in content  # the default window opens before the grants
    assert f"?account={why_37['customer'].id}" in content  # its grants in the grant admin


def test_the_account_page_pages_its_changes_and_never_cuts_them(
    support_client, make_account, make_transfer, monkeypatch
):
    monkeypatch.setattr(ledger_admin, "CHANGES_PER_PAGE", 2)
    wallet, shop = make_account("USD", name="Wallet"), make_account("USD", name="Shop")
    transfers = [make_transfer(shop, wallet, amount, description=f"top-up {amount}").transfer for amount in range(1, 6)]
    url = admin_url(Account, "change", wallet.id)

    pages = [support_client.get(url, {"changes_page": number}).content.decode() for number in (1, 2, 3)]

    assert "Changes since" in pages[0]
    assert ": 5, latest first" in pages[0]
    assert "(page 1 of 3)" in pages[0]
    assert "Earlier changes" in pages[0]
    assert "Later changes" in pages[2]
    shown = [[row[5] for row in tables(page)["explanation-changes"][1:]] for page in pages]
    assert shown == [["top-up 5", "top-up 4"], ["top-up 3", "top-up 2"], ["top-up 1"]]
    for transfer in transfers:
        assert sum(admin_url(Transfer, "change", transfer.id) in page for page in pages) == 1


def test_beyond_its_limit_the_account_page_links_the_changes_before(
    support_client, make_account, make_transfer, monkeypatch
):
    monkeypatch.setattr(ledger_admin, "MAX_CHANGES", 3)
    wallet, shop = make_account("USD", name="Wallet"), make_account("USD", name="Shop")
    for amount in range(1, 6):
        make_transfer(shop, wallet, amount, description=f"top-up {amount}")
    url = admin_url(Account, "change", wallet.id)

    latest = support_client.get(url).content.decode()
    link = re.search(r'id="explanation-earlier">.*?<a href="([^"]+)"', latest, re.DOTALL)
    assert link is not None, "a link to the changes before the latest"
    earlier = support_client.get(url + link.group(1).replace("&amp;", "&")).content.decode()

    assert [row[5] for row in tables(latest)["explanation-changes"][1:]] == ["top-up 5", "top-up 4", "top-up 3"]
    assert [row[5] for row in tables(earlier)["explanation-changes"][1:]] == ["top-up 2", "top-up 1"]
    assert 'id="explanation-earlier"' not in earlier


def test_support_lists_grants_by_their_status_now(support_client, why_37):
    url = admin_url(CreditGrant, "changelist")
    bonus, plan = why_37["bonus"]["grantId"], why_37["plan"]["grantId"]

    everything = support_client.get(url)
    expired = support_client.get(url, {"status": "expired"})
    active = support_client.get(url, {"status": "active"})
    by_account = support_client.get(url, {"account": str(why_37["customer"].id)})

    assert everything.status_code == 200
    assert everything.context["action_form"] is None
    assert {str(pk) for pk in row_ids(expired)} == {bonus}  # past its expiry, before the booking
    assert {str(pk) for pk in row_ids(active)} == {plan}
    assert {str(pk) for pk in row_ids(by_account)} == {bonus, plan}
    rows = {row[0]: row for row in tables(everything.content.decode())["result_list"][1:]}
    assert rows[bonus][5:7] == ["0 USD", "expired"]  # remaining and status now
    assert rows[plan][5:7] == ["37 USD", "active"]


def test_support_sees_a_grant_with_its_history_and_links(support_client, why_37):
    bonus = why_37["bonus"]

    response = support_client.get(admin_url(CreditGrant, "change", bonus["grantId"]))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="_save"' not in content
    assert "status expired: 0 USD remaining, 3 USD consumed, 0 USD reserved, 1 USD expired" in content
    history = tables(content)["grant-history"]
    assert [row[1:4] for row in history[1:]] == [["draw", "3 USD", "API usage"]]
    assert "1 movements" in content
    assert admin_url(Transfer, "change", why_37["usage"].id) in content
    assert admin_url(Transfer, "change", bonus["transferId"]) in content  # its funding transfer
    assert admin_url(Account, "change", why_37["customer"].id) in content
    assert admin_url(Account, "change", bonus["from"]) in content


def test_nobody_may_add_change_or_delete_a_grant(admin_client, support_client, why_37):
    grant = CreditGrant.objects.get(id=why_37["bonus"]["grantId"])

    for client in (admin_client, support_client):
        assert client.get(admin_url(CreditGrant, "add")).status_code == 403
        assert client.post(admin_url(CreditGrant, "change", grant.pk), {}).status_code == 403
        assert client.post(admin_url(CreditGrant, "delete", grant.pk), {"post": "yes"}).status_code == 403

    assert CreditGrant.objects.get(id=grant.id).status == grant.status


def test_once_booked_the_expiry_links_its_own_transfer(support_client, why_37):
    assert grants_book_due(limit=10) == 1

    content = support_client.get(why_37["url"]).content.decode()

    expiry = Transfer.objects.get(metadata__grantId=why_37["bonus"]["grantId"])
    assert expiry.description == 'Expiry of grant "Welcome bonus"'
    assert admin_url(Transfer, "change", expiry.id) in content
    assert "not booked yet" not in content
    assert "The booked balance is" not in content
