"""Live-channel figures (issue 6): the HTTP → WebSocket device → HTTP round trip, and thousands of live
requests pending against a silent device.

1. round trip: a device on ``/ws/2`` (``START-SEND-LIVE-COMMANDS``) answers every live retrieve at once;
   ``GET /api/2/things/<id>/attributes/a?channel=live`` is sent by one sequential keep-alive client (p50/p99
   latency) and by wrk with 32 connections (requests/s and wrk's latency percentiles);
2. pending: a device that reads but never answers; N live retrieves with ``timeout`` sent over ``--spread``
   seconds, first from one WebSocket session, then one each on N HTTP keep-alive connections opened
   beforehand; for each, how late the 408 arrives after its deadline (from the client's send time), and
   edgetwin's RSS before, at its peak while the requests are pending, and after.

All clients run in this process on trio over raw sockets, so the client costs little CPU per request.

Usage: python -m bench.live [--seconds 10] [--pending 5000] [--timeout 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from collections import deque

import orjson
import trio

from bench.common import rss_mb, start_edgetwin, stop
from bench.realtime import AUTH, CONFIG, RawWs, _drain, _pct, _read_head, _split

THING = "bench:live"
PATH = f"/api/2/things/{THING}/attributes/a"
LUA = """
wrk.method = "GET"
wrk.headers["Authorization"] = "{auth}"
"""


async def _device(address: str, *, answer: bool, ready: trio.Event, counter: list[int]) -> None:
    ws = await RawWs.connect(address)
    await ws.send("START-SEND-LIVE-COMMANDS")
    while True:
        frames = await ws.receive()
        if b"START-SEND-LIVE-COMMANDS:ACK" in frames:
            break
    ready.set()
    while True:
        answers = []
        for payload in await ws.receive():
            counter[0] += 1
            if not answer:
                continue
            command = orjson.loads(payload)
            answers.append(
                orjson.dumps(
                    {
                        "topic": command["topic"],
                        "path": command["path"],
                        "headers": {"correlation-id": command["headers"]["correlation-id"]},
                        "status": 200,
                        "value": 1,
                    }
                )
            )
        if answers:
            await ws.send(*answers)


async def _http_get(sock: trio.SocketStream, buf: bytearray, target: str) -> bytes:
    """One keep-alive request; returns the status line."""
    await sock.send_all(f"GET {target} HTTP/1.1\r\nHost: b\r\nAuthorization: {AUTH}\r\n\r\n".encode())
    head = await _read_head(sock, buf)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buf) < length:
        data = await sock.receive_some(65536)
        if not data:
            raise RuntimeError("closed")
        buf += data
    del buf[:length]
    return head.split(b"\r\n", 1)[0]


async def round_trip(address: str, seconds: float, sequential: int) -> None:
    ready = trio.Event()
    answered = [0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _device(address, answer=True, ready=ready, counter=answered))
        await ready.wait()
        sock = await trio.open_tcp_stream(*_split(address))
        buf = bytearray()
        latencies = []
        for i in range(sequential):
            if i and i % 500 == 0:  # Hypercorn closes a keep-alive connection after 1,000 requests
                await sock.aclose()
                sock, buf = await trio.open_tcp_stream(*_split(address)), bytearray()
            start = time.perf_counter()
            status = await _http_get(sock, buf, f"{PATH}?channel=live")
            latencies.append((time.perf_counter() - start) * 1000)
            assert b" 200" in status, status
        await sock.aclose()
        print(
            f"[1] live retrieve HTTP -> WebSocket device -> HTTP, one sequential client, {sequential} requests: "
            f"p50 {statistics.median(latencies):.2f} ms, p99 {_pct(latencies, 0.99):.2f} ms"
        )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
            lua.write(LUA.format(auth=AUTH))
        before = answered[0]
        out = await trio.to_thread.run_sync(
            lambda: (
                subprocess.run(
                    [
                        "wrk",
                        "-c32",
                        "-t2",
                        f"-d{int(seconds)}s",
                        "--latency",
                        "-s",
                        lua.name,
                        f"http://{address}{PATH}?channel=live",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        )
        await trio.Path(lua.name).unlink()
        rate = float(out.split("Requests/sec:")[1].split()[0])
        lat = {p: out.split(f" {p}%")[1].split()[0] for p in ("50", "99")}
        non2xx = "Non-2xx" in out
        print(
            f"    wrk, 32 connections, {seconds:g} s: {rate:,.0f} live round trips/s (latency p50 {lat['50']}, "
            f"p99 {lat['99']}); device answered {answered[0] - before}; non-2xx responses: {non2xx}"
        )
        nursery.cancel_scope.cancel()


async def _ws_pending(address: str, n: int, timeout_s: float, spread_s: float) -> list[float]:
    """One application session sends ``n`` live retrieves paced over ``spread_s``; lateness of each 408."""
    app = await RawWs.connect(address)
    sent: dict[str, float] = {}
    lateness: list[float] = []

    async def receive() -> None:
        while len(lateness) < n:
            for payload in await app.receive():
                answer = orjson.loads(payload)
                cid = answer["headers"].get("correlation-id")
                if cid in sent and answer.get("status") == 408:
                    lateness.append((time.perf_counter() - sent.pop(cid) - timeout_s) * 1000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        step = max(1, n // 100)
        for k in range(0, n, step):
            frames = []
            for i in range(k, min(n, k + step)):
                cid = f"p{i}"
                sent[cid] = time.perf_counter()
                frames.append(
                    orjson.dumps(
                        {
                            "topic": f"{THING.replace(':', '/')}/things/live/commands/retrieve",
                            "path": "/attributes/a",
                            "headers": {"correlation-id": cid, "timeout": f"{int(timeout_s * 1000)}ms"},
                        }
                    )
                )
            await app.send(*frames)
            await trio.sleep(spread_s / 100)
    await app.sock.aclose()
    return lateness


async def _http_pending(
    address: str, n: int, timeout_s: float, spread_s: float
) -> tuple[list[float], dict[bytes, int]]:
    """``n`` keep-alive HTTP connections, opened first; then one live retrieve each, paced over ``spread_s``."""
    lateness: list[float] = []
    statuses: dict[bytes, int] = {}
    socks = []
    for _ in range(n):
        socks.append(await trio.open_tcp_stream(*_split(address)))

    async def one(sock: trio.SocketStream) -> None:
        async with sock:
            start = time.perf_counter()
            status = await _http_get(
                sock, bytearray(), f"{PATH}?channel=live&timeout={int(timeout_s * 1000)}ms"
            )
            lateness.append((time.perf_counter() - start - timeout_s) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    async with trio.open_nursery() as nursery:
        step = max(1, n // 100)
        for k in range(0, n, step):
            for sock in socks[k : k + step]:
                nursery.start_soon(one, sock)
            await trio.sleep(spread_s / 100)
    return lateness, statuses


def _rss(before: float, peak: float, after: float) -> str:
    return f"    edgetwin RSS: {before:.1f} MB before, peak {peak:.1f} MB (+{peak - before:.1f}), {after:.1f} after"


def _late(lateness: list[float]) -> str:
    within = sum(1 for x in lateness if x <= 200)
    return (
        f"408 after the deadline: p50 {statistics.median(lateness):.1f} ms, p99 {_pct(lateness, 0.99):.1f} ms, "
        f"max {max(lateness):.1f} ms; within 200 ms: {within}/{len(lateness)}"
    )


async def pending(address: str, pid: int, n: int, timeout_s: float, spread_s: float) -> None:
    ready = trio.Event()
    received = [0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _device(address, answer=False, ready=ready, counter=received))
        await ready.wait()
        peak = [0.0]

        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], rss_mb(pid))
                await trio.sleep(0.05)

        before = rss_mb(pid)
        nursery.start_soon(watch)
        lateness = await _ws_pending(address, n, timeout_s, spread_s)
        after = rss_mb(pid)
        print(
            f"[2] {n} live requests from one WebSocket session, sent over {spread_s:g} s, pending against a silent"
            f" device (timeout {timeout_s:g} s; the device got {received[0]}): {_late(lateness)}"
        )
        print(_rss(before, peak[0], after))
        received[0] = 0
        before = peak[0] = rss_mb(pid)
        lateness, statuses = await _http_pending(address, n, timeout_s, spread_s)
        after = rss_mb(pid)
        print(
            f"[3] {n} live requests on {n} HTTP connections (opened first), sent over {spread_s:g} s (the device got"
            f" {received[0]}; {dict((k.decode(), v) for k, v in statuses.items())}): {_late(lateness)}"
        )
        print(_rss(before, peak[0], after))
        nursery.cancel_scope.cancel()


async def run(args: argparse.Namespace, address: str, pid: int) -> None:
    sock = await trio.open_tcp_stream(*_split(address))
    body = b'{"attributes":{"a":0}}'
    await sock.send_all(
        f"PUT /api/2/things/{THING} HTTP/1.1\r\nHost: b\r\nAuthorization: {AUTH}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    head = await _read_head(sock, bytearray())
    assert b" 201" in head.split(b"\r\n")[0], head
    await sock.aclose()
    await round_trip(address, args.seconds, args.sequential)
    await pending(address, pid, args.pending, args.timeout, args.spread)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="wrk duration")
    parser.add_argument("--sequential", type=int, default=2000, help="requests of the sequential client")
    parser.add_argument("--pending", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=5)
    parser.add_argument(
        "--spread", type=float, default=1, help="seconds over which the pending requests are sent"
    )
    args = parser.parse_args()
    proc, http, _, data = start_edgetwin(CONFIG)
    log: deque[str] = deque(maxlen=2000)
    assert proc.stderr is not None
    threading.Thread(target=_drain, args=(proc.stderr, log), daemon=True).start()
    try:
        trio.run(run, args, http, proc.pid)
    finally:
        stop(proc, data)
        problems = [line.strip() for line in log if "WARNING" in line or "ERROR" in line]
        print(
            f"server log: {len(problems)} warnings/errors" + (f"; last: {problems[-1]}" if problems else "")
        )


if __name__ == "__main__":
    main()
