"""Durable writes per second through the single writer with 1, 16 and 256 concurrent writers.

Runs the real LMDB store and group-commit writer in-process (the store has no HTTP surface of its own),
on a fresh store in a temp dir on the same disk edgetwin would use. Each commit is one fsync, so commits
per second is fsyncs per second.

Usage: python -m bench.store [--seconds 5] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial

import trio

from edgetwin.core.writer import StoreWriter
from edgetwin.store import Store, WriteTxn


def _op(key: bytes, value: bytes) -> Callable[[WriteTxn], None]:
    def op(txn: WriteTxn) -> None:
        txn.put("kv", key, value)

    return op


async def measure(store: Store, writers: int, seconds: float) -> tuple[float, float, float]:
    writer = StoreWriter(store, queue_size=4096, max_batch=512)
    before = store.statistics()
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.serve)
        deadline = trio.current_time() + seconds

        async def client(i: int) -> None:
            n = 0
            while trio.current_time() < deadline:
                await writer.submit(_op(b"w%d-%d" % (i, n % 1000), b"x" * 100))
                n += 1

        start = trio.current_time()
        async with trio.open_nursery() as clients:
            for i in range(writers):
                clients.start_soon(client, i)
        elapsed = trio.current_time() - start
        writer.close()
    after = store.statistics()
    writes = after.writes - before.writes
    commits = after.commits - before.commits
    return writes / elapsed, commits / elapsed, writes / max(commits, 1)


def fsync_latency_ms(directory: str) -> float:
    """Median time of write + fsync of 4 KiB on this disk: the cost group commit shares."""
    times = []
    with open(os.path.join(directory, "fsync-probe"), "wb") as f:
        for _ in range(200):
            start = time.perf_counter()
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


async def run(seconds: float, directory: str | None) -> None:
    with (
        tempfile.TemporaryDirectory(dir=directory) as path,
        Store.open(path, map_size_mb=256, max_map_size_mb=1024) as store,
    ):
        print(f"raw fsync on this disk: {fsync_latency_ms(path):.3f} ms (median of 200)")
        rates = {}
        for writers in (1, 16, 256):
            rate, commits, per_commit = await measure(store, writers, seconds)
            rates[writers] = rate
            print(
                f"{writers:>4} writers: {rate:>9.0f} durable writes/s, {commits:>6.0f} commits (fsyncs)/s,"
                f" {per_commit:6.1f} writes per commit"
            )
        print(f"256 writers vs 1 writer: {rates[256] / rates[1]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--dir", default=None, help="where to put the temporary store")
    args = parser.parse_args()
    trio.run(partial(run, args.seconds, args.dir))


if __name__ == "__main__":
    main()
