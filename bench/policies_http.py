"""Policy enforcement figures (issue 4), against an edgetwin this script starts.

- ``GET /api/2/things/{id}`` by a subject with a partial policy (a grant and a revoke below it) vs the
  unrestricted owner, with wrk at 32 connections, interleaved rounds (medians);
- search over 10,000 things where the caller may read 1 in 10: p50 / p95 for ``size(25)`` pages and a
  count.

Usage: python -m bench.policies_http [--seconds 8] [--things 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time

import httpx

from bench.common import start_edgetwin, stop, wrk

CONFIG = """
[[auth.users]]
name = "owner"
password = "owner"
[[auth.users]]
name = "observer"
password = "observer"
"""


def _auth(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{user}".encode()).decode()


def _entry(subject: str, resources: dict[str, tuple[list[str], list[str]]]) -> dict[str, object]:
    return {
        "subjects": {subject: {"type": "bench"}},
        "resources": {k: {"grant": g, "revoke": r} for k, (g, r) in resources.items()},
    }


OWNER = _entry("nginx:owner", {"thing:/": (["READ", "WRITE"], []), "policy:/": (["READ", "WRITE"], [])})
SHARED = {
    "entries": {
        "owner": OWNER,
        "observer": _entry(
            "nginx:observer",
            {
                "thing:/features": (["READ"], []),
                "thing:/features/temperature/properties/calibration": ([], ["READ"]),
            },
        ),
    }
}
THING = {
    "attributes": {"site": "north", "serial": 1, "model": "sensor"},
    "features": {
        "temperature": {
            "properties": {"value": 21.5, "unit": "C", "calibration": {"offset": 0.3, "by": "x"}}
        },
        "humidity": {"properties": {"value": 40}},
    },
}


def _latencies(client: httpx.Client, url: str, runs: int = 50) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.get(url).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--things", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proc, http, _, data = start_edgetwin(CONFIG)
    base = f"http://{http}"
    try:
        with httpx.Client(base_url=base, headers={"Authorization": _auth("owner")}) as owner:
            owner.put("/api/2/policies/bench:shared", json=SHARED).raise_for_status()
            owner.put(
                "/api/2/things/bench:hot", json={**THING, "policyId": "bench:shared"}
            ).raise_for_status()
            url = f"{base}/api/2/things/bench:hot"
            rounds: dict[str, list[float]] = {"owner": [], "observer": []}
            for _ in range(args.rounds):
                for who in rounds:
                    rounds[who].append(
                        wrk(url, seconds=args.seconds, headers=(f"Authorization: {_auth(who)}",))
                    )
            o, p = statistics.median(rounds["owner"]), statistics.median(rounds["observer"])
            per_round = ", ".join(
                f"{b / a * 100:.0f}" for a, b in zip(rounds["owner"], rounds["observer"], strict=True)
            )
            print(f"GET thing as owner (unrestricted):   {o:8.0f} req/s (median of {args.rounds})")
            share = p / o * 100
            print(
                f"GET thing as observer (partial):     {p:8.0f} req/s  ({share:.0f} % of owner; rounds: {per_round} %)"
            )

            start = time.perf_counter()
            for i in range(args.things):
                policy = {"policyId": "bench:shared"} if i % 10 == 0 else {}
                owner.put(f"/api/2/things/bench:t{i:05d}", json={**THING, **policy}).raise_for_status()
            took = time.perf_counter() - start
            print(f"populated {args.things} things (1 in 10 readable by the observer) in {took:.1f} s")
        with httpx.Client(base_url=base, headers={"Authorization": _auth("observer")}) as observer:
            q = "/api/2/search/things"
            assert len(observer.get(f"{q}?option=size(25)").json()["items"]) == 25
            for name, path in [
                ("observer search, size(25)", f"{q}?option=size(25)"),
                (
                    "observer search eq, size(25)",
                    f"{q}?filter=eq(features/humidity/properties/value,40)&option=size(25)",
                ),
                ("observer count", f"{q}/count"),
            ]:
                p50, p95 = _latencies(observer, path)
                print(f"{name:<36} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")
    finally:
        stop(proc, data)


if __name__ == "__main__":
    main()
