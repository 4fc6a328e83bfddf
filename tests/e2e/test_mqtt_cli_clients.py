"""The broker with Debian's mosquitto-clients, as a new user would try it: ``mosquitto_sub -V mqttv5 -t '#'``
and ``mosquitto_pub`` (both protocol versions), run as subprocesses with timeouts against the real appliance.

Skipped when the binaries are missing; CI installs them (``.ci/run``: mosquitto-clients).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.e2e.mqtt_helpers import WAIT_S, running_edgetwin

MOSQUITTO_PUB = shutil.which("mosquitto_pub")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
STDBUF = shutil.which(
    "stdbuf"
)  # coreutils: mosquitto_sub's -d lines are block-buffered into a pipe otherwise

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        MOSQUITTO_PUB is None or MOSQUITTO_SUB is None or STDBUF is None,
        reason="mosquitto_pub/mosquitto_sub not installed (Debian package mosquitto-clients, installed by .ci/run)",
    ),
]

VERSIONS = [pytest.param("311", id="3.1.1"), pytest.param("mqttv5", id="5.0")]
FORMAT = "MSG %t|%q|%r|%p"  # message lines; the other lines are -d's debug output


def _common(port: int, version: str, user: str = "ditto", password: str = "ditto") -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port), "-V", version, "-u", user, "-P", password]


async def mosquitto_pub(
    port: int, version: str, *args: str, password: str = "ditto", check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    assert MOSQUITTO_PUB is not None
    with trio.fail_after(WAIT_S):
        return await trio.run_process(
            [MOSQUITTO_PUB, *_common(port, version, password=password), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=check,
        )


class Sub:
    """A running mosquitto_sub (with -d, so that its SUBACK is seen) and its output lines."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._buffer = b""

    async def line(self) -> str | None:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                return None
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        line = raw.decode(errors="replace")
        self.lines.append(line)
        return line

    async def subscribed(self) -> None:
        with trio.fail_after(WAIT_S):
            while (line := await self.line()) is not None:
                if "received SUBACK" in line:
                    return
        raise AssertionError(f"mosquitto_sub never subscribed: {self.lines}")

    async def messages(self) -> list[str]:
        """The message lines until mosquitto_sub exits (it is started with -C and -W)."""
        with trio.fail_after(WAIT_S + 5):
            while await self.line() is not None:
                pass
            await self.process.wait()
        return [line[4:] for line in self.lines if line.startswith("MSG ")]


@asynccontextmanager
async def mosquitto_sub(port: int, version: str, *args: str) -> AsyncIterator[Sub]:
    assert MOSQUITTO_SUB is not None
    assert STDBUF is not None
    command = [
        STDBUF,
        "-oL",
        MOSQUITTO_SUB,
        *_common(port, version),
        "-d",
        "-F",
        FORMAT,
        "-W",
        str(int(WAIT_S)),
        *args,
    ]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        yield Sub(process)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(WAIT_S):
                await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


@pytest.mark.parametrize(
    ("sub_version", "pub_version"),
    [("mqttv5", "311"), ("311", "mqttv5"), ("mqttv5", "mqttv5"), ("311", "311")],
    ids=["sub-5.0-pub-3.1.1", "sub-3.1.1-pub-5.0", "5.0", "3.1.1"],
)
async def test_mosquitto_sub_and_pub_at_every_qos(tmp_path: Path, sub_version: str, pub_version: str) -> None:
    async with running_edgetwin(tmp_path, mqtt={"sys_interval_s": 0.1}) as b:
        async with mosquitto_sub(b.port, sub_version, "-t", "#", "-q", "2", "-C", "3") as sub:
            await sub.subscribed()
            for qos in (0, 1, 2):
                await mosquitto_pub(b.port, pub_version, "-t", f"cli/{qos}", "-q", str(qos), "-m", f"m{qos}")
            assert await sub.messages() == ["cli/0|0|0|m0", "cli/1|1|0|m1", "cli/2|2|0|m2"]
        assert sub.process.returncode == 0


async def test_mosquitto_sub_hash_sees_no_sys_topics(tmp_path: Path) -> None:
    async with (
        running_edgetwin(tmp_path, mqtt={"sys_interval_s": 0.05}) as b,
        mosquitto_sub(b.port, "mqttv5", "-t", "#", "-C", "1") as everything,
        mosquitto_sub(b.port, "mqttv5", "-t", "$SYS/broker/version", "-C", "1") as sys,
    ):
        await everything.subscribed()
        assert await sys.messages() == ["$SYS/broker/version|0|1|edgetwin"]
        await trio.sleep(0.3)  # several $SYS rounds
        await mosquitto_pub(b.port, "mqttv5", "-t", "plain", "-m", "first")
        assert await everything.messages() == ["plain|0|0|first"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_retained_set_and_deleted(tmp_path: Path, version: str) -> None:
    async with running_edgetwin(tmp_path) as b:
        await mosquitto_pub(b.port, version, "-t", "cli/r", "-q", "1", "-r", "-m", "kept")
        async with mosquitto_sub(b.port, version, "-t", "cli/r", "-q", "1", "-C", "1") as sub:
            assert await sub.messages() == ["cli/r|1|1|kept"]
        await mosquitto_pub(b.port, version, "-t", "cli/r", "-q", "1", "-r", "-n")  # null message: delete
        async with mosquitto_sub(b.port, version, "-t", "cli/r", "-C", "1") as sub:
            await sub.subscribed()
            await mosquitto_pub(b.port, version, "-t", "cli/r", "-m", "live")
            assert await sub.messages() == ["cli/r|0|0|live"]  # no retained message came first


async def test_mosquitto_v5_properties(tmp_path: Path) -> None:
    async with running_edgetwin(tmp_path) as b:
        fmt = "MSG %t|%P|%C|%D|%R|%F|%p"
        async with mosquitto_sub(b.port, "mqttv5", "-t", "props/#", "-C", "1", "-F", fmt) as sub:
            await sub.subscribed()
            await mosquitto_pub(
                b.port,
                "mqttv5",
                "-t",
                "props/x",
                "-q",
                "1",
                "-m",
                "{}",
                *("-D", "publish", "user-property", "k", "v"),
                *("-D", "publish", "content-type", "application/json"),
                *("-D", "publish", "correlation-data", "abc"),
                *("-D", "publish", "response-topic", "reply/x"),
                *("-D", "publish", "payload-format-indicator", "1"),
            )
            assert await sub.messages() == ["props/x|k:v|application/json|abc|reply/x|1|{}"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_persistent_session_across_a_restart(tmp_path: Path, version: str) -> None:
    session = ["-c", "-i", f"cli-{version}", "-q", "1", "-t", "durable/#"]
    async with running_edgetwin(tmp_path) as b:
        async with mosquitto_sub(b.port, version, *session, "-E") as sub:  # -E: exit once subscribed
            await sub.messages()
        assert sub.process.returncode == 0
        for i in range(3):
            await mosquitto_pub(b.port, version, "-t", "durable/x", "-q", "1", "-m", f"q{i}")
    async with running_edgetwin(tmp_path) as b, mosquitto_sub(b.port, version, *session, "-C", "3") as sub:
        assert await sub.messages() == [f"durable/x|1|0|q{i}" for i in range(3)]


async def test_mosquitto_will_on_kill(tmp_path: Path) -> None:
    will = ["--will-topic", "wills/cli", "--will-payload", "killed", "--will-qos", "1"]
    async with (
        running_edgetwin(tmp_path) as b,
        mosquitto_sub(b.port, "mqttv5", "-t", "wills/#", "-q", "2", "-C", "1") as watcher,
    ):
        await watcher.subscribed()
        async with mosquitto_sub(b.port, "311", "-t", "nothing", *will) as doomed:
            await doomed.subscribed()
            doomed.process.send_signal(signal.SIGKILL)  # no DISCONNECT
            await doomed.process.wait()
        assert await watcher.messages() == ["wills/cli|1|0|killed"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_mosquitto_bad_password_is_refused(tmp_path: Path, version: str) -> None:
    async with running_edgetwin(tmp_path) as b:
        result = await mosquitto_pub(b.port, version, "-t", "x", "-m", "y", password="wrong", check=False)
        assert result.returncode != 0
        assert b"password" in result.stderr.lower() or b"not authori" in result.stderr.lower(), result.stderr
