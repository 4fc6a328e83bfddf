"""Optional TLS on the HTTP server, and the MQTT listener's honest refusal until the broker exists."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgetwin import app
from tests.conftest import make_settings


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def test_https_serves_and_keeps_the_setup_rule(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    cert, key = _self_signed(tmp_path)
    settings = make_settings(tmp_path, http={"tls_cert_file": str(cert), "tls_key_file": str(key)})
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: app.serve(
                settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        host, port = ports.http[0].rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        async with httpx.AsyncClient(verify=context) as client:
            r = await client.get(f"https://{ports.http[0]}/health")
        assert r.status_code == 200
        assert r.json()["status"] == "UP"
        # A TLS client that handshakes but sends no request gets the 408 over TLS at the deadline.
        raw = await trio.open_tcp_stream(host, int(port))
        tls = trio.SSLStream(raw, context, server_hostname="127.0.0.1")
        async with tls:
            await tls.do_handshake()
            start = trio.current_time()
            data = await tls.receive_some()
            assert trio.current_time() - start == pytest.approx(10, abs=0.5)
            assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        stop.set()


# Anonymous clients are refused unless mqtt.allow_anonymous (secure by default). paho's v2 callbacks report
# MQTT 3.1.1's return code 5 as reason code 135 ("Not authorized") too.
@pytest.mark.parametrize("version", [MQTTProtocolVersion.MQTTv311, MQTTProtocolVersion.MQTTv5])
def test_anonymous_mqtt_clients_are_refused_by_default(tmp_path: Path, version: MQTTProtocolVersion) -> None:
    results: list[int] = []

    async def main() -> None:
        settings = make_settings(tmp_path)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            ports = await nursery.start(
                lambda task_status: app.serve(
                    settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            host, port = ports.mqtt[0].rsplit(":", 1)

            def connect() -> None:
                client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=version)
                client.on_connect = lambda c, u, f, rc, p=None: results.append(int(rc.value))
                client.connect(host, int(port))
                for _ in range(20):
                    client.loop(timeout=0.1)
                    if results:
                        break
                client.disconnect()

            await trio.to_thread.run_sync(connect)
            stop.set()

    trio.run(main)
    assert results == [135]


@pytest.mark.parametrize(
    ("connect", "connack"),
    [
        # CONNECT, MQTT 3.1.1 (level 4), client id "c", no credentials -> CONNACK 5 (not authorised)
        (b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c", b"\x20\x02\x00\x05"),
        # CONNECT, MQTT 5 (level 5), no properties -> CONNACK reason 0x87 with a Reason String (0x1F)
        (
            b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01c",
            b"\x20\x4c\x00\x87\x49\x1f\x00\x46not authorized: credentials are required (mqtt.allow_anonymous is off)",
        ),
    ],
)
async def test_mqtt_listener_wire_bytes(tmp_path: Path, connect: bytes, connack: bytes) -> None:
    settings = make_settings(tmp_path)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: app.serve(
                settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        host, port = ports.mqtt[0].rsplit(":", 1)
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            await stream.send_all(connect)
            received = b""
            with trio.fail_after(5):
                while chunk := await stream.receive_some():
                    received += chunk
        assert received == connack  # then closed
        stop.set()
