-- What the ledger books by itself is the `system`'s, whoever's command made it due: a grant's
-- activation or expiry, a hold's expiry, booked under the account locks by the first command
-- that touches the account (ledger_book_due), or a hold found expired by the post or void sent
-- to it (ledger_hold_expire). The actor columns' default and the events' envelopes read
-- `ledger.actor` (creditledger/actor.py); a function's SET clause holds for the call and is
-- restored after it.
ALTER FUNCTION ledger_book_due(uuid[], timestamptz, jsonb) SET ledger.actor = 'system';
ALTER FUNCTION ledger_hold_expire(uuid, uuid, timestamptz, jsonb) SET ledger.actor = 'system';

-- reverse:
ALTER FUNCTION ledger_hold_expire(uuid, uuid, timestamptz, jsonb) RESET ledger.actor;
ALTER FUNCTION ledger_book_due(uuid[], timestamptz, jsonb) RESET ledger.actor;
