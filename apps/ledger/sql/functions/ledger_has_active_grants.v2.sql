-- Version 2 (0017_checks_and_plans): reads a column the index does not hold, so the scan visits
-- the heap and marks the index entries of exhausted grants dead as it passes them (an
-- index-only scan leaves them, and until a vacuum every call walks them all again).
CREATE OR REPLACE FUNCTION ledger_has_active_grants(p_account_id uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM (SELECT g.amount FROM credit_grant g
                                   WHERE g.account_id = p_account_id AND g.status = 'active'
                                   ORDER BY g.priority LIMIT 1) AS first)
$$;
