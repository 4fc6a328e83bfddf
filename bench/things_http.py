"""Things API figures (issue 3), against a running edgetwin or one this script starts.

- ``GET /api/2/things/{id}`` and durable ``PUT .../features/{f}/properties/{p}`` with wrk at 32
  connections, beside a bare ASGI app on the same Hypercorn trio worker in the same run;
- search over 10,000 things through HTTP: a selective ``eq`` filter, a match-all ``size(25)`` page, and
  counts (p50 / p95 of sequential requests).

Usage: python -m bench.things_http [--seconds 10] [--things 10000]
"""

from __future__ import annotations

import argparse
import base64
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from bench.common import start_edgetwin, stop, wrk

USER, PASSWORD = "bench", "bench"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CONFIG = f'[[auth.users]]\nname = "{USER}"\npassword = "{PASSWORD}"\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _latencies(client: httpx.Client, url: str, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def _populate(client: httpx.Client, n: int) -> None:
    start = time.perf_counter()
    with httpx.Client(base_url=str(client.base_url), headers=client.headers, limits=httpx.Limits()) as c:
        for i in range(n):
            body = {
                "attributes": {
                    "serial": i,
                    "site": f"site-{i % 100}",
                    "model": "sensor" if i % 2 else "meter",
                },
                "features": {"temperature": {"properties": {"value": i % 40, "unit": "C"}}},
            }
            c.put(f"/api/2/things/bench:thing-{i:05d}", json=body).raise_for_status()
    print(f"populated {n} things in {time.perf_counter() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--things", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    proc, http, _, data = start_edgetwin(CONFIG)
    base = f"http://{http}"
    bare_addr = f"127.0.0.1:{_free_port()}"
    bare = subprocess.Popen([sys.executable, "-m", "bench.bare_app", bare_addr])
    try:
        with httpx.Client(base_url=base, headers={"Authorization": AUTH}) as client:
            client.put(
                "/api/2/things/bench:hot", json={"features": {"f": {"properties": {"p": 0}}}}
            ).raise_for_status()
            time.sleep(0.5)
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
                lua.write(
                    'wrk.method = "PUT"\nwrk.body = "42"\nwrk.headers["Content-Type"] = "application/json"\n'
                )
            auth_header = (f"Authorization: {AUTH}",)
            # Interleaved rounds, medians: on a 2-core machine wrk shares the CPU with the server, and
            # one back-to-back run swings by several percent.
            rounds: dict[str, list[float]] = {"bare": [], "get": [], "put": []}
            for _ in range(args.rounds):
                rounds["bare"].append(wrk(f"http://{bare_addr}/", seconds=args.seconds))
                rounds["get"].append(
                    wrk(f"{base}/api/2/things/bench:hot", seconds=args.seconds, headers=auth_header)
                )
                rounds["put"].append(
                    wrk(
                        f"{base}/api/2/things/bench:hot/features/f/properties/p",
                        seconds=args.seconds,
                        script=lua.name,
                        headers=auth_header,
                    )
                )
            bare_rps = statistics.median(rounds["bare"])
            print(
                f"bare ASGI on hypercorn (trio):       {bare_rps:8.0f} req/s (median of {args.rounds} rounds)"
            )
            for name, key in (("GET /api/2/things/{id}", "get"), ("PUT .../properties/{p} (durable)", "put")):
                rps = statistics.median(rounds[key])
                ratios = ", ".join(
                    f"{r / b * 100:.0f}" for r, b in zip(rounds[key], rounds["bare"], strict=True)
                )
                print(
                    f"{name:<36} {rps:8.0f} req/s  ({rps / bare_rps * 100:.0f} % of bare; per round: {ratios} %)"
                )

            _populate(client, args.things)
            q = "/api/2/search/things"
            for name, url in [
                ("search eq (selective), size 25", f"{q}?filter=eq(attributes/serial,4242)"),
                ("search match-all, size(25)", f"{q}?option=size(25)"),
                (
                    "search eq 1-in-100 + sort, size 25",
                    f"{q}?filter=eq(attributes/site,%22site-7%22)&option=sort(-attributes/serial),size(25)",
                ),
                ("count all", f"{q}/count"),
                ("count eq 1-in-2", f"{q}/count?filter=eq(attributes/model,%22meter%22)"),
            ]:
                p50, p95 = _latencies(client, url, 50)
                print(f"{name:<38} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")
    finally:
        bare.terminate()
        bare.wait()
        stop(proc, data)


if __name__ == "__main__":
    main()
