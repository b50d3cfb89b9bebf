"""Rebuilding the projections (the read model): from the ledger, the source of truth, or from
the beginning of the Kafka topics. Safe while the service runs: build beside, then swap.

1. Build beside (rebuild.py). A fresh schema, `projections_rebuild`, gets the projection
   tables, created by Django's schema editor so that every table, index and constraint has
   the name the migrations gave the live one. `projection_consumer_offset` is not rebuilt:
   it tracks the live consumer.
2. Load. From the ledger (from_ledger.py, loader.py), every row is read in one REPEATABLE
   READ snapshot, exported with pg_export_snapshot() so that a few worker connections load
   chunks of it in parallel (chunks are ranges of heap pages, read by TID range scans). When
   the read model is in the ledger's database, each chunk is one INSERT ... SELECT; when it
   has a database of its own, it is streamed from `COPY (SELECT ...) TO STDOUT` into
   `COPY ... FROM STDIN`. The indexes are dropped before the load and built afterwards,
   which is about twice as fast. From Kafka (from_kafka.py), the events are decoded and
   applied with the projector's own `events_apply`.
3. Swap (swap.py, merge.py), in one transaction on the read database that holds the
   projector's swap lock exclusively, so no consumer batch interleaves: what the live
   consumer applied beyond the rebuild meanwhile is merged into it (only what the ledger
   confirms, so drift in the live tables is not carried over), then the live tables move to
   `projections_retired`, the rebuilt ones into their place, and the retired ones are dropped.

Running it again gives the same tables (up to `applied_at`): it is idempotent.
"""

from apps.projections.replay.from_kafka import projections_replay_from_kafka
from apps.projections.replay.from_ledger import DEFAULT_WORKERS, projections_replay
from apps.projections.replay.lock import REPLAY_LOCK_KEY
from apps.projections.replay.result import ReplayError, ReplayResult

__all__ = [
    "DEFAULT_WORKERS",
    "REPLAY_LOCK_KEY",
    "ReplayError",
    "ReplayResult",
    "projections_replay",
    "projections_replay_from_kafka",
]
