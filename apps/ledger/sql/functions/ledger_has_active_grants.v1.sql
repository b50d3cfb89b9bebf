-- Version 1 (0015_grants).
CREATE OR REPLACE FUNCTION ledger_has_active_grants(p_account_id uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM (SELECT g.id FROM credit_grant g
                                   WHERE g.account_id = p_account_id AND g.status = 'active'
                                   ORDER BY g.priority LIMIT 1) AS first)
$$;
