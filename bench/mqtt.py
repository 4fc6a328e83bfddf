"""MQTT broker figures (issue 7): edgetwin's embedded broker beside Mosquitto, in the same run, with the same
load generator, 100-byte payloads, MQTT 3.1.1.

The script starts edgetwin (``bench.common.start_edgetwin``, a built-in user allowed to publish and subscribe
to ``#``) and Mosquitto (Debian's ``mosquitto``: ``mosquitto -c <temp conf>`` on a free port of 127.0.0.1,
``allow_anonymous true``, defaults otherwise, so ``max_inflight_messages 20`` and ``max_queued_messages
1000``; ``persistence false``, except for scenario 2, which gets its own Mosquitto with ``persistence true``
in a temp dir). Both brokers get byte-for-byte the same traffic.

Load generator: trio over raw sockets, packets built with ``edgetwin.mqtt.codec`` (CONNECT, SUBSCRIBE) or
pre-encoded by hand (PUBLISH, PUBACK); received packets are framed by their fixed header only, so a
message costs the client well under a microsecond. Publisher and subscribers run in separate OS processes
(multiprocessing, spawn), so the generator has the second core; their CPU use is printed (percent of one
core over the measured interval), to show whether they, rather than the broker, were the limit. Payload:
8-byte sequence number, 8-byte ``time.monotonic_ns()`` at send, 84 zero bytes. Topic ``bench/mqtt/t``.

1. QoS 0, 1 publisher -> 1 subscriber for ``--seconds``. The publisher keeps at most ``--window`` messages
   beyond what the slowest subscriber has received (the subscriber process keeps that count in shared
   memory and writes a wake-up byte down a pipe when it moves), so neither broker is pushed into dropping
   QoS 0 messages: 800 is below edgetwin's per-session bound of 1000 pending messages (``mqtt.max_queued``)
   and, measured here, as fast for Mosquitto as 3000 (300 is not). A dropped message never comes back to
   reopen the window, so drops would show as a stalled, slower flow plus ``lost``. msgs/s = messages
   received / (last receipt - publisher start). Broker CPU per message = the broker process's utime+stime
   (``/proc/<pid>/stat``, all threads) from just before the publisher starts to the subscriber's last
   receipt, divided by the messages received. On 2 cores, when broker + pub + sub CPU approach 200% the
   machine, not the broker, is the limit: that broker's figure is then a lower bound.
2. QoS 1 into a persistent session: the subscriber connects with clean session 0 and subscribes at QoS 1
   (so edgetwin queues every message durably before it acknowledges it; Mosquitto keeps its queue in memory
   and writes ``mosquitto.db`` only at autosave / exit), PUBACKing every delivery at once. The publisher
   pipelines QoS 1 with at most ``--inflight`` unacknowledged for ``--seconds``, then waits for every PUBACK.
   Loss = messages the broker acknowledged (PUBACK) whose sequence number never reached the subscriber
   (duplicates are counted apart). msgs/s = distinct messages received / (last receipt - publisher start).
3. Paced at ``--rate`` QoS 0 messages/s for ``--seconds``, publisher and subscriber in one process (one
   trio loop, one clock): latency = receipt ``monotonic_ns`` - the send time in the payload; the first
   0.1 s is warm-up and left out.
4. Fan-out: 1 publisher -> ``--fanout`` subscribers (one process), QoS 0, windowed as in 1 on the slowest
   subscriber. Delivered msgs/s = receipts summed over subscribers / (last receipt - publisher start);
   broker CPU per delivered message.
5. ``--idle`` connections (CONNECT with keep alive 60, SUBSCRIBE to a topic of their own, SUBACK), then
   idle: broker RSS (``VmRSS``) before and once all are connected (after 1 s), and the growth per
   connection. Run first, on the freshly started brokers (so memory freed after the throughput runs does
   not blur it), after 50 warm-up connections have come and gone (one-time costs); printed last.

At the end: edgetwin's log lines at level warning/error (grouped by message), and Mosquitto's log lines
that mention a warning, an error or dropped messages.

Usage: python -m bench.mqtt [--seconds 3] [--window 800] [--inflight 100] [--rate 1000] [--fanout 100]
       [--idle 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from bench.common import rss_mb, start_edgetwin, stop

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

from edgetwin.mqtt.codec import (
    Connack,
    Connect,
    Incomplete,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    decode_packet,
    encode_packet,
)

USER, PASSWORD = "bench", "bench"
CONFIG = f'[[auth.users]]\nname = "{USER}"\npassword = "{PASSWORD}"\npublish = ["#"]\nsubscribe = ["#"]\n'
TOPIC = "bench/mqtt/t"
PAYLOAD_SIZE = 100
PAD = bytes(PAYLOAD_SIZE - 16)
LEVEL = 4  # MQTT 3.1.1
KEEP_ALIVE = 60
RECEIVE = 262144
DISCONNECT = b"\xe0\x00"
WARMUP_S = 0.1


@dataclass(frozen=True)
class Target:
    """A broker to drive (picklable, for the load generator processes)."""

    name: str
    host: str
    port: int


# ------------------------------------------------------------------------------------------ MQTT client


def _connect_bytes(client_id: str, *, clean: bool = True) -> bytes:
    packet = Connect(
        client_id=client_id,
        protocol_level=LEVEL,
        clean_start=clean,
        keep_alive=KEEP_ALIVE,
        username=USER,
        password=PASSWORD.encode(),
    )
    return encode_packet(packet, protocol_level=LEVEL)


def _publish_prefix(qos: int) -> bytes:
    """The PUBLISH bytes before the packet identifier (QoS 1) or the payload (QoS 0)."""
    topic = TOPIC.encode()
    remaining = 2 + len(topic) + (2 if qos else 0) + PAYLOAD_SIZE
    assert remaining < 128, "one-byte remaining length assumed"
    prefix = bytes((0x30 | (qos << 1), remaining)) + len(topic).to_bytes(2, "big") + topic
    # What the codec makes of it: the same PUBLISH the hand-built bytes are meant to be.
    example = prefix + (b"\x00\x01" if qos else b"") + bytes(PAYLOAD_SIZE)
    packet, used = decode_packet(example, protocol_level=LEVEL, role="server")
    if used != len(example) or not isinstance(packet, Publish) or (packet.topic, packet.qos) != (TOPIC, qos):
        raise AssertionError(f"hand-built PUBLISH decodes as {packet!r}")
    return prefix


async def _open(
    target: Target, client_id: str, *, clean: bool = True, topic: str | None = None, qos: int = 0
) -> tuple[trio.SocketStream, bytes]:
    """Connect (and subscribe); returns the stream and any bytes received after the SUBACK."""
    stream = await trio.open_tcp_stream(target.host, target.port)
    try:
        out = _connect_bytes(client_id, clean=clean)
        if topic is not None:
            out += encode_packet(Subscribe(1, (Subscription(topic, qos),)), protocol_level=LEVEL)
        await stream.send_all(out)
        buf = b""
        want_suback = topic is not None
        connected = False
        while not connected or want_suback:
            data = await stream.receive_some(RECEIVE)
            if not data:
                raise ConnectionError(f"{target.name} closed the connection during CONNECT/SUBSCRIBE")
            buf += data
            while buf:
                try:
                    packet, used = decode_packet(buf, protocol_level=LEVEL, role="client")
                except Incomplete:
                    break
                buf = buf[used:]
                if isinstance(packet, Connack):
                    if packet.reason_code != 0:
                        raise ConnectionError(f"CONNACK {packet.reason_code!r}")
                    connected = True
                elif isinstance(packet, SubAck):
                    if packet.reason_codes[0] not in (0, 1, 2):
                        raise ConnectionError(f"SUBACK {packet.reason_codes[0]!r}")
                    want_suback = False
                    break  # what follows is traffic, for the caller's framing
        return stream, buf
    except BaseException:
        await stream.aclose()
        raise


async def _goodbye(stream: trio.SocketStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        with trio.move_on_after(2):
            await stream.send_all(DISCONNECT)
    with trio.move_on_after(2):
        await stream.aclose()


def _frame(buf: bytes, pos: int) -> tuple[int, int]:
    """(start of the body, end of the packet) at ``pos``; end 0 when the fixed header is incomplete."""
    n = len(buf)
    length, shift, i = 0, 0, pos + 1
    while True:
        if i >= n:
            return 0, 0
        byte = buf[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return i, i + length
        shift += 7


class Receiver:
    """One subscriber connection's counters."""

    def __init__(self) -> None:
        self.count = 0  # PUBLISH packets received
        self.first = 0.0
        self.last = 0.0
        self.dups = 0
        self.seen = bytearray()
        self.latencies_ns: list[int] = []
        self.other = 0  # packets that were not PUBLISH
        self.ended: str | None = None

    def mark(self, seqs: Iterable[int]) -> None:
        seen = self.seen
        for seq in seqs:
            if seq >= len(seen):
                seen.extend(bytes(seq - len(seen) + 65536))
            if seen[seq]:
                self.dups += 1
            else:
                seen[seq] = 1


@cache
def _run_struct(qos: int, k: int) -> struct.Struct:
    """For ``k`` back-to-back deliveries of our PUBLISH at QoS 1: (packet id, sequence number) of each."""
    skip = len(_publish_prefix(qos))
    return struct.Struct(">" + f"{skip}xHQ{PAYLOAD_SIZE - 8}x" * k)


async def _receive(
    stream: trio.SocketStream,
    buf: bytes,
    rx: Receiver,
    *,
    qos: int = 0,
    latency: bool = False,
    on_count: Callable[[int], None] | None = None,
) -> None:
    """Count PUBLISH packets (framed by their fixed header), PUBACK QoS 1 at once, note the sequence numbers
    of QoS 1 messages (``rx.seen``) and, with ``latency``, the age of each (the send time in the payload).

    Fast path: a run of whole packets that are all our PUBLISH at the subscribed QoS (every packet's two
    fixed-header bytes checked with strided slices) is counted and, for QoS 1, unpacked with one ``Struct``;
    anything else goes packet by packet.
    """
    mono = time.monotonic
    mono_ns = time.monotonic_ns
    prefix = _publish_prefix(qos)
    size = len(prefix) + (2 if qos else 0) + PAYLOAD_SIZE
    head0, head1 = prefix[0:1], prefix[1:2]
    fresh = bool(buf)  # bytes that came with the SUBACK go first
    try:
        while True:
            if fresh:
                fresh = False
            else:
                data = await stream.receive_some(RECEIVE)
                if not data:
                    rx.ended = "closed by the broker"
                    return
                buf = buf + data if buf else data
            now = mono()
            n = len(buf)
            pos = 0
            acks: list[bytes] = []
            count = 0
            k = n // size
            if (
                k
                and not latency
                and buf[0 : k * size : size] == head0 * k
                and buf[1 : k * size : size] == head1 * k
            ):
                count = k
                pos = k * size
                if qos:
                    for start in range(0, k, 256):
                        m = min(256, k - start)
                        values = _run_struct(qos, m).unpack_from(buf, start * size)
                        pids = values[0::2]
                        acks.append(struct.pack(f">{m}I", *[0x40020000 | pid for pid in pids]))
                        rx.mark(values[1::2])
            now_ns = mono_ns() if latency else 0
            while pos + 2 <= n:
                first = buf[pos]
                length = buf[pos + 1]
                if length < 0x80:
                    body, end = pos + 2, pos + 2 + length
                else:
                    body, end = _frame(buf, pos)
                    if not end:
                        break
                if end > n:
                    break
                if first >> 4 == 3:
                    count += 1
                    p = body + 2 + ((buf[body] << 8) | buf[body + 1])
                    if first & 0x06:
                        acks.append(b"\x40\x02" + buf[p : p + 2])
                        p += 2
                        rx.mark((int.from_bytes(buf[p : p + 8], "big"),))
                    if latency:
                        rx.latencies_ns.append(now_ns - int.from_bytes(buf[p + 8 : p + 16], "big"))
                else:
                    rx.other += 1
                pos = end
            buf = buf[pos:]
            if count:
                if not rx.count:
                    rx.first = now
                rx.count += count
                rx.last = now
                if on_count is not None:
                    on_count(rx.count)
            if acks:
                await stream.send_all(b"".join(acks))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as err:
        rx.ended = type(err).__name__


class Progress:
    """The slowest subscriber's count, in shared memory for the publisher, with a wake-up byte down a pipe
    whenever it moves (so a publisher waiting on its window resumes at once, not at its next poll)."""

    def __init__(self, shared: Any, wake_fd: int, n: int) -> None:
        self.shared = shared
        self.wake_fd = wake_fd
        self.counts = [0] * n
        self.least = 0
        os.set_blocking(wake_fd, False)

    def updater(self, i: int) -> Callable[[int], None]:
        def update(count: int) -> None:
            counts = self.counts
            old = counts[i]
            counts[i] = count
            if old == self.least:
                least = min(counts)
                if least != self.least:
                    self.least = least
                    self.shared.value = least
                    with contextlib.suppress(BlockingIOError):  # a full pipe wakes the reader all the same
                        os.write(self.wake_fd, b"\0")

        return update


# ----------------------------------------------------------------------------------- load generator roles


def _child(role: Any, out: Any, *args: Any) -> None:
    """Run one load generator role in this (spawned) process; its result or its traceback goes to ``out``."""
    try:
        result = trio.run(role, out, *args)
        out.put(("result", result))
    except BaseException:
        out.put(("error", traceback.format_exc(limit=8)))


async def _subscribers(
    out: Any,
    target: Target,
    n: int,
    qos: int,
    persistent: bool,
    progress: Any,
    wake: Any,
    expected: Any,
    done: Any,
    grace_s: float,
    limit_s: float,
) -> dict[str, Any]:
    """``n`` subscribers on TOPIC; report ready, count until told the publisher is done and all arrived (or
    nothing came for ``grace_s``)."""
    receivers = [Receiver() for _ in range(n)]
    streams: list[tuple[trio.SocketStream, bytes]] = []
    limiter = trio.CapacityLimiter(50)
    stamp = os.getpid()

    async def one(i: int) -> None:
        async with limiter:
            with trio.fail_after(30):
                client_id = f"bench-{'p' if persistent else 's'}{i}-{stamp}"
                streams.append(await _open(target, client_id, clean=not persistent, topic=TOPIC, qos=qos))

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    timed_out = False
    slowest = Progress(progress, wake.fileno(), n)
    cpu0 = time.process_time()
    async with trio.open_nursery() as nursery:
        for i, ((stream, buf), rx) in enumerate(zip(streams, receivers, strict=True)):
            nursery.start_soon(partial(_receive, stream, buf, rx, qos=qos, on_count=slowest.updater(i)))
        out.put(("ready", n))
        deadline = time.monotonic() + limit_s
        done_at = 0.0
        while True:
            await trio.sleep(0.01)
            now = time.monotonic()
            if done.is_set():
                done_at = done_at or now
                want = expected.value
                if all(rx.count - rx.dups >= want for rx in receivers):
                    break
                if now - max(done_at, max(rx.last for rx in receivers)) > grace_s:
                    break
                if all(rx.ended for rx in receivers):
                    break
            if now > deadline:
                timed_out = True
                break
        nursery.cancel_scope.cancel()
    cpu = time.process_time() - cpu0
    async with trio.open_nursery() as nursery:
        for stream, _ in streams:
            nursery.start_soon(_goodbye, stream)
    return {
        "counts": [rx.count for rx in receivers],
        "dups": sum(rx.dups for rx in receivers),
        "first": min((rx.first for rx in receivers if rx.count), default=0.0),
        "last": max(rx.last for rx in receivers),
        "seen": bytes(receivers[0].seen) if qos else b"",
        "other": sum(rx.other for rx in receivers),
        "ended": [rx.ended for rx in receivers if rx.ended],
        "timed_out": timed_out,
        "cpu": cpu,
    }


async def _publisher(
    out: Any, target: Target, qos: int, seconds: float, window: int, progress: Any, wake: Any
) -> dict[str, Any]:
    """Publish to TOPIC for ``seconds``: QoS 0 at most ``window`` ahead of the slowest subscriber (per
    ``progress``, woken by a byte on ``wake``), QoS 1 with at most ``window`` unacknowledged; then wait for
    the last PUBACKs."""
    wake_fd = wake.fileno()
    os.set_blocking(wake_fd, False)
    stream, _ = await _open(target, f"bench-pub-{os.getpid()}")
    cpu0 = time.process_time()
    start = time.monotonic()
    deadline = start + seconds
    sent = 0
    result: dict[str, Any] = {"start": start}
    if qos == 0:
        batch_n = 64
        packet = _publish_prefix(0) + struct.pack(">QQ", 0, 0) + PAD
        size = len(packet)
        batch = memoryview(packet * batch_n)
        while time.monotonic() < deadline:
            room = window - (sent - progress.value)
            if room <= 0:
                with trio.move_on_after(0.01):
                    await trio.lowlevel.wait_readable(wake_fd)
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_fd, 65536)
                continue
            k = min(room, batch_n)
            await stream.send_all(batch[: k * size])
            sent += k
        result["end"] = time.monotonic()
    else:
        prefix = _publish_prefix(1)
        acked = bytearray()
        seq_of = [0] * 65536
        state: dict[str, Any] = {"inflight": 0, "acks": 0, "wake": trio.Event()}

        async def acks() -> None:
            buf = b""
            while True:
                data = await stream.receive_some(RECEIVE)
                if not data:
                    raise ConnectionError(f"{target.name} closed the publisher's connection")
                buf += data
                n, pos, got = len(buf), 0, 0
                k = n // 4
                if k and buf[0 : 4 * k : 4] == b"\x40" * k and buf[1 : 4 * k : 4] == b"\x02" * k:
                    for (pid,) in struct.iter_unpack(">2xH", buf[: 4 * k]):
                        acked[seq_of[pid]] = 1
                    pos = 4 * k
                    got = k
                while pos + 2 <= n:
                    body, end = _frame(buf, pos)
                    if not end or end > n:
                        break
                    if buf[pos] == 0x40:
                        pid = (buf[body] << 8) | buf[body + 1]
                        acked[seq_of[pid]] = 1
                        got += 1
                    pos = end
                buf = buf[pos:]
                if got:
                    state["acks"] += got
                    state["inflight"] -= got
                    state["wake"].set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(acks)
            batch_n = 64
            offset = len(prefix)
            size = offset + 2 + PAYLOAD_SIZE
            template = bytearray((prefix + bytes(2 + PAYLOAD_SIZE)) * batch_n)
            view = memoryview(template)
            pack_into = struct.pack_into
            while time.monotonic() < deadline:
                room = window - state["inflight"]
                if room <= 0:
                    wake = state["wake"] = trio.Event()
                    await wake.wait()
                    continue
                k = min(room, batch_n)
                acked.extend(bytes(k))
                now_ns = time.monotonic_ns()
                for j in range(k):
                    seq = sent + j
                    pid = seq % 65535 + 1
                    seq_of[pid] = seq
                    pack_into(">HQQ", template, j * size + offset, pid, seq, now_ns)
                state["inflight"] += k
                await stream.send_all(view[: k * size])
                sent += k
            result["end"] = time.monotonic()
            with trio.move_on_after(30):
                while state["inflight"] > 0:
                    wake = state["wake"] = trio.Event()
                    await wake.wait()
            nursery.cancel_scope.cancel()
        result["acked"] = bytes(acked)
        result["unacked"] = state["inflight"]
    result["sent"] = sent
    result["cpu"] = time.process_time() - cpu0
    await _goodbye(stream)
    return result


async def _paced(out: Any, target: Target, rate: float, seconds: float) -> dict[str, Any]:
    """QoS 0 at ``rate``/s with the send time in the payload; the subscriber in the same trio loop."""
    rx = Receiver()
    sub, buf = await _open(target, f"bench-lat-sub-{os.getpid()}", topic=TOPIC, qos=0)
    pub, _ = await _open(target, f"bench-lat-pub-{os.getpid()}")
    prefix = _publish_prefix(0)
    total = int(rate * seconds)
    sent = 0
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            await _receive(sub, buf, rx, latency=True)

        nursery.start_soon(receive)
        await trio.sleep(0.2)
        start = trio.current_time()
        while sent < total:
            due = min(total, int((trio.current_time() - start) * rate) + 1)
            if due > sent:
                await pub.send_all(
                    b"".join(
                        prefix + struct.pack(">QQ", i, time.monotonic_ns()) + PAD for i in range(sent, due)
                    )
                )
                sent = due
            await trio.sleep_until(start + sent / rate)
        with trio.move_on_after(5):
            while rx.count < sent and rx.ended is None:  # noqa: ASYNC110 - polling a counter
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    await _goodbye(sub)
    await _goodbye(pub)
    skip = int(rate * WARMUP_S)
    return {"sent": sent, "received": rx.count, "latencies_ns": rx.latencies_ns[skip:], "ended": rx.ended}


async def _idle(out: Any, target: Target, n: int, done: Any) -> dict[str, Any]:
    """``n`` connections, each subscribed to a topic of its own; held until ``done``."""
    streams: list[trio.SocketStream] = []
    errors: Counter[str] = Counter()
    limiter = trio.CapacityLimiter(50)
    stamp = os.getpid()

    async def one(i: int) -> None:
        async with limiter:
            try:
                with trio.fail_after(20):
                    stream, _ = await _open(target, f"bench-idle{i}-{stamp}", topic=f"bench/idle/{i}")
                streams.append(stream)
            except (OSError, ConnectionError, trio.TooSlowError, trio.BrokenResourceError) as err:
                errors[f"{type(err).__name__}: {err}"[:100]] += 1

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    setup = time.monotonic() - started
    out.put(("ready", {"connected": len(streams), "errors": dict(errors), "setup_s": setup}))
    with trio.move_on_after(120):
        while not done.is_set():  # noqa: ASYNC110 - a multiprocessing event
            await trio.sleep(0.05)
    closed = 0
    for stream in streams:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.send_all(DISCONNECT)
            closed += 1
        await stream.aclose()
    return {"closed": closed}


# ------------------------------------------------------------------------------------------------ brokers


@dataclass
class Broker:
    """A running broker: where it listens, its pid, and how to stop it."""

    target: Target
    pid: int
    stop: Any
    log: Any  # () -> list[str], its log so far


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, from /proc (its socket inodes in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def _drain(stream: Any, log: deque[str]) -> None:
    with contextlib.suppress(ValueError, OSError):  # closed by stop()
        log.extend(stream)


def start_edgetwin_broker() -> Broker:
    proc, http, _, data = start_edgetwin(CONFIG)
    log: deque[str] = deque(maxlen=100_000)
    assert proc.stderr is not None
    threading.Thread(target=_drain, args=(proc.stderr, log), daemon=True).start()

    def stop_it() -> None:
        try:
            stop(proc, data)
        except subprocess.TimeoutExpired:
            log.append('level=error logger=bench msg="edgetwin did not stop within 10 s of SIGTERM: killed"')
            proc.kill()
            proc.wait()
            shutil.rmtree(data, ignore_errors=True)

    try:
        http_port = int(http.rsplit(":", 1)[1])
        ports = _listening_ports(proc.pid) - {http_port}
        if len(ports) != 1:
            raise RuntimeError(f"cannot tell edgetwin's MQTT port among {sorted(ports)}")
    except BaseException:
        stop_it()
        raise
    return Broker(Target("edgetwin", "127.0.0.1", ports.pop()), proc.pid, stop_it, lambda: list(log))


def start_mosquitto(*, persistence: bool) -> Broker:
    if shutil.which("mosquitto") is None:
        raise SystemExit("mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients")
    tmp = Path(tempfile.mkdtemp(prefix="mosquitto-bench-"))
    port = _free_port()
    conf = tmp / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "log_dest stderr"]
    if os.geteuid() == 0:
        lines.append("user root")  # stay root: the temp dir is ours (it would switch to "mosquitto")
    if persistence:
        lines += ["persistence true", f"persistence_location {tmp}/"]
    else:
        lines.append("persistence false")
    conf.write_text("\n".join(lines) + "\n")
    log_path = tmp / "mosquitto.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)

    def stop_it() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    def read_log() -> list[str]:
        with contextlib.suppress(OSError):
            return log_path.read_text(errors="replace").splitlines()
        return []

    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            text = "\n".join(read_log()[-5:])
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"mosquitto exited ({proc.returncode}):\n{text}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            break
        if time.monotonic() > deadline:
            stop_it()
            raise RuntimeError("mosquitto did not listen within 10 s")
        time.sleep(0.05)
    name = "mosquitto" + (" (persist)" if persistence else "")
    return Broker(Target(name, "127.0.0.1", port), proc.pid, stop_it, read_log)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ orchestration


class Runner:
    """Starts load generator processes and collects what they report; kills what is left over."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[Any] = []

    def start(self, role: Any, *args: Any) -> tuple[Any, Any]:
        out = self.ctx.Queue()
        proc = self.ctx.Process(target=_child, args=(role, out, *args), daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc, out

    @staticmethod
    def expect(proc: Any, out: Any, kind: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                got, value = out.get(timeout=0.2)
            except queue.Empty:
                if not proc.is_alive():
                    try:
                        got, value = out.get(timeout=1)
                    except queue.Empty:
                        raise RuntimeError(f"{what}: exited ({proc.exitcode}) without a word") from None
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"{what}: nothing within {timeout:g} s") from None
                else:
                    continue
            if got == "error":
                last = [line.strip() for line in value.splitlines() if line.strip()][-1]
                raise RuntimeError(f"{what} failed: {last}")
            if got != kind:
                raise RuntimeError(f"{what}: expected {kind!r}, got {got!r}")
            return value

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.join(timeout=3)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=3)
        self.procs.clear()


@dataclass
class Flow:
    """One measured publisher -> subscribers run."""

    sent: int
    received: int  # receipts summed over subscribers (distinct messages for QoS 1)
    rate: float  # receipts/s
    wall: float
    broker_us: float  # broker CPU per receipt
    broker_pct: float
    pub_pct: float
    sub_pct: float
    lost: int = 0
    dups: int = 0
    unacked: int = 0
    note: str = ""


def flow(
    runner: Runner, broker: Broker, *, qos: int, subs: int, persistent: bool, seconds: float, window: int
) -> Flow:
    progress = runner.ctx.RawValue("q", 0)
    wake_r, wake_w = runner.ctx.Pipe(duplex=False)
    expected = runner.ctx.RawValue("q", -1)
    done = runner.ctx.Event()
    grace = 2.0 if qos else 1.0
    try:
        sub_proc, sub_out = runner.start(
            _subscribers,
            broker.target,
            subs,
            qos,
            persistent,
            progress,
            wake_w,
            expected,
            done,
            grace,
            seconds + 60,
        )
        runner.expect(sub_proc, sub_out, "ready", 60, "subscribers")
        cpu0 = _cpu_s(broker.pid)
        pub_proc, pub_out = runner.start(_publisher, broker.target, qos, seconds, window, progress, wake_r)
        pub = runner.expect(pub_proc, pub_out, "result", seconds + 60, "publisher")
        expected.value = pub["sent"]
        done.set()
        sub = runner.expect(sub_proc, sub_out, "result", 90, "subscribers")
        cpu = _cpu_s(broker.pid) - cpu0
    finally:
        done.set()
        runner.cleanup()
        wake_r.close()
        wake_w.close()
    counts = sub["counts"]
    if qos:
        seen, acked = sub["seen"], pub["acked"]
        received = sum(seen)
        lost = sum(1 for i, a in enumerate(acked) if a and (i >= len(seen) or not seen[i]))
    else:
        received = sum(counts)
        lost = pub["sent"] * subs - received
    wall = max(sub["last"] - pub["start"], 1e-9)
    notes = []
    if sub["timed_out"]:
        notes.append("subscribers timed out")
    if sub["ended"]:
        notes.append(f"{len(sub['ended'])} subscriber connections ended early ({sub['ended'][0]})")
    if sub["other"]:
        notes.append(f"{sub['other']} non-PUBLISH packets received")
    if qos and min(counts) == 0:
        notes.append("a subscriber received nothing")
    return Flow(
        sent=pub["sent"],
        received=received,
        rate=received / wall,
        wall=wall,
        broker_us=cpu / received * 1e6 if received else float("nan"),
        broker_pct=cpu / wall * 100,
        pub_pct=pub["cpu"] / wall * 100,
        sub_pct=sub["cpu"] / wall * 100,
        lost=lost,
        dups=sub["dups"],
        unacked=pub.get("unacked", 0),
        note="; ".join(notes),
    )


def _print_flows(title: str, rows: dict[str, Flow | str], *, qos: int, subs: int) -> None:
    print(title)
    print(
        f"    {'broker':20} {'msgs/s':>9} {'sent':>8} {'received':>10} {'lost':>7} {'dup':>5} "
        f"{'CPU µs/msg':>10} {'broker CPU':>10} {'pub CPU':>8} {'sub CPU':>8}"
    )
    for name, row in rows.items():
        if isinstance(row, str):
            print(f"    {name:20} FAILED: {row}")
            continue
        sent = row.sent * subs
        print(
            f"    {name:20} {row.rate:>9,.0f} {sent:>8,} {row.received:>10,} {row.lost:>7,} {row.dups:>5,} "
            f"{row.broker_us:>10.1f} {row.broker_pct:>9.0f}% {row.pub_pct:>7.0f}% {row.sub_pct:>7.0f}%"
            + (f"   unacked {row.unacked}" if qos and row.unacked else "")
        )
        if row.note:
            print(f"        {name}: {row.note}")


def _ratio(rows: dict[str, Flow | str], a: str, b: str) -> float | None:
    x, y = rows.get(a), rows.get(b)
    if isinstance(x, Flow) and isinstance(y, Flow) and y.rate:
        return x.rate / y.rate
    return None


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6 if ordered else float("nan")


def scenario_latency(runner: Runner, broker: Broker, rate: float, seconds: float) -> str:
    try:
        proc, out = runner.start(_paced, broker.target, rate, seconds)
        res = runner.expect(proc, out, "result", seconds + 60, "paced client")
    finally:
        runner.cleanup()
    lat = res["latencies_ns"]
    tail = f", ended: {res['ended']}" if res["ended"] else ""
    return (
        f"p50 {_pct(lat, 0.5):.3f} ms  p99 {_pct(lat, 0.99):.3f} ms  p99.9 {_pct(lat, 0.999):.3f} ms  "
        f"max {_pct(lat, 1.0):.3f} ms  (received {res['received']}/{res['sent']}{tail})"
    )


def scenario_idle(runner: Runner, broker: Broker, n: int) -> str:
    warm = runner.ctx.Event()
    warm.set()
    try:  # a first few connections, so one-time costs (lazy imports, first allocations) are not counted
        proc, out = runner.start(_idle, broker.target, min(n, 50), warm)
        runner.expect(proc, out, "ready", 60, "warm-up clients")
        runner.expect(proc, out, "result", 60, "warm-up clients")
    finally:
        runner.cleanup()
    time.sleep(1)
    done = runner.ctx.Event()
    before = rss_mb(broker.pid)
    try:
        proc, out = runner.start(_idle, broker.target, n, done)
        ready = runner.expect(proc, out, "ready", 120, "idle clients")
        time.sleep(1)
        during = rss_mb(broker.pid)
        done.set()
        runner.expect(proc, out, "result", 60, "idle clients")
    finally:
        done.set()
        runner.cleanup()
    time.sleep(1)
    after = rss_mb(broker.pid)
    connected = ready["connected"]
    per = (during - before) * 1024 / connected if connected else float("nan")
    errors = ready["errors"]
    failed = f"; refused/failed {sum(errors.values())}: {next(iter(errors))}" if errors else ""
    return (
        f"{connected}/{n} connected in {ready['setup_s']:.1f} s; RSS {before:.1f} -> {during:.1f} MB "
        f"({during - before:+.1f} MB, {per:.1f} KB/connection); 1 s after they left {after:.1f} MB{failed}"
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _edgetwin_log_summary(lines: list[str]) -> list[str]:
    bad = [line for line in lines if re.search(r"level=(warning|error|critical)|\b(WARNING|ERROR)\b", line)]
    groups: Counter[str] = Counter()
    for line in bad:
        match = re.search(r'level=(\w+) logger=\S+ msg=("(?:[^"\\]|\\.)*"|\S+)', line)
        key = f"{match.group(1)} {match.group(2)}" if match else line.strip()
        groups[re.sub(r"\b(bench-\S+|edgetwin-[0-9a-f]+)", "<client>", key)[:150]] += 1
    out = [f"edgetwin log: {len(lines)} lines, {len(bad)} at warning/error"]
    out += [f"    {count:>7} x {key}" for key, count in groups.most_common(8)]
    tracebacks = sum("Traceback" in line for line in lines)
    if tracebacks:
        out.append(f"    {tracebacks} tracebacks")
    return out


def _mosquitto_log_summary(name: str, lines: list[str]) -> list[str]:
    bad = [line for line in lines if re.search(r"warning|error|dropp", line, re.IGNORECASE)]
    groups: Counter[str] = Counter()
    for line in bad:
        text = re.sub(r"^\d+: ", "", line.strip())
        groups[re.sub(r"bench-\S+", "<client>", text)[:150]] += 1
    out = [f"{name} log: {len(lines)} lines, {len(bad)} mention a warning, an error or dropping"]
    out += [f"    {count:>7} x {key}" for key, count in groups.most_common(5)]
    return out


def run(args: argparse.Namespace) -> None:
    runner = Runner()
    brokers: list[Broker] = []
    logs: list[str] = []
    started = time.monotonic()
    try:
        edgetwin = start_edgetwin_broker()
        brokers.append(edgetwin)
        mosquitto = start_mosquitto(persistence=False)
        brokers.append(mosquitto)
        version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
        print(
            f"edgetwin on {edgetwin.target.port} (RSS {rss_mb(edgetwin.pid):.1f} MB), {version} on "
            f"{mosquitto.target.port} (RSS {rss_mb(mosquitto.pid):.1f} MB); {os.cpu_count()} CPUs; MQTT 3.1.1, "
            f"{PAYLOAD_SIZE}-byte payloads; load average {_load()}"
        )

        # 5. idle connections: measured first, on the fresh brokers (memory that the throughput runs leave
        # to be freed would blur the growth), printed last.
        idle = [f"[5] {args.idle} idle connections (keep alive {KEEP_ALIVE} s, one subscription each)"]
        for broker in (edgetwin, mosquitto):
            try:
                text = scenario_idle(runner, broker, args.idle)
            except RuntimeError as err:
                text = f"FAILED: {err}"
            idle.append(f"    {broker.target.name:20} {text}")
        idle.append("    target: edgetwin RSS growth under 20 MB")

        # 1. QoS 0, 1 -> 1
        rows: dict[str, Flow | str] = {}
        for broker in (edgetwin, mosquitto):
            try:
                rows[broker.target.name] = flow(
                    runner, broker, qos=0, subs=1, persistent=False, seconds=args.seconds, window=args.window
                )
            except RuntimeError as err:
                rows[broker.target.name] = str(err)
        _print_flows(
            f"[1] QoS 0, 1 publisher -> 1 subscriber, {args.seconds:g} s, publisher at most {args.window} "
            f"messages ahead of the subscriber",
            rows,
            qos=0,
            subs=1,
        )
        ratio = _ratio(rows, "edgetwin", "mosquitto")
        row = rows.get("edgetwin")
        if ratio is not None and isinstance(row, Flow):
            print(
                f"    edgetwin / mosquitto msgs/s = {ratio:.2f} (target >= 0.6); edgetwin CPU "
                f"{row.broker_us:.1f} µs/msg (target < 30)"
            )

        # 2. QoS 1, persistent subscriber session
        rows = {}
        try:
            rows["edgetwin"] = flow(
                runner, edgetwin, qos=1, subs=1, persistent=True, seconds=args.seconds, window=args.inflight
            )
        except RuntimeError as err:
            rows["edgetwin"] = str(err)
        durable = None
        try:
            durable = start_mosquitto(persistence=True)
            brokers.append(durable)
            rows[durable.target.name] = flow(
                runner, durable, qos=1, subs=1, persistent=True, seconds=args.seconds, window=args.inflight
            )
        except RuntimeError as err:
            rows["mosquitto (persist)"] = str(err)
        finally:
            if durable is not None:
                logs += _mosquitto_log_summary(durable.target.name, durable.log())
                brokers.remove(durable)
                durable.stop()
        _print_flows(
            f"[2] QoS 1 into a persistent session (clean session 0, subscribed at QoS 1), {args.seconds:g} s, "
            f"publisher window {args.inflight} unacknowledged; lost = PUBACKed but never delivered",
            rows,
            qos=1,
            subs=1,
        )
        ratio = _ratio(rows, "edgetwin", "mosquitto (persist)")
        row = rows.get("edgetwin")
        if ratio is not None and isinstance(row, Flow):
            print(
                f"    edgetwin / mosquitto msgs/s = {ratio:.2f} (target >= 0.5); edgetwin lost {row.lost} "
                f"(target 0)"
            )

        # 3. paced latency
        print(
            f"[3] paced QoS 0 at {args.rate:g} msgs/s for {args.seconds:g} s, publish -> receive latency "
            f"(first {WARMUP_S:g} s left out)"
        )
        for broker in (edgetwin, mosquitto):
            try:
                text = scenario_latency(runner, broker, args.rate, args.seconds)
            except RuntimeError as err:
                text = f"FAILED: {err}"
            print(f"    {broker.target.name:20} {text}")
        print("    target: edgetwin p99 under 1 ms")

        # 4. fan-out
        rows = {}
        for broker in (edgetwin, mosquitto):
            try:
                rows[broker.target.name] = flow(
                    runner,
                    broker,
                    qos=0,
                    subs=args.fanout,
                    persistent=False,
                    seconds=args.seconds,
                    window=args.window,
                )
            except RuntimeError as err:
                rows[broker.target.name] = str(err)
        _print_flows(
            f"[4] fan-out: QoS 0, 1 publisher -> {args.fanout} subscribers, {args.seconds:g} s, publisher at "
            f"most {args.window} messages ahead of the slowest subscriber (msgs/s = deliveries/s)",
            rows,
            qos=0,
            subs=args.fanout,
        )
        ratio = _ratio(rows, "edgetwin", "mosquitto")
        if ratio is not None:
            print(f"    edgetwin / mosquitto deliveries/s = {ratio:.2f}")

        for line in idle:
            print(line)
        print(
            f"edgetwin RSS at the end {rss_mb(edgetwin.pid):.1f} MB; whole run {time.monotonic() - started:.0f} s; "
            f"load average {_load()} (other work on the machine skews every figure)"
        )
    finally:
        runner.cleanup()
        for broker in brokers:
            if broker.target.name == "edgetwin":
                try:
                    broker.stop()
                finally:
                    logs[:0] = _edgetwin_log_summary(broker.log())
            else:
                logs += _mosquitto_log_summary(broker.target.name, broker.log())
                broker.stop()
        for line in logs:
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3, help="duration of each measured flow")
    parser.add_argument(
        "--window", type=int, default=800, help="QoS 0: messages ahead of the slowest subscriber"
    )
    parser.add_argument("--inflight", type=int, default=100, help="QoS 1: unacknowledged PUBLISH at most")
    parser.add_argument("--rate", type=float, default=1000, help="paced messages/s (scenario 3)")
    parser.add_argument("--fanout", type=int, default=100, help="subscribers in scenario 4")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections in scenario 5")
    args = parser.parse_args()
    if not 1 <= args.inflight <= 65535:
        parser.error("--inflight must be 1..65535")
    run(args)


if __name__ == "__main__":
    main()
