"""LMDB environment, read transactions and the batch commit used by the single writer.

Why nested transactions: group commit puts many callers' writes into one transaction so that they share
one fsync. If one caller's write function raises (a failed precondition, a policy denial, a bug), only its
nested transaction is aborted; the others commit. A ``MapFull`` anywhere aborts the whole outer
transaction, because LMDB leaves a transaction unusable after MDB_MAP_FULL; the writer grows the map and
replays the batch, which is safe because write functions are pure over the transaction they are given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import lmdb

from edgetwin.errors import EdgeTwinError, StoreError, StoreFull, StoreVersionError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
MB: Final = 1024 * 1024
# Named databases. "meta" holds the schema version; the others belong to the rooms that use them.
# A name added here is created when an existing store is opened (no schema version change needed for that).
DATABASES: Final = (
    "meta",
    "things",
    "policies",
    "policy_entries",
    "index",
    "journal",
    "retained",
    "kv",
    "mqtt_sessions",
    "mqtt_queue",
)
_SCHEMA_KEY: Final = b"schema_version"


class MapFull(Exception):
    """The batch did not fit in the current map; nothing of it was written."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one write function in a batch produced: a value, or the error it raised."""

    value: T | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot of the store's counters (trio's ``statistics()`` convention)."""

    commits: int
    writes: int
    failed_writes: int
    map_size_bytes: int
    max_map_size_bytes: int
    used_bytes: int


class ReadTxn:
    """A read view. Valid only inside its ``with store.read()`` block; never hold it across an await."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: Any, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, db: str, key: bytes) -> bytes | None:
        """The value under ``key`` in database ``db``, or ``None``."""
        value = self._txn.get(key, db=self._dbs[db])
        return None if value is None else bytes(value)

    def items(
        self, db: str, *, prefix: bytes = b"", start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Key/value pairs of ``db`` whose key starts with ``prefix``, in key order, from ``start`` on."""
        with self._txn.cursor(db=self._dbs[db]) as cursor:
            if not cursor.set_range(start if start is not None and start > prefix else prefix):
                return
            for key, value in cursor:
                if not key.startswith(prefix):
                    return
                yield bytes(key), bytes(value)

    def count(self, db: str) -> int:
        """The number of entries in ``db``."""
        return int(self._txn.stat(self._dbs[db])["entries"])


class WriteTxn(ReadTxn):
    """A write view handed to a write function inside the writer's transaction."""

    __slots__ = ()

    def put(self, db: str, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key`` in ``db``."""
        self._txn.put(key, value, db=self._dbs[db])

    def delete(self, db: str, key: bytes) -> bool:
        """Remove ``key`` from ``db``; ``True`` when it was there."""
        return bool(self._txn.delete(key, db=self._dbs[db]))


class Store:
    """An open LMDB environment. Create with :meth:`open`."""

    def __init__(self, env: Any, dbs: dict[str, Any], *, max_map_size: int) -> None:
        self._env = env
        self._dbs = dbs
        self._max_map_size = max_map_size
        self._commits = 0
        self._writes = 0
        self._failed = 0
        # commit_batch runs in a worker thread; the counters are read from the event loop thread.
        self._lock = threading.Lock()
        self.path = Path(env.path())

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str | os.PathLike[str], *, map_size_mb: int, max_map_size_mb: int) -> Iterator[Store]:
        """Open (creating if needed) the environment at ``path`` and close it on exit.

        Raises:
            StoreError: the directory cannot be created or written, or LMDB refuses it.
            StoreVersionError: the store was written by a newer schema version.
        """
        directory = Path(path)
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"storage.path: cannot create {directory}: {err.strerror}") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(f"storage.path: {directory} is not writable by this user")
        max_map_size = max_map_size_mb * MB
        try:
            env = lmdb.open(
                str(directory),
                map_size=map_size_mb * MB,
                max_dbs=len(DATABASES) + 1,
                subdir=True,
                sync=True,
                metasync=True,
                readahead=False,
                lock=True,
                max_spare_txns=4,
            )
        except lmdb.Error as err:
            raise StoreError(f"storage.path: cannot open the store in {directory}: {err}") from None
        try:
            # A store grown past the configured initial size keeps its size.
            if env.info()["map_size"] < map_size_mb * MB:
                env.set_mapsize(map_size_mb * MB)
            dbs = {name: env.open_db(name.encode()) for name in DATABASES}
            store = cls(env, dbs, max_map_size=max(max_map_size, env.info()["map_size"]))
            store._check_schema()
            yield store
        except lmdb.Error as err:
            raise StoreError(f"storage.path: the store in {directory} is unusable: {err}") from None
        finally:
            env.close()

    def _check_schema(self) -> None:
        with self._env.begin(write=True, db=self._dbs["meta"]) as txn:
            raw = txn.get(_SCHEMA_KEY)
            if raw is None:
                txn.put(_SCHEMA_KEY, str(SCHEMA_VERSION).encode())
                return
            version = int(bytes(raw))
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"storage.path: the store in {self.path} has schema version {version}, written by a newer"
                f" edgetwin; this edgetwin understands up to version {SCHEMA_VERSION}. Upgrade edgetwin"
                " or point storage.path elsewhere."
            )

    @contextlib.contextmanager
    def read(self) -> Iterator[ReadTxn]:
        """A read transaction. Do not ``await`` inside the block."""
        with self._env.begin(buffers=False) as txn:
            yield ReadTxn(txn, self._dbs)

    def commit_batch(self, ops: Sequence[Callable[[WriteTxn], T]]) -> list[Outcome[T]]:
        """Apply ``ops`` in one durable transaction (blocking: call it from a worker thread).

        Each op runs in a nested transaction; an op that raises is rolled back alone and its error is
        returned in its :class:`Outcome`. The outer transaction is committed (and fsync'd) once.

        Raises:
            MapFull: the batch does not fit; nothing was written. Grow the map and call again.
            StoreError: LMDB failed in a way that is not about size.
        """
        outcomes: list[Outcome[T]] = []
        try:
            txn = self._env.begin(write=True)
            try:
                for op in ops:
                    child = self._env.begin(write=True, parent=txn)
                    try:
                        value = op(WriteTxn(child, self._dbs))
                    except lmdb.MapFullError:
                        child.abort()
                        raise
                    except lmdb.Error as err:
                        child.abort()
                        outcomes.append(Outcome(error=StoreError(f"store write failed: {err}")))
                    except EdgeTwinError as err:
                        child.abort()
                        outcomes.append(Outcome(error=err))
                    except Exception as err:
                        # A bug in a write function must not take the other writers, or the writer, down.
                        child.abort()
                        logger.exception("write function failed")
                        outcomes.append(Outcome(error=err))
                    else:
                        child.commit()
                        outcomes.append(Outcome(value=value))
                txn.commit()
            except BaseException:
                txn.abort()
                raise
        except lmdb.MapFullError:
            raise MapFull from None
        except lmdb.Error as err:
            raise StoreError(f"store commit failed: {err}") from None
        with self._lock:
            self._commits += 1
            failed = sum(1 for o in outcomes if o.error is not None)
            self._failed += failed
            self._writes += len(outcomes) - failed
        return outcomes

    def grow(self) -> bool:
        """Double the map size, capped at the maximum. ``False`` when already at the maximum.

        Must be called when no transaction of this process is open: the writer calls it on the event loop
        thread between batches, where no read transaction can be open (reads never span an await).
        """
        current = int(self._env.info()["map_size"])
        if current >= self._max_map_size:
            return False
        new = min(current * 2, self._max_map_size)
        self._env.set_mapsize(new)
        logger.info("store map grown from %d MiB to %d MiB", current // MB, new // MB)
        return True

    def full_error(self) -> StoreFull:
        """The error every write of a batch gets when the map cannot grow any more."""
        return StoreFull(
            f"The store is full: it reached storage.max_map_size_mb ({self._max_map_size // MB} MiB)."
        )

    def statistics(self) -> StoreStatistics:
        """Counters since open, and the map's size and use."""
        info = self._env.info()
        stat = self._env.stat()
        used = (info["last_pgno"] + 1) * stat["psize"]
        with self._lock:
            return StoreStatistics(
                commits=self._commits,
                writes=self._writes,
                failed_writes=self._failed,
                map_size_bytes=int(info["map_size"]),
                max_map_size_bytes=self._max_map_size,
                used_bytes=int(used),
            )
