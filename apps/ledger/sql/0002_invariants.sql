-- Ledger invariants enforced by PostgreSQL itself, whatever code writes the rows.
-- Error codes: 23001 restrict_violation for immutability, 23514 check_violation for the rest,
-- so that every violation surfaces as an IntegrityError.

-- An entry's currency is its account's currency (composite foreign key; it also makes an
-- account's currency impossible to change once it has entries).
ALTER TABLE entry
    ADD CONSTRAINT entry_account_currency_fk FOREIGN KEY (account_id, currency)
    REFERENCES account (id, currency) DEFERRABLE INITIALLY IMMEDIATE;

-- 1. Entries are append-only.
CREATE FUNCTION ledger_entry_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only: % on entry % refused', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER entry_immutable BEFORE UPDATE OR DELETE ON entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_immutable();

-- 2. Transfers are never deleted; a posted transfer is never changed. (Only a future
--    pending transfer may change, and then only its status and updated_at.)
\ir functions/ledger_transfer_immutable.v1.sql
CREATE TRIGGER transfer_immutable BEFORE UPDATE OR DELETE ON transfer
    FOR EACH ROW EXECUTE FUNCTION ledger_transfer_immutable();

-- 3. Accounts are closed, never deleted; their id and currency never change; they are
--    born with a zero balance and no entries.
CREATE FUNCTION ledger_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'accounts are closed, never deleted: DELETE of account % refused', OLD.id
            USING ERRCODE = 'restrict_violation';
    ELSIF TG_OP = 'INSERT' THEN
        IF NEW.balance <> 0 OR NEW.last_sequence <> 0 THEN
            RAISE EXCEPTION 'account % must start with balance 0 and no entries', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.id <> OLD.id OR NEW.currency <> OLD.currency THEN
        RAISE EXCEPTION 'the id and currency of account % never change', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END;
$$;
CREATE TRIGGER account_guard BEFORE INSERT OR UPDATE OR DELETE ON account
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();

-- 4. Per-account sequences are gapless and each entry's balance_after continues the chain:
--    entry n exists only if entry n-1 does, and balance_after(n) = balance_after(n-1) + amount.
CREATE FUNCTION ledger_entry_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous_balance bigint;
BEGIN
    IF NEW.sequence = 1 THEN
        previous_balance := 0;
    ELSE
        SELECT balance_after INTO previous_balance
          FROM entry WHERE account_id = NEW.account_id AND sequence = NEW.sequence - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'entry sequence gap on account %: % has no predecessor', NEW.account_id, NEW.sequence
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF NEW.balance_after <> previous_balance + NEW.amount THEN
        RAISE EXCEPTION 'entry % on account %: balance_after % <> % + %',
            NEW.sequence, NEW.account_id, NEW.balance_after, previous_balance, NEW.amount
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER entry_chain BEFORE INSERT ON entry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_chain();

-- 5. At commit: a posted transfer has exactly two entries, -amount on its source and
--    +amount on its destination, in its currency; so every transfer sums to zero.
\ir functions/ledger_check_transfer.v1.sql

-- 6. At commit: an account's balance and last_sequence are those of its latest entry.
--    With the CHECK on account (balance >= -overdraft_limit) this makes the overdraft rule
--    hold for the balance the entries add up to.
\ir functions/ledger_check_account.v1.sql

CREATE FUNCTION ledger_entry_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_transfer(NEW.transfer_id);
    PERFORM ledger_check_account(NEW.account_id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER entry_balanced AFTER INSERT ON entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_deferred_check();

CREATE FUNCTION ledger_transfer_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_transfer(NEW.id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER transfer_balanced AFTER INSERT OR UPDATE ON transfer
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transfer_deferred_check();

CREATE FUNCTION ledger_account_deferred_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ledger_check_account(NEW.id);
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER account_matches_entries AFTER UPDATE OF balance, last_sequence ON account
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_account_deferred_check();

-- reverse:
DROP TRIGGER IF EXISTS account_matches_entries ON account;
DROP FUNCTION IF EXISTS ledger_account_deferred_check();
DROP TRIGGER IF EXISTS transfer_balanced ON transfer;
DROP FUNCTION IF EXISTS ledger_transfer_deferred_check();
DROP TRIGGER IF EXISTS entry_balanced ON entry;
DROP FUNCTION IF EXISTS ledger_entry_deferred_check();
DROP FUNCTION IF EXISTS ledger_check_account(uuid);
DROP FUNCTION IF EXISTS ledger_check_transfer(uuid);
DROP TRIGGER IF EXISTS entry_chain ON entry;
DROP FUNCTION IF EXISTS ledger_entry_chain();
DROP TRIGGER IF EXISTS account_guard ON account;
DROP FUNCTION IF EXISTS ledger_account_guard();
DROP TRIGGER IF EXISTS transfer_immutable ON transfer;
DROP FUNCTION IF EXISTS ledger_transfer_immutable();
DROP TRIGGER IF EXISTS entry_immutable ON entry;
DROP FUNCTION IF EXISTS ledger_entry_immutable();
ALTER TABLE entry DROP CONSTRAINT IF EXISTS entry_account_currency_fk;
