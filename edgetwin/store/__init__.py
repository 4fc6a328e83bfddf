"""The store room: the only importer of ``lmdb``.

Contract:
- One LMDB environment under ``storage.path`` with named databases and a schema version; a store written
  by a newer schema is refused at open (:class:`~edgetwin.errors.StoreVersionError`).
- Synchronous API. Reads: ``with store.read() as r:`` — a read transaction that must never span an
  ``await`` (LMDB transactions belong to one thread). Writes: :meth:`Store.commit_batch` applies a batch of
  write functions in ONE transaction, each in a nested transaction of its own so that one failing function
  aborts alone, and commits with fsync. It is called only by the single writer task
  (``edgetwin.core.writer``), in a worker thread.
- When the map is full the batch is refused whole (:class:`MapFull`); the writer grows the map with
  :meth:`Store.grow` and retries, up to ``storage.max_map_size_mb``; past that each write fails with
  :class:`~edgetwin.errors.StoreFull` and nothing already stored is touched.
"""

from __future__ import annotations

from edgetwin.store.lmdb_store import (
    DATABASES,
    SCHEMA_VERSION,
    MapFull,
    Outcome,
    ReadTxn,
    Store,
    StoreStatistics,
    WriteTxn,
)

__all__ = [
    "DATABASES",
    "SCHEMA_VERSION",
    "MapFull",
    "Outcome",
    "ReadTxn",
    "Store",
    "StoreStatistics",
    "WriteTxn",
]
