"""Messaging API figures (issue 8), against an edgetwin process this script starts.

- sleepy polls: ``GET /data/v0/single/...`` with ``Connection: close``, so every request is a new TCP
  connection (wrk, 32 connections, a Lua script that sets the header), beside ``GET /health`` the same way
  (what a new connection costs the server without the messaging API);
- ``POST /data/v0/single/...`` retained (durable before the 200), keep-alive, 32 clients (wrk), rotating over
  1,000 topics;
- first, ``POST /data/v0/multi`` over 10,000 retained topics ``/tt/weather/<a>/<b>`` (a, b in 00..99): the filter
  ``/tt/weather/42/#`` returns 100 of them, ``#`` all 10,000 (sequential keep-alive requests, p50 / p95).

The 10,000 values are posted through the API itself, 64 per ``multi`` request (the ``publish`` list).

Usage: python -m bench.messaging [--seconds 10] [--rounds 3] [--runs 200]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time

import httpx

from bench.common import start_edgetwin, stop, wrk

USER, PASSWORD = "bench", "bench"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CONFIG = (
    f'[[auth.users]]\nname = "{USER}"\npassword = "{PASSWORD}"\npublish = ["/tt/#"]\nsubscribe = ["#"]\n'
    '[messaging]\nstreams = ["weather"]\n'
)
POLLED = "/data/v0/single/tt/weather/42/17"

# Every request announces Connection: close: the server closes after the response, wrk reconnects.
SLEEPY_LUA = 'wrk.headers["Connection"] = "close"\nwrk.headers["Accept"] = "text/plain"\n'
# A retained reading to one of 1,000 topics per request, keep-alive.
POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
local n = 0
request = function()
  n = n + 1
  local path = string.format("/data/v0/single/tt/weather/post/%d", n % 1000)
  return wrk.format(nil, path, nil, string.format('{"t": %d}', n))
end
"""


def _lua(text: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(text)
    return lua.name


def _populate(client: httpx.Client) -> None:
    start = time.perf_counter()
    topics = [f"/tt/weather/{a:02d}/{b:02d}" for a in range(100) for b in range(100)]
    for i in range(0, len(topics), 64):
        publish = [
            {"topic": t, "payload": f'{{"reading": {n}}}'} for n, t in enumerate(topics[i : i + 64], i)
        ]
        r = client.post(
            "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": [], "publish": publish}
        )
        r.raise_for_status()
    print(
        f"posted {len(topics)} retained values in {time.perf_counter() - start:.1f} s (64 per multi request)"
    )


def _multi_latency(client: httpx.Client, topic_filter: str, runs: int, expected: int) -> tuple[float, float]:
    body = {"content-type": "text/plain", "topic-filters": [topic_filter]}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        r = client.post("/data/v0/multi", json=body)
        times.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
        assert len(r.json()) == expected, len(r.json())
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    proc, http, _, data = start_edgetwin(CONFIG)
    base = f"http://{http}"
    auth = (f"Authorization: {AUTH}",)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": AUTH}) as client:
            _populate(client)
            time.sleep(0.5)
            for name, topic_filter, expected in (
                ("multi /tt/weather/42/# (100 of 10,000)", "/tt/weather/42/#", 100),
                ("multi # (all 10,000)", "#", 10_000),
            ):
                runs = args.runs if expected <= 100 else max(10, args.runs // 10)
                p50, p95 = _multi_latency(client, topic_filter, runs, expected)
                print(f"{name:<42} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms  ({runs} sequential requests)")
            sleepy, post = _lua(SLEEPY_LUA), _lua(POST_LUA)
            # Interleaved rounds, medians: on a 2-core machine wrk shares the CPU with the server.
            rounds: dict[str, list[float]] = {"health": [], "sleepy": [], "post": []}
            for _ in range(args.rounds):
                rounds["health"].append(wrk(f"{base}/health", seconds=args.seconds, script=sleepy))
                rounds["sleepy"].append(
                    wrk(f"{base}{POLLED}", seconds=args.seconds, script=sleepy, headers=auth)
                )
                rounds["post"].append(wrk(f"{base}/", seconds=args.seconds, script=post, headers=auth))
            for name, key in (
                ("GET /health, new connection each", "health"),
                ("sleepy GET single, new connection each", "sleepy"),
                ("POST single retained durable, keep-alive", "post"),
            ):
                per_round = ", ".join(f"{r:.0f}" for r in rounds[key])
                print(
                    f"{name:<42} {statistics.median(rounds[key]):8.0f} req/s  "
                    f"(32 connections, median of {args.rounds}: {per_round})"
                )
    finally:
        stop(proc, data)


if __name__ == "__main__":
    main()
