-- Sharded relay (ADR 0022): the Kafka partition of an outbox row is a pure function of its key,
-- computed here, and the relay shard that publishes it is that partition modulo OUTBOX_SHARDS.
-- So a shard owns whole partitions: every partition has one writer, the relay positions on it
-- rise in the order they were produced (what recovering from a broker that lost its history
-- relies on, ADR 0007), and all events of a key go out from one shard, in id order.
-- md5, not hashtext: its value is fixed forever, across PostgreSQL versions.
CREATE FUNCTION outbox_partition(p_key text, p_partitions int) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT mod(('x' || left(md5(p_key), 8))::bit(32)::bigint, p_partitions)::int
$$;

-- reverse:
DROP FUNCTION outbox_partition(text, int);
