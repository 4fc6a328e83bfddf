"""Start to healthy, and idle RSS, of ``edgetwin serve`` (issue 2 figures).

Usage: python -m bench.startup [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from bench.common import rss_mb, start_edgetwin, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ready, healthy, rss = [], [], []
    for _ in range(args.runs):
        t0 = time.monotonic()
        proc, http, to_ready, data = start_edgetwin()
        while httpx.get(f"http://{http}/health").status_code != 200:
            time.sleep(0.01)
        healthy.append(time.monotonic() - t0)
        ready.append(to_ready)
        time.sleep(2)  # idle
        rss.append(rss_mb(proc.pid))
        stop(proc, data)
    print(f"start to ready (log line), median of {args.runs}: {statistics.median(ready) * 1000:.0f} ms")
    print(f"start to /health 200, median of {args.runs}:    {statistics.median(healthy) * 1000:.0f} ms")
    print(f"idle RSS, median of {args.runs}:                {statistics.median(rss):.1f} MB")


if __name__ == "__main__":
    main()
