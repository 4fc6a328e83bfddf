"""``GET /health`` requests per second with wrk at 32 connections, beside a bare ASGI app on the same
Hypercorn trio worker in the same run (issue 2 figure: edgetwin's overhead over the bare server).

Usage: python -m bench.http_health [--seconds 10] [--url http://127.0.0.1:8080]  (default: starts one)
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time

import httpx

from bench.common import start_edgetwin, stop, wrk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--url", help="a running edgetwin (default: start one)")
    args = parser.parse_args()

    bare_addr = f"127.0.0.1:{_free_port()}"
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare_app", bare_addr])
    proc = data = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        proc, http, _, data = start_edgetwin()
        url = f"http://{http}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://{bare_addr}/")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        bare_rps = wrk(f"http://{bare_addr}/health", seconds=args.seconds)
        edge_rps = wrk(f"{url}/health", seconds=args.seconds)
    finally:
        bare.terminate()
        bare.wait()
        if proc is not None:
            stop(proc, data)
    print(f"bare ASGI on hypercorn (trio): {bare_rps:8.0f} req/s")
    print(f"edgetwin GET /health:          {edge_rps:8.0f} req/s")
    ratio = edge_rps / bare_rps * 100
    print(f"edgetwin / bare: {ratio:.0f} %  (overhead {100 - ratio:.0f} %)")


if __name__ == "__main__":
    main()
