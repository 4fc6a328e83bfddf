"""sd_notify over a real unix datagram socket: READY=1, WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from edgetwin import app
from edgetwin.core.health import Health
from edgetwin.systemd import Notifier, watchdog_interval_s
from tests.conftest import make_settings


async def _receive(sock: trio.socket.SocketType) -> str:
    data = await sock.recv(4096)
    return bytes(data).decode()


async def test_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(address)
    settings = make_settings(tmp_path)
    stop = trio.Event()
    environ = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"}  # ping every 50 ms
    with sock, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: app.serve(
                    settings, environ=environ, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            messages = [await _receive(sock) for _ in range(3)]
            assert messages[0] == "READY=1\nSTATUS=serving"
            assert "WATCHDOG=1" in messages[1:]
            stop.set()
            while (message := await _receive(sock)) == "WATCHDOG=1":
                pass
            assert message == "STOPPING=1\nSTATUS=stopping"


async def test_abstract_socket_address(tmp_path: Path) -> None:
    name = f"edgetwin-test-{tmp_path.name}"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind("\0" + name)
    with sock:
        await Notifier("@" + name).notify("READY=1")
        assert await _receive(sock) == "READY=1"


async def test_notifier_outside_systemd_is_silent_and_never_raises(tmp_path: Path) -> None:
    await Notifier(None).notify("READY=1")
    assert not Notifier.from_environ({}).enabled
    await Notifier(str(tmp_path / "gone.sock")).notify("READY=1")  # logged once, not raised


def test_watchdog_interval() -> None:
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}) is None


def test_health_states() -> None:
    health = Health()
    assert health.snapshot().status == "DOWN"
    health.set("a", "starting")
    assert health.snapshot().status == "DOWN"
    health.set("a", "up")
    assert health.snapshot().status == "UP"
    health.stopping()
    assert health.snapshot().status == "DOWN"
    assert health.snapshot().services == {"a": "stopping"}
