"""Search latency on 10,000 things: selective ``eq``, match-all pages, counts and an attribute sort.

Builds a fresh store in a temp dir through :func:`edgetwin.store.things.put_thing` (batches of 500 in
one transaction each, as the writer would group them), then times each query in its own read
transaction, in-process, and prints p50/p95 in milliseconds. Targets: selective ``eq`` p50 < 20 ms,
match-all ``size(25)`` p50 < 30 ms, ``count`` < 50 ms.

Usage: python -m bench.search [--things 10000] [--runs 50] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from edgetwin.core.search import count, search
from edgetwin.rql import parse_filter, parse_options
from edgetwin.store import Store, WriteTxn
from edgetwin.store.things import put_thing

NOW = "2024-05-01T10:00:00Z"
BATCH = 500
KINDS = ["lamp", "fan", "sensor", "door", "window", "heater", "pump", "valve", "meter", "camera"]


def make_thing(i: int) -> dict[str, Any]:
    """A plausible thing: ~20 indexed leaves, 10 namespaces, 10 kinds."""
    thing_id = f"org.site{i % 10}:device-{i:06d}"
    return {
        "thingId": thing_id,
        "policyId": thing_id,
        "definition": f"org.example:{KINDS[i % 10]}:1.0.0",
        "attributes": {
            "serial": i,
            "kind": KINDS[i % 10],
            "name": f"Device number {i}",
            "location": {
                "building": f"B{i % 7}",
                "floor": i % 12,
                "lat": 48.0 + i / 1e5,
                "lon": 11.5 - i / 1e5,
            },
            "tags": ["edge", KINDS[i % 10], f"zone-{i % 25}"],
        },
        "features": {
            "status": {"properties": {"online": i % 3 != 0, "rssi": -40 - i % 50, "firmware": "1.2.3"}},
            "telemetry": {"properties": {"temperature": 15 + (i * 7919) % 200 / 10, "humidity": i % 100}},
        },
        "_revision": 1 + i % 5,
        "_created": f"2024-01-01T00:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z",
        "_modified": f"2024-04-01T00:{i // 600 % 60:02d}:{i // 10 % 60:02d}Z",
    }


def _put(things: list[dict[str, Any]]) -> Callable[[WriteTxn], None]:
    def op(w: WriteTxn) -> None:
        for thing in things:
            put_thing(w, thing, previous=None)

    return op


def timed(store: Store, runs: int, query: Callable[[Any], object]) -> tuple[float, float, object]:
    samples = []
    result: object = None
    for _ in range(runs):
        start = time.perf_counter()
        with store.read() as r:
            result = query(r)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--things", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--dir", default=None, help="where to put the temporary store")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(dir=args.dir) as path,
        Store.open(path, map_size_mb=256, max_map_size_mb=1024) as store,
    ):
        start = time.perf_counter()
        for first in range(0, args.things, BATCH):
            batch = [make_thing(i) for i in range(first, min(first + BATCH, args.things))]
            for outcome in store.commit_batch([_put(batch)]):
                if outcome.error is not None:
                    raise outcome.error
        build = time.perf_counter() - start
        used = store.statistics().used_bytes / 1024 / 1024
        print(f"built {args.things} things in {build:.1f} s ({used:.1f} MiB used)")

        serial = args.things // 2
        selective = parse_filter(f"eq(attributes/serial,{serial})")
        kind = parse_filter('eq(attributes/kind,"pump")')
        all25 = parse_options("size(25)")
        cases: list[tuple[str, Callable[[Any], object]]] = [
            (
                "selective eq, size(25)",
                lambda r: search(r, filter=selective, namespaces=None, options=all25, now=NOW),
            ),
            ("match-all size(25)", lambda r: search(r, filter=None, namespaces=None, options=all25, now=NOW)),
            (
                "match-all size(200), one namespace",
                lambda r: search(
                    r,
                    filter=None,
                    namespaces=frozenset({"org.site3"}),
                    options=parse_options("size(200)"),
                    now=NOW,
                ),
            ),
            ("count everything", lambda r: count(r, filter=None, namespaces=None, now=NOW)),
            ("count eq (1/10 match)", lambda r: count(r, filter=kind, namespaces=None, now=NOW)),
            (
                "count everything, visible hook",
                lambda r: count(r, filter=None, namespaces=None, now=NOW, visible=lambda thing: thing),
            ),
            (
                "range gt on temperature, size(25)",
                lambda r: search(
                    r,
                    filter=parse_filter("gt(features/telemetry/properties/temperature,33.5)"),
                    namespaces=None,
                    options=all25,
                    now=NOW,
                ),
            ),
            (
                "sort(-attributes/serial), size(25)",
                lambda r: search(
                    r,
                    filter=None,
                    namespaces=None,
                    options=parse_options("sort(-attributes/serial),size(25)"),
                    now=NOW,
                ),
            ),
            (
                "count not() (full scan, no index)",
                lambda r: count(
                    r, filter=parse_filter('not(eq(attributes/kind,"pump"))'), namespaces=None, now=NOW
                ),
            ),
            (
                "eq (1/10) sort(-attributes/serial) size(25)",
                lambda r: search(
                    r,
                    filter=kind,
                    namespaces=None,
                    options=parse_options("sort(-attributes/serial),size(25)"),
                    now=NOW,
                ),
            ),
            (
                "fallback ne (no index), size(25)",
                lambda r: search(
                    r,
                    filter=parse_filter('ne(attributes/kind,"pump")'),
                    namespaces=None,
                    options=all25,
                    now=NOW,
                ),
            ),
        ]
        print(f"{'query':<44} {'p50 ms':>8} {'p95 ms':>8}  result")
        for name, query in cases:
            p50, p95, result = timed(store, args.runs, query)
            shown = result if isinstance(result, int) else f"{len(getattr(result, 'items', []))} items"
            print(f"{name:<44} {p50:>8.2f} {p95:>8.2f}  {shown}")


if __name__ == "__main__":
    main()
