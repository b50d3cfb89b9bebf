"""Audit the whole ledger against its invariants, from the entries up.

PostgreSQL enforces the invariants as each transaction commits (sql/0002_invariants.sql).
This is the independent check afterwards: it recomputes every balance from the journal and
catches drift that bypassed the triggers (a restore, a manual fix with triggers disabled,
a bug in the SQL itself). Each check is one set-based query, so the cost is a few passes
over `entry` whatever the number of accounts, all in one consistent snapshot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import connection, transaction

from apps.accounts.models import AccountStatus
from apps.ledger.models import TransferStatus

DEFAULT_LIMIT = 100

# Per account: entry count, sum, last sequence, latest balance_after, currencies, and the
# entries whose balance_after does not continue the running sum of amounts; a closed account
# must hold nothing; its pending debits and credits are the sums of its open holds.
_ACCOUNTS_SQL = """
WITH chain AS (
    SELECT account_id, sequence, currency, amount, balance_after,
           sum(amount) OVER (PARTITION BY account_id ORDER BY sequence) AS running_balance
      FROM entry
),
per_account AS (
    SELECT account_id,
           count(*) AS entry_count,
           sum(amount) AS entry_sum,
           max(sequence) AS max_sequence,
           -- Sequences are unique per account: the greatest [sequence, balance_after] is the latest entry's.
           (max(ARRAY[sequence, balance_after]))[2] AS latest_balance_after,
           min(currency) AS min_currency,
           max(currency) AS max_currency,
           count(*) FILTER (WHERE balance_after <> running_balance) AS broken_links,
           min(sequence) FILTER (WHERE balance_after <> running_balance) AS first_broken_sequence
      FROM chain
     GROUP BY account_id
),
holds AS (
    SELECT account_id, sum(debit) AS held_debits, sum(credit) AS held_credits
      FROM transfer_hold h
     CROSS JOIN LATERAL (VALUES (h.from_account_id, h.amount, 0), (h.to_account_id, 0, h.amount))
           AS l(account_id, debit, credit)
     WHERE h.open
     GROUP BY account_id
),
checked AS (
    SELECT coalesce(a.id, p.account_id) AS id,
           a.id IS NULL AS account_missing,
           a.currency, a.balance, a.last_sequence, a.overdraft_limit, a.status,
           a.pending_debits, a.pending_credits,
           coalesce((SELECT held_debits FROM holds WHERE holds.account_id = a.id), 0) AS held_debits,
           coalesce((SELECT held_credits FROM holds WHERE holds.account_id = a.id), 0) AS held_credits,
           coalesce(p.entry_count, 0) AS entry_count,
           coalesce(p.entry_sum, 0) AS entry_sum,
           coalesce(p.max_sequence, 0) AS max_sequence,
           coalesce(p.latest_balance_after, 0) AS latest_balance_after,
           p.min_currency, p.max_currency,
           coalesce(p.broken_links, 0) AS broken_links,
           p.first_broken_sequence
      FROM account a FULL JOIN per_account p ON p.account_id = a.id
),
problems AS (
    SELECT * FROM checked
     WHERE account_missing
        OR entry_sum <> balance
        OR latest_balance_after <> balance
        OR entry_count <> last_sequence
        OR max_sequence <> last_sequence
        OR min_currency <> currency
        OR max_currency <> currency
        OR broken_links > 0
        OR least(balance, entry_sum) < -overdraft_limit
        OR (status = %(closed)s AND (balance <> 0 OR entry_sum <> 0))
        OR pending_debits <> held_debits
        OR pending_credits <> held_credits
)
SELECT (SELECT count(*) FROM checked WHERE NOT account_missing),
       (SELECT coalesce(sum(entry_count), 0) FROM checked),
       (SELECT count(*) FROM problems),
       (SELECT coalesce(json_agg(listed ORDER BY id), '[]')
          FROM (SELECT * FROM problems ORDER BY id LIMIT %(limit)s) listed)
"""

# Per transfer: its entries must sum to zero in every currency and, once posted, be exactly
# -amount on the source and +amount on the destination, in the transfer's currency (one
# posting, index 0); or, for several postings (from, to, amount and currency NULL), come in
# posting_count postings numbered from 0, each one debit and its matching credit (same amount
# and currency, the two accounts each other's counterparty). With 2 * posting_count entries,
# that many debits of distinct postings that each have their credit leave room for nothing else.
# Holds: a pending transfer holds each of its postings (open hold rows), and no other transfer
# has an open hold; only a posted transfer has entries; a posted hold posts each posting
# between its accounts, in its currency, at most the amount held.
_TRANSFERS_SQL = """
WITH sides AS (
    SELECT e.transfer_id, e.currency,
           count(*) AS entry_count,
           sum(e.amount) AS total,
           count(*) FILTER (WHERE e.currency = t.currency AND e.posting_index = 0 AND (
               abs(e.amount) = t.amount OR (abs(e.amount) < t.amount AND EXISTS (
                   SELECT 1 FROM transfer_hold h WHERE h.transfer_id = t.id))) AND (
               (e.account_id = t.from_account_id AND e.counterparty_id = t.to_account_id AND e.amount < 0) OR
               (e.account_id = t.to_account_id AND e.counterparty_id = t.from_account_id AND e.amount > 0)
           )) AS matching
      FROM entry e LEFT JOIN transfer t ON t.id = e.transfer_id
     GROUP BY e.transfer_id, e.currency
),
pairs AS (
    SELECT d.transfer_id, count(DISTINCT d.posting_index) AS paired
      FROM entry d
      JOIN transfer t ON t.id = d.transfer_id
      JOIN entry c ON c.transfer_id = d.transfer_id AND c.posting_index = d.posting_index
                  AND c.account_id = d.counterparty_id AND c.counterparty_id = d.account_id
                  AND c.amount = -d.amount AND c.currency = d.currency
     WHERE t.from_account_id IS NULL AND d.amount < 0 AND d.account_id <> d.counterparty_id
       AND d.posting_index >= 0 AND d.posting_index < t.posting_count
     GROUP BY d.transfer_id
),
held AS (
    SELECT h.transfer_id, count(*) AS hold_count, count(*) FILTER (WHERE h.open) AS open_holds,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM entry d WHERE d.transfer_id = h.transfer_id AND d.posting_index = h.posting_index
                  AND d.amount < 0 AND (d.account_id <> h.from_account_id OR d.counterparty_id <> h.to_account_id
                                        OR d.currency <> h.currency OR -d.amount > h.amount))) AS beyond_hold
      FROM transfer_hold h GROUP BY h.transfer_id
),
checked AS (
    SELECT coalesce(t.id, s.transfer_id) AS id,
           t.id IS NULL AS transfer_missing,
           t.status, t.posting_count, t.amount, t.currency, t.from_account_id, t.to_account_id,
           coalesce(sum(s.entry_count), 0) AS entry_count,
           coalesce(sum(s.matching), 0) AS matching,
           coalesce(jsonb_object_agg(s.currency, s.total) FILTER (WHERE s.total <> 0), '{}') AS unbalanced
      FROM transfer t FULL JOIN sides s ON s.transfer_id = t.id
     GROUP BY t.id, s.transfer_id
),
problems AS (
    SELECT c.*, coalesce(p.paired, 0) AS paired, coalesce(h.hold_count, 0) AS hold_count,
           coalesce(h.open_holds, 0) AS open_holds, coalesce(h.beyond_hold, 0) AS beyond_hold
      FROM checked c LEFT JOIN pairs p ON p.transfer_id = c.id LEFT JOIN held h ON h.transfer_id = c.id
     WHERE c.transfer_missing
        OR (c.status = %(pending)s AND (coalesce(h.hold_count, 0) <> c.posting_count
                                        OR coalesce(h.open_holds, 0) <> c.posting_count))
        OR (c.status <> %(pending)s AND coalesce(h.open_holds, 0) > 0)
        OR (c.status <> %(posted)s AND c.entry_count > 0)
        OR coalesce(h.beyond_hold, 0) > 0
        OR c.unbalanced <> '{}'
        OR (c.status = %(posted)s AND c.from_account_id IS NOT NULL AND (c.entry_count <> 2 OR c.matching <> 2))
        OR (c.status = %(posted)s AND c.from_account_id IS NULL
            AND (c.entry_count <> 2 * c.posting_count OR coalesce(p.paired, 0) <> c.posting_count))
)
SELECT (SELECT count(*) FROM checked WHERE NOT transfer_missing),
       (SELECT count(*) FROM problems),
       (SELECT coalesce(json_agg(listed ORDER BY id), '[]')
          FROM (SELECT * FROM problems ORDER BY id LIMIT %(limit)s) listed)
"""

# Idempotency records that created transfers and transfers are one-to-one: a record's transfer
# carries its key, and every transfer has the record that makes a retry return it. (The records
# of post and void commands point to the hold they settled, under keys of their own.)
_IDEMPOTENCY_SQL = """
WITH checked AS (
    SELECT r.key, r.transfer_id AS record_transfer_id, t.id AS transfer_id, t.idempotency_key
      FROM (SELECT * FROM idempotency_record WHERE command IS NULL) r FULL JOIN transfer t ON t.id = r.transfer_id
),
problems AS (
    SELECT * FROM checked
     WHERE key IS NULL
        OR (record_transfer_id IS NOT NULL AND idempotency_key IS DISTINCT FROM key)
)
SELECT (SELECT count(key) FROM checked),
       (SELECT count(*) FROM problems),
       (SELECT coalesce(json_agg(listed ORDER BY key, transfer_id), '[]')
          FROM (SELECT * FROM problems ORDER BY key, transfer_id LIMIT %(limit)s) listed)
"""


# Per reversed transfer (docs/domain.md, Reversals): its reversed_amount is what its reversals
# (the transfers whose reversal_of is it) move back, the sum of their postings' amounts, and at
# most its own total; only a posted transfer has any; each reversal inverts its postings (as
# many, each between the same accounts the other way round, in the same currency, for the same
# amount or, for a transfer of one posting, at most that amount). Reads only the transfers
# with a reversed amount or reversals, and their entries by index.
_REVERSALS_SQL = """
WITH reversals AS (
    SELECT r.reversal_of AS original_id,
           count(*) AS reversal_count,
           coalesce(sum((SELECT sum(-e.amount) FROM entry e WHERE e.transfer_id = r.id AND e.amount < 0)), 0)
               AS moved_back,
           count(*) FILTER (WHERE o.id IS NULL OR r.posting_count <> o.posting_count OR EXISTS (
               SELECT 1 FROM entry d
                WHERE d.transfer_id = r.id AND d.amount < 0
                  AND NOT EXISTS (SELECT 1 FROM entry od
                                   WHERE od.transfer_id = o.id AND od.amount < 0 AND od.posting_index = d.posting_index
                                     AND od.account_id = d.counterparty_id AND od.counterparty_id = d.account_id
                                     AND od.currency = d.currency
                                     AND (d.amount = od.amount OR (o.posting_count = 1 AND d.amount >= od.amount)))))
               AS not_inverse
      FROM transfer r LEFT JOIN transfer o ON o.id = r.reversal_of
     WHERE r.reversal_of IS NOT NULL
     GROUP BY r.reversal_of
),
checked AS (
    SELECT ids.id, t.id IS NULL AS transfer_missing, t.status, t.reversed_amount,
           (SELECT coalesce(sum(-e.amount), 0) FROM entry e WHERE e.transfer_id = ids.id AND e.amount < 0) AS total,
           coalesce(v.reversal_count, 0) AS reversal_count,
           coalesce(v.moved_back, 0) AS moved_back,
           coalesce(v.not_inverse, 0) AS not_inverse
      FROM (SELECT id FROM transfer WHERE reversed_amount <> 0 UNION SELECT original_id FROM reversals) ids
      LEFT JOIN transfer t ON t.id = ids.id
      LEFT JOIN reversals v ON v.original_id = ids.id
),
problems AS (
    SELECT * FROM checked
     WHERE transfer_missing
        OR reversed_amount <> moved_back
        OR reversed_amount > total
        OR not_inverse > 0
        OR (reversed_amount > 0 AND status <> %(posted)s)
)
SELECT (SELECT count(*) FROM problems),
       (SELECT coalesce(json_agg(listed ORDER BY id), '[]')
          FROM (SELECT * FROM problems ORDER BY id LIMIT %(limit)s) listed)
"""


# Per grant, recomputed from its allocations (its lineage): the counters; that they fit in
# its amount; that every allocation that moved the balance is an entry of the grant's account
# on the allocation's transfer, in its direction, and that no entry gives its grants more
# than its amount; that its funding transfer is pending exactly while it is scheduled and
# otherwise credited it whole (or was voided, for a grant voided before it took effect); and
# that an exhausted grant has nothing left. Reads only grants and their allocations by index.
_GRANTS_SQL = """
WITH sums AS (
    SELECT g.id,
           coalesce(sum(a.amount) FILTER (WHERE a.kind IN ('draw', 'post')), 0)
             - coalesce(sum(a.amount) FILTER (WHERE a.kind = 'restore'), 0) AS consumed,
           coalesce(sum(a.amount) FILTER (WHERE a.kind = 'reserve'), 0)
             - coalesce(sum(a.amount) FILTER (WHERE a.kind IN ('post', 'release')), 0) AS reserved,
           coalesce(sum(a.amount) FILTER (WHERE a.kind = 'expire'), 0) AS expired,
           coalesce(sum(a.amount) FILTER (WHERE a.kind = 'void'), 0) AS voided,
           count(a.id) FILTER (WHERE a.entry_id IS NOT NULL
                                 AND (e.id IS NULL OR e.account_id <> g.account_id OR e.transfer_id <> a.transfer_id
                                      OR (a.kind = 'restore') <> (e.amount > 0))) AS stray_allocations
      FROM credit_grant g
      LEFT JOIN grant_allocation a ON a.grant_id = g.id
      LEFT JOIN entry e ON e.id = a.entry_id
     GROUP BY g.id
),
checked AS (
    SELECT g.id, g.status, g.amount, g.consumed, g.reserved, g.expired, g.voided,
           s.consumed AS sum_consumed, s.reserved AS sum_reserved, s.expired AS sum_expired, s.voided AS sum_voided,
           s.stray_allocations, t.status AS funding_status,
           (SELECT coalesce(sum(e.amount), 0) FROM entry e
             WHERE e.transfer_id = g.transfer_id AND e.account_id = g.account_id) AS funded,
           (SELECT count(*) FROM (
               SELECT e.id FROM entry e JOIN grant_allocation a ON a.entry_id = e.id
                WHERE e.id IN (SELECT x.entry_id FROM grant_allocation x WHERE x.grant_id = g.id)
                GROUP BY e.id HAVING sum(a.amount) > max(abs(e.amount))) over) AS overdrawn_entries
      FROM credit_grant g JOIN sums s ON s.id = g.id LEFT JOIN transfer t ON t.id = g.transfer_id
),
problems AS (
    SELECT * FROM checked
     WHERE (consumed, reserved, expired, voided) IS DISTINCT FROM (sum_consumed, sum_reserved, sum_expired, sum_voided)
        OR sum_consumed < 0 OR sum_reserved < 0
        OR sum_consumed + sum_reserved + sum_expired + sum_voided > amount
        OR stray_allocations > 0 OR overdrawn_entries > 0
        OR (status = 'scheduled') <> (funding_status = 'pending')
        OR (funding_status = 'posted' AND funded <> amount)
        OR (funding_status NOT IN ('pending', 'posted') AND NOT (status = 'voided' AND funding_status = 'voided'))
        OR (status = 'exhausted' AND amount - sum_consumed - sum_expired - sum_voided <> 0)
)
SELECT (SELECT count(*) FROM credit_grant),
       (SELECT count(*) FROM problems),
       (SELECT coalesce(json_agg(listed ORDER BY id), '[]')
          FROM (SELECT * FROM problems ORDER BY id LIMIT %(limit)s) listed)
"""


@dataclass(frozen=True)
class Problem:
    """Everything wrong with one account, transfer or idempotency record."""

    subject: str  # "account", "transfer", "grant" or "idempotency_record"
    id: str
    details: list[str]

    def __str__(self) -> str:
        return f"{self.subject} {self.id}: " + "; ".join(self.details)


@dataclass(frozen=True)
class VerificationReport:
    accounts: int
    entries: int
    transfers: int
    idempotency_records: int
    #: How many accounts, transfers, grants and records have a problem; `problems` lists the first ones.
    problem_count: int
    problems: list[Problem] = field(default_factory=list)
    grants: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def summary_lines(self) -> list[str]:
        lines = [
            f"accounts checked: {self.accounts}",
            f"entries checked: {self.entries}",
            f"transfers checked: {self.transfers}",
            f"idempotency records checked: {self.idempotency_records}",
            f"grants checked: {self.grants}",
            f"problems found: {self.problem_count}",
        ]
        lines += [f"  {problem}" for problem in self.problems]
        if self.problem_count > len(self.problems):
            lines.append(f"  ... and {self.problem_count - len(self.problems)} more")
        return lines


def ledger_verify(*, limit: int = DEFAULT_LIMIT) -> VerificationReport:
    """Check every account, entry, transfer and idempotency record; list at most `limit` problems.

    Run on its own, it reads one REPEATABLE READ snapshot, so transfers committed meanwhile
    cannot show up as half-applied.
    """
    if connection.in_atomic_block:
        return _verify(limit)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _verify(limit)


def _verify(limit: int) -> VerificationReport:
    accounts, entries, account_problems, account_rows = _query(_ACCOUNTS_SQL, limit=limit, closed=AccountStatus.CLOSED)
    transfers, transfer_problems, transfer_rows = _query(
        _TRANSFERS_SQL, limit=limit, posted=TransferStatus.POSTED, pending=TransferStatus.PENDING
    )
    records, record_problems, record_rows = _query(_IDEMPOTENCY_SQL, limit=limit)
    reversal_problems, reversal_rows = _query(_REVERSALS_SQL, limit=limit, posted=TransferStatus.POSTED)
    grants, grant_problems, grant_rows = _query(_GRANTS_SQL, limit=limit)
    problems = (
        [Problem("account", row["id"], _account_details(row)) for row in account_rows]
        + [Problem("transfer", row["id"], _transfer_details(row)) for row in transfer_rows]
        + [Problem("transfer", row["id"], _reversal_details(row)) for row in reversal_rows]
        + [_idempotency_problem(row) for row in record_rows]
        + [Problem("grant", row["id"], _grant_details(row)) for row in grant_rows]
    )
    return VerificationReport(
        accounts=accounts,
        entries=int(entries),
        transfers=transfers,
        idempotency_records=records,
        problem_count=account_problems + transfer_problems + reversal_problems + record_problems + grant_problems,
        problems=problems[:limit],
        grants=grants,
    )


def _query(sql: str, **params: Any) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _account_details(row: dict[str, Any]) -> list[str]:
    if row["account_missing"]:
        return [f"{row['entry_count']} entries belong to an account that does not exist"]
    details = []
    balance, entry_sum, latest = row["balance"], row["entry_sum"], row["latest_balance_after"]
    if entry_sum != balance:
        details.append(f"balance {balance} but its entries sum to {entry_sum}")
    if latest not in (balance, entry_sum):
        details.append(f"balance {balance} but its latest entry (#{row['max_sequence']}) has balance_after {latest}")
    if not row["entry_count"] == row["max_sequence"] == row["last_sequence"]:
        details.append(
            f"last_sequence {row['last_sequence']} but entry count {row['entry_count']} and highest sequence "
            f"{row['max_sequence']}" + (" (a gap)" if row["entry_count"] != row["max_sequence"] else "")
        )
    foreign = sorted({row["min_currency"], row["max_currency"]} - {row["currency"], None})
    if foreign:
        details.append(f"holds {row['currency']} but has entries in {', '.join(foreign)}")
    if row["broken_links"]:
        details.append(
            f"{row['broken_links']} entries have a balance_after that is not the running sum of amounts, "
            f"the first at #{row['first_broken_sequence']}"
        )
    limit = row["overdraft_limit"]
    if limit is not None and min(balance, entry_sum) < -limit:
        details.append(f"balance {balance} (entries: {entry_sum}) is beyond its overdraft limit of {limit}")
    if row["status"] == AccountStatus.CLOSED and (balance or entry_sum):
        details.append(f"closed with balance {balance} (entries: {entry_sum}); a closed account holds nothing")
    if (row["pending_debits"], row["pending_credits"]) != (row["held_debits"], row["held_credits"]):
        details.append(
            f"pending debits {row['pending_debits']} and credits {row['pending_credits']} but its open holds sum to "
            f"{row['held_debits']} and {row['held_credits']}"
        )
    return details


def _transfer_details(row: dict[str, Any]) -> list[str]:
    if row["transfer_missing"]:
        return [f"{row['entry_count']} entries belong to a transfer that does not exist"]
    details = [f"entries in {currency} sum to {total}, not 0" for currency, total in sorted(row["unbalanced"].items())]
    details += _hold_details(row)
    if row["status"] != TransferStatus.POSTED:
        return details
    postings = row["posting_count"]
    if row["from_account_id"] is not None:
        if not row["entry_count"] == row["matching"] == 2:
            details.append(
                f"a posted transfer has exactly 2 entries, -{row['amount']} {row['currency']} on "
                f"{row['from_account_id']} and +{row['amount']} on {row['to_account_id']}; this one has "
                f"{row['entry_count']}, {row['matching']} of them matching"
            )
    elif row["entry_count"] != 2 * postings or row["paired"] != postings:
        details.append(
            f"a posted transfer of {postings} postings has one debit and its matching credit for each, "
            f"{2 * postings} entries; this one has {row['entry_count']} entries, {row['paired']} postings that pair up"
        )
    return details


def _hold_details(row: dict[str, Any]) -> list[str]:
    details = []
    status, holds, open_holds = row["status"], row["hold_count"], row["open_holds"]
    if status == TransferStatus.PENDING and not holds == open_holds == row["posting_count"]:
        details.append(f"pending with {open_holds} open holds of {holds} for {row['posting_count']} postings")
    if status != TransferStatus.PENDING and open_holds:
        details.append(f"{status} but {open_holds} of its holds are still open")
    if status != TransferStatus.POSTED and row["entry_count"]:
        details.append(f"{status} but has {row['entry_count']} entries; only a posted transfer has entries")
    if row["beyond_hold"]:
        details.append(f"{row['beyond_hold']} postings were posted beyond, or off, what they held")
    return details


def _reversal_details(row: dict[str, Any]) -> list[str]:
    if row["transfer_missing"]:
        return [f"{row['reversal_count']} reversals reverse a transfer that does not exist"]
    details = []
    reversed_amount, moved_back, total = row["reversed_amount"], row["moved_back"], row["total"]
    if reversed_amount != moved_back:
        details.append(
            f"reversed_amount {reversed_amount} but its {row['reversal_count']} reversals move back {moved_back}"
        )
    if reversed_amount > total:
        details.append(f"reversed_amount {reversed_amount} is more than the {total} it moved")
    if reversed_amount > 0 and row["status"] != TransferStatus.POSTED:
        details.append(
            f"reversed_amount {reversed_amount} on a {row['status']} transfer; only a posted one is reversed"
        )
    if row["not_inverse"]:
        details.append(f"{row['not_inverse']} of its reversals do not invert its postings")
    return details


def _grant_details(row: dict[str, Any]) -> list[str]:
    details = []
    stored = (row["consumed"], row["reserved"], row["expired"], row["voided"])
    recomputed = (row["sum_consumed"], row["sum_reserved"], row["sum_expired"], row["sum_voided"])
    if stored != recomputed:
        details.append(
            "consumed, reserved, expired, voided are {} but its allocations make them {}".format(
                ", ".join(map(str, stored)), ", ".join(map(str, recomputed))
            )
        )
    if row["sum_consumed"] < 0 or row["sum_reserved"] < 0:
        details.append("its allocations give back more than they took")
    if sum(recomputed) > row["amount"]:
        details.append(f"its allocations use {sum(recomputed)} of the {row['amount']} granted")
    if row["stray_allocations"]:
        details.append(f"{row['stray_allocations']} allocations are not entries of its account on their transfer")
    if row["overdrawn_entries"]:
        details.append(f"{row['overdrawn_entries']} entries give their grants more than their amount")
    if (row["status"] == "scheduled") != (row["funding_status"] == "pending"):
        details.append(f"it is {row['status']} but its funding transfer is {row['funding_status']}")
    if row["funding_status"] == "posted" and row["funded"] != row["amount"]:
        details.append(f"its funding transfer credited {row['funded']} of the {row['amount']} granted")
    if row["status"] == "exhausted" and row["amount"] - row["sum_consumed"] - row["sum_expired"] - row["sum_voided"]:
        details.append("it is exhausted with credits left")
    return details or [f"it is {row['status']} but its funding transfer is {row['funding_status']}"]


def _idempotency_problem(row: dict[str, Any]) -> Problem:
    if row["key"] is None:
        return Problem(
            "transfer",
            row["transfer_id"],
            [f"no idempotency record points to it (its key is {row['idempotency_key']!r})"],
        )
    if row["transfer_id"] is None:
        detail = f"points to transfer {row['record_transfer_id']}, which does not exist"
    else:
        detail = f"points to transfer {row['transfer_id']}, whose idempotency key is {row['idempotency_key']!r}"
    return Problem("idempotency_record", row["key"], [detail])
