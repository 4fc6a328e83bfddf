"""Realtime figures: WebSocket command pipelining, event fan-out to WebSocket and SSE, stuck subscribers.

All clients run in this one Python process on trio, over raw sockets (a minimal WebSocket framing and a
plain HTTP/1.0 SSE reader), so that the client costs as little CPU per message as possible.

1. pipelined ``modify`` commands on one WebSocket: durable commands/s, every status 204, every
   correlation id back;
2. fan-out: WebSocket and SSE subscribers on one thing while paced producers drive changes whose value is
   the send time (``time.time()``), so receivers compute commit-to-receipt latency; expected vs received
   events per subscriber, achieved change rate, edgetwin RSS before/after, server and client CPU;
3. a WebSocket and an SSE subscriber that never read while changes flow: RSS, whether a normal subscriber
   still gets every event, and whether the stuck ones are disconnected.

Usage: python -m bench.realtime [--seconds 10] [--commands 20000] [--fanout 1000:100:100,50:100:100]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import trio

from bench.common import rss_mb, start_edgetwin, stop

USER, PASSWORD = "bench", "bench"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
CONFIG = f'[[auth.users]]\nname = "{USER}"\npassword = "{PASSWORD}"\n'
THING = "bench:rt"
TOPIC = "bench/rt/things/twin/commands"
PROP = "/features/f/properties/p"
EVENT_TOPIC = "bench/rt/things/twin/events/modified"
INFLIGHT = 16
"""Unanswered commands a fan-out producer may have: beyond that it waits, instead of queueing in TCP."""


class Closed(Exception):
    """The peer closed the connection."""


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


async def _read_head(sock: trio.SocketStream, buf: bytearray) -> bytes:
    while b"\r\n\r\n" not in buf:
        data = await sock.receive_some(65536)
        if not data:
            raise Closed("closed during the handshake")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    buf[:] = rest
    return head


def _frame(text: str | bytes) -> bytes:
    """A client text frame, masked with a zero key (legal, and the payload needs no XOR)."""
    payload = text.encode() if isinstance(text, str) else text
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


class RawWs:
    """A minimal ``/ws/2`` client: text frames out, every complete frame of one read in."""

    def __init__(self, sock: trio.SocketStream, buf: bytearray) -> None:
        self.sock = sock
        self.buf = buf
        self.closed = False
        self._sending = trio.StrictFIFOLock()
        self._pongs: list[bytes] = []

    @classmethod
    async def connect(cls, address: str) -> RawWs:
        sock = await trio.open_tcp_stream(*_split(address))
        request = (
            f"GET /ws/2 HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: {AUTH}\r\n\r\n"
        )
        await sock.send_all(request.encode())
        buf = bytearray()
        head = await _read_head(sock, buf)
        if not head.startswith(b"HTTP/1.1 101"):
            await sock.aclose()
            raise RuntimeError(f"WebSocket upgrade refused: {head[:80]!r}")
        return cls(sock, buf)

    async def send(self, *texts: str | bytes) -> None:
        async with self._sending:
            await self.sock.send_all(b"".join(_frame(t) for t in texts))

    def _parse(self) -> list[bytes]:
        buf, out, pos, n = self.buf, [], 0, len(self.buf)
        pongs = []
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, hdr = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < hdr + length:
                break
            payload = bytes(buf[pos + hdr : pos + hdr + length])
            pos += hdr + length
            opcode = b0 & 0x0F
            if opcode in (0, 1):  # the server never fragments; a continuation is appended as is
                out.append(payload)
            elif opcode == 8:
                self.closed = True
            elif opcode == 9:
                pongs.append(payload)
        del buf[:pos]
        self._pongs = pongs
        return out

    async def receive(self) -> list[bytes]:
        """The text payloads of the next read; ``Closed`` once the server closed (after what it sent)."""
        while True:
            if self.closed:
                raise Closed("close frame")
            data = await self.sock.receive_some(262144)
            if not data:
                raise Closed("EOF")
            self.buf += data
            frames = self._parse()
            for payload in self._pongs:
                async with self._sending:
                    await self.sock.send_all(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            if frames:
                return frames


class RawSse:
    """An SSE client over HTTP/1.0 (so the body is the bare stream until the server closes)."""

    def __init__(self, sock: trio.SocketStream, buf: bytearray) -> None:
        self.sock = sock
        self.buf = buf
        self.comments: list[bytes] = []

    @classmethod
    async def connect(cls, address: str) -> RawSse:
        sock = await trio.open_tcp_stream(*_split(address))
        request = (
            f"GET /api/2/things?ids={THING} HTTP/1.0\r\nHost: {address}\r\n"
            f"Accept: text/event-stream\r\nAuthorization: {AUTH}\r\n\r\n"
        )
        await sock.send_all(request.encode())
        buf = bytearray()
        head = await _read_head(sock, buf)
        if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
            await sock.aclose()
            raise RuntimeError(f"SSE refused: {head[:80]!r}")
        return cls(sock, buf)

    async def receive(self) -> list[bytes]:
        """The ``data:`` payloads of the next read (comments are kept aside); ``Closed`` at EOF."""
        while True:
            data = await self.sock.receive_some(262144)
            if not data:
                raise Closed("EOF")
            self.buf += data
            end = self.buf.rfind(b"\n\n")
            if end < 0:
                continue
            blocks = bytes(self.buf[:end]).split(b"\n\n")
            del self.buf[: end + 2]
            out = []
            for block in blocks:
                if block.startswith(b"data:"):
                    out.append(block[5 : block.index(b"\n")] if b"\n" in block else block[5:])
                elif block.startswith(b":") and len(block) > 1:
                    self.comments.append(block)
            if out:
                return out


@dataclass
class Subscriber:
    kind: str
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    ended: str | None = None


def _ws_value(payload: bytes) -> float | None:
    if not payload.startswith(b"{"):
        return None
    obj = orjson.loads(payload)
    if obj.get("topic") == EVENT_TOPIC and obj.get("path") == PROP:
        return float(obj["value"])
    return None


def _sse_value(payload: bytes) -> float | None:
    obj = orjson.loads(payload)
    try:
        return float(obj["features"]["f"]["properties"]["p"])
    except (KeyError, TypeError):
        return None


async def _subscribe_ws(address: str) -> RawWs:
    ws = await RawWs.connect(address)
    await ws.send("START-SEND-EVENTS")
    with trio.fail_after(10):
        while True:
            frames = await ws.receive()
            if b"START-SEND-EVENTS:ACK" in frames:
                return ws


async def _consume(conn: RawWs | RawSse, sub: Subscriber) -> None:
    parse = _ws_value if isinstance(conn, RawWs) else _sse_value
    lat = sub.latencies
    try:
        while True:
            payloads = await conn.receive()
            now = time.time()
            for payload in payloads:
                value = parse(payload)
                if value is not None:
                    sub.received += 1
                    lat.append(now - value)
                elif isinstance(conn, RawWs) and payload.startswith(b"{"):
                    obj = orjson.loads(payload)
                    if "status" in obj:
                        sub.ended = f"error {obj['status']} {obj.get('value', {}).get('error')}"
    except Closed as err:
        comments = getattr(conn, "comments", [])
        sub.ended = sub.ended or (comments[-1].decode()[:80] if comments else str(err))
    except (trio.BrokenResourceError, OSError) as err:
        sub.ended = f"{type(err).__name__}"


@dataclass
class Production:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    started: float = 0.0
    finished: float = 0.0


async def _produce(address: str, rate: float, seconds: float, limit: int | None, out: Production) -> None:
    """Paced ``modify`` commands on one WebSocket (pipelined), value = the send time."""
    ws = await RawWs.connect(address)
    sent = 0
    got = 0

    async def responses() -> None:
        nonlocal got
        while True:
            for payload in await ws.receive():
                got += 1
                if orjson.loads(payload).get("status") == 204:
                    out.ok += 1
                else:
                    out.failed += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(responses)
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds or (limit is not None and sent >= limit):
                break
            # Closed loop: at most INFLIGHT commands unanswered, so a send time is close to its commit time
            # even when edgetwin cannot keep up with the target rate (the achieved rate then shows it).
            due = min(int(rate * elapsed) + 1, got + INFLIGHT)
            if limit is not None:
                due = min(due, limit)
            if due > sent:
                frames = [
                    orjson.dumps(
                        {
                            "topic": f"{TOPIC}/modify",
                            "path": PROP,
                            "value": time.time(),
                            "headers": {"correlation-id": f"{id(out)}-{i}"},
                        }
                    )
                    for i in range(sent, due)
                ]
                await ws.send(*frames)
                sent = due
                out.sent += len(frames)
            await trio.sleep(0.005)
        while got < sent:  # noqa: ASYNC110 - polling a counter
            await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    await ws.sock.aclose()


async def _drive(address: str, rate: float, seconds: float, total: int | None, producers: int) -> Production:
    out = Production(started=time.monotonic())
    share = None if total is None else -(-total // producers)
    with trio.fail_after(seconds + 120):
        async with trio.open_nursery() as nursery:
            for k in range(producers):
                limit = None if share is None or total is None else min(share, total - k * share)
                nursery.start_soon(_produce, address, rate / producers, seconds, limit, out)
    out.finished = time.monotonic()
    return out


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _tcp_state(server_port: int, client_port: int) -> str:
    """The server-side socket's state for a client port, from /proc/net/tcp (no reads on our side)."""
    names = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "08": "CLOSE_WAIT"}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, state = parts[1], parts[2], parts[3]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            send_q = int(parts[4].split(":")[0], 16)
            closed = " (server closed it)" if state in ("04", "05", "06") else ""
            return f"{names.get(state, state)}{closed}, {send_q} bytes unsent"
    return "gone (server closed it)"


async def _wait_all(subs: list[Subscriber], expected: int, limit_s: float) -> None:
    with trio.move_on_after(limit_s):
        while any(s.received < expected and s.ended is None for s in subs):  # noqa: ASYNC110 - polling
            await trio.sleep(0.1)


# ---------------------------------------------------------------------------------------------- phases


async def pipelined(address: str, n: int) -> None:
    ws = await RawWs.connect(address)
    ids: set[str] = set()
    bad: list[Any] = []
    frames = [
        orjson.dumps(
            {"topic": f"{TOPIC}/modify", "path": PROP, "value": i, "headers": {"correlation-id": f"c{i}"}}
        )
        for i in range(n)
    ]

    async def receive() -> None:
        while len(ids) + len(bad) < n:
            for payload in await ws.receive():
                obj = orjson.loads(payload)
                if obj.get("status") == 204:
                    ids.add(obj["headers"]["correlation-id"])
                else:
                    bad.append(obj)

    start = time.perf_counter()
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for k in range(0, n, 500):
                await ws.send(*frames[k : k + 500])
    elapsed = time.perf_counter() - start
    await ws.sock.aclose()
    all_back = ids == {f"c{i}" for i in range(n)}
    print(
        f"[1] pipelined modify on one WebSocket: {n} commands in {elapsed:.2f} s = {n / elapsed:,.0f} "
        f"durable commands/s; status 204: {len(ids)}/{n}, other: {len(bad)}; "
        f"all correlation ids back: {all_back}"
    )
    if bad:
        print(f"    first non-204: {bad[0]}")


async def fan_out(
    address: str, pid: int, rate: float, seconds: float, n_ws: int, n_sse: int, producers: int
) -> None:
    subs = [Subscriber("ws") for _ in range(n_ws)] + [Subscriber("sse") for _ in range(n_sse)]
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            for sub in subs:
                conn: RawWs | RawSse = (
                    await _subscribe_ws(address) if sub.kind == "ws" else await RawSse.connect(address)
                )
                nursery.start_soon(_consume, conn, sub)
        await trio.sleep(1.5)  # let every SSE stream subscribe (its head comes before the bus subscription)
        rss_before = rss_mb(pid)
        server_cpu, client_cpu = _cpu_s(pid), time.process_time()
        prod = await _drive(address, rate, seconds, None, producers)
        await _wait_all(subs, prod.ok, 15)
        drained = time.monotonic()
        server_cpu, client_cpu = _cpu_s(pid) - server_cpu, time.process_time() - client_cpu
        rss_after = rss_mb(pid)
        nursery.cancel_scope.cancel()
    wall = drained - prod.started
    change_rate = prod.ok / (prod.finished - prod.started)
    print(
        f"[2] fan-out at a target of {rate:,.0f} changes/s for {seconds:g} s to {n_ws} WS + {n_sse} SSE "
        f"subscribers: committed {prod.ok} (failed {prod.failed}), achieved {change_rate:,.0f} changes/s"
    )
    for kind in ("ws", "sse"):
        group = [s for s in subs if s.kind == kind]
        if not group:
            continue
        lat = [x for s in group for x in s.latencies]
        complete = sum(s.received == prod.ok for s in group)
        counts = [s.received for s in group]
        ended = [s.ended for s in group if s.ended]
        print(
            f"    {kind.upper():3} expected {prod.ok}/subscriber: complete {complete}/{len(group)}, "
            f"received min {min(counts)} median {statistics.median(counts):.0f} max {max(counts)}, "
            f"total {sum(counts)}/{prod.ok * len(group)}; latency p50 {_pct(lat, 0.5) * 1000:.1f} ms "
            f"p99 {_pct(lat, 0.99) * 1000:.1f} ms max {_pct(lat, 1.0) * 1000:.1f} ms"
        )
        if ended:
            print(f"        {len(ended)} ended early, e.g. {ended[0]!r}")
    delivered = sum(s.received for s in subs)
    print(
        f"    delivered {delivered / wall:,.0f} messages/s over {wall:.1f} s; CPU: edgetwin "
        f"{server_cpu / wall * 100:.0f}%, client {client_cpu / wall * 100:.0f}% (of one core each); "
        f"edgetwin RSS {rss_before:.1f} -> {rss_after:.1f} MB ({rss_after - rss_before:+.1f} MB)"
    )


async def stuck(address: str, pid: int, changes: int, rate: float, producers: int, wait_s: float) -> None:
    server_port = _split(address)[1]
    normal = [Subscriber("ws"), Subscriber("sse")]
    async with trio.open_nursery() as nursery:
        for sub in normal:
            conn: RawWs | RawSse = (
                await _subscribe_ws(address) if sub.kind == "ws" else await RawSse.connect(address)
            )
            nursery.start_soon(_consume, conn, sub)
        stuck_ws = await _subscribe_ws(address)
        stuck_sse = await RawSse.connect(address)
        ports = {
            "WS": stuck_ws.sock.socket.getsockname()[1],
            "SSE": stuck_sse.sock.socket.getsockname()[1],
        }
        await trio.sleep(1.5)
        rss_before = rss_mb(pid)
        prod = await _drive(address, rate, changes / rate * 5 + 30, changes, producers)
        await _wait_all(normal, prod.ok, 15)
        rss_after = rss_mb(pid)
        flow_s = prod.finished - prod.started
        print(
            f"[3] stuck subscribers: {prod.ok} changes committed in {flow_s:.1f} s "
            f"({prod.ok / flow_s:,.0f}/s, failed {prod.failed}); edgetwin RSS {rss_before:.1f} -> "
            f"{rss_after:.1f} MB ({rss_after - rss_before:+.1f} MB)"
        )
        for sub in normal:
            print(
                f"    normal {sub.kind.upper()} subscriber: received {sub.received}/{prod.ok}"
                f" (latency p50 {_pct(sub.latencies, 0.5) * 1000:.1f} ms, p99 "
                f"{_pct(sub.latencies, 0.99) * 1000:.1f} ms){'; ended: ' + sub.ended if sub.ended else ''}"
            )
        states = {k: _tcp_state(server_port, p) for k, p in ports.items()}
        print(f"    right after the flow, server-side TCP state of the stuck sockets: {states}")
        waited = 0.0
        while waited < wait_s and any(s.startswith("ESTABLISHED") for s in states.values()):
            await trio.sleep(0.5)
            waited += 0.5
            states = {k: _tcp_state(server_port, p) for k, p in ports.items()}
        print(
            f"    {waited:.1f} s later: {states}; edgetwin RSS {rss_mb(pid):.1f} MB "
            f"(the stuck clients still have not read anything)"
        )
        # Now read what the stuck ones were sent, to see how they were told.
        for name, conn2 in (("WS", stuck_ws), ("SSE", stuck_sse)):
            probe = Subscriber(name.lower())
            with trio.move_on_after(5):
                await _consume(conn2, probe)
            print(
                f"    stuck {name}: {probe.received} events were in flight to it, then: {probe.ended or 'no end'}"
            )
            await conn2.sock.aclose()
        nursery.cancel_scope.cancel()


async def run(args: argparse.Namespace, address: str, pid: int) -> None:
    ws = await RawWs.connect(address)
    await ws.send(
        orjson.dumps(
            {
                "topic": f"{TOPIC}/create",
                "path": "/",
                "value": {"features": {"f": {"properties": {"p": 0}}}},
                "headers": {"correlation-id": "create"},
            }
        )
    )
    with trio.fail_after(10):
        created = orjson.loads((await ws.receive())[0])
    assert created["status"] == 201, created
    await ws.sock.aclose()
    print(f"edgetwin RSS at start: {rss_mb(pid):.1f} MB")
    await pipelined(address, args.commands)
    for rate, n_ws, n_sse in args.fanout:
        await fan_out(address, pid, rate, args.seconds, n_ws, n_sse, args.producers)
    await stuck(address, pid, args.stuck_changes, args.stuck_rate, args.producers, args.stuck_wait)


def _drain(stream: Any, log: deque[str]) -> None:
    with contextlib.suppress(ValueError, OSError):  # closed by stop()
        log.extend(stream)


def _scenarios(text: str) -> list[tuple[float, int, int]]:
    out = []
    for item in text.split(","):
        rate, n_ws, n_sse = item.split(":")
        out.append((float(rate), int(n_ws), int(n_sse)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="fan-out duration per rate")
    parser.add_argument("--commands", type=int, default=20_000, help="pipelined commands")
    parser.add_argument(
        "--fanout",
        type=_scenarios,
        default=_scenarios("1000:100:100,50:100:100,25:100:100,1000:5:5"),
        help="fan-out runs as target-changes/s:WS subscribers:SSE subscribers, comma separated",
    )
    parser.add_argument("--stuck-wait", type=float, default=60, help="seconds to watch the stuck sockets")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--stuck-changes", type=int, default=10_000)
    parser.add_argument("--stuck-rate", type=float, default=1000)
    args = parser.parse_args()

    proc, http, _, data = start_edgetwin(CONFIG)
    log: deque[str] = deque(maxlen=2000)
    assert proc.stderr is not None
    stderr = proc.stderr
    # Keep draining the server's log, so a full pipe never blocks it.
    threading.Thread(target=_drain, args=(stderr, log), daemon=True).start()
    try:
        trio.run(run, args, http, proc.pid)
    finally:
        stop(proc, data)
        warnings = [line.strip() for line in log if "WARNING" in line or "ERROR" in line]
        drops = sum("dropped" in line for line in log)
        print(f"server log: {drops} 'dropped' lines, {len(warnings)} warnings/errors")
        for line in warnings[-3:]:
            print(f"    {line[:200]}")


if __name__ == "__main__":
    main()
