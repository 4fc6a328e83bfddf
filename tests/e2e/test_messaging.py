"""The DSH Messaging API against the real appliance over real sockets: the seed's examples byte for byte, each
status code of its tables, HTTP and MQTT (paho-mqtt) sharing the retained values, a JWT with DSH claims, and
the strict HTTP rules (505 for HTTP/1.0, 408 at connection set-up, ``Connection: close``)."""

from __future__ import annotations

import queue
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import paho.mqtt.client as mqtt
import pytest
import trio
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgetwin import app
from tests.conftest import make_settings

pytestmark = pytest.mark.e2e

SECRET = "a messaging e2e secret of at least 32 bytes"
ISSUER = "https://dsh.example"
AUTH = {
    "users": [
        {"name": "ditto", "password": "ditto", "publish": ["#"], "subscribe": ["#"]},
        {"name": "device", "password": "d", "publish": ["/tt/weather/#"], "subscribe": ["/tt/weather/#"]},
    ],
    "jwt": [{"prefix": "dsh", "issuer": ISSUER, "secret": SECRET}],
}
DITTO = "Basic ZGl0dG86ZGl0dG8="
WAIT_S = 5.0
TOPIC = "/tt/weather/1/2/0/2/0/0/3/3/1/3/3/2/0/0/0/1"

# The seed's example body, as printed there.
WEATHER = b"""{
    "sunrise": 1617167648,
    "code": 800,
    "snow_3h": 0,
    "rain_3h": 0,
    "shortdesc": "Clear",
    "icon": "http://openweathermap.org/img/w/01d.png",
    "description": "clear sky",
    "winddir": 292,
    "pressure": 1021,
    "cloudcover": 0,
    "sunset": 1617214214,
    "temperature": 288.93,
    "humidity": 60,
    "windspeed": 0.45,
    "timestamp": 1617182232
}"""


def dsh_token(*claims: tuple[str, str]) -> str:
    """A JWT whose DSH claims grant ``(action, topic pattern)`` on stream ``weather``."""
    payload = {
        "iss": ISSUER,
        "sub": "weather-station-1",
        "exp": time.time() + 3600,
        "claims": [
            {
                "action": action,
                "resource": {"type": "topic", "prefix": "/tt", "stream": "weather", "topic": topic},
            }
            for action, topic in claims
        ],
    }
    return jwt.encode(payload, SECRET, algorithm="HS256")


TOKEN = dsh_token(("publish", "1/2/#"), ("subscribe", "1/2/#"))


@dataclass
class Running:
    host: str
    http_port: int
    mqtt_port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Running]:
    settings = make_settings(
        tmp_path,
        auth=AUTH,
        http={"shutdown_grace_s": 0.2},
        messaging={"streams": ["weather", "water"], "max_payload_kb": 4},
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT_S):
            ports = await nursery.start(
                lambda task_status: app.serve(
                    settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
        host, http_port = ports.http[0].rsplit(":", 1)
        yield Running(host, int(http_port), int(ports.mqtt[0].rsplit(":", 1)[1]))
        stop.set()


# ----------------------------------------------------------------------------------------- raw HTTP


@dataclass
class RawResponse:
    # Hypercorn sends no reason phrase ("HTTP/1.1 200 "); RFC 9112 §4 lets clients ignore it.
    status_line: bytes
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after the response

    @property
    def status(self) -> int:
        version, code = self.status_line.split(b" ")[:2]
        assert version == b"HTTP/1.1"
        return int(code)


async def exchange(edge: Running, request: bytes) -> RawResponse:
    """Send ``request`` on a new connection and read one response, then whether the server closes."""
    async with await trio.open_tcp_stream(edge.host, edge.http_port) as stream:
        await stream.send_all(request)
        data = b""
        with trio.fail_after(WAIT_S):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                assert chunk
                body += chunk
        closed = False
        with trio.move_on_after(1.0):
            closed = await stream.receive_some(65536) == b""
        return RawResponse(lines[0], headers, body, closed)


def request_bytes(head: str, body: bytes = b"") -> bytes:
    """A request head written with ``\\n`` line ends (as in the seed) sent with CRLF, then the body."""
    return head.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


# --------------------------------------------------------------------------------------------- paho


class Mqtt:
    """A paho-mqtt 5.0 client with its own network thread; waits are bounded and run in a worker thread."""

    def __init__(self, port: int, user: str = "ditto", password: str = "ditto") -> None:
        self.port = port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
        self.client.username_pw_set(user, password)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._events: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p=None: self._events.put(("connack", rc.value))
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self._events.put(("suback", rcs[0].value))
        self.client.on_message = lambda c, u, message: self.messages.put(message)

    async def connect(self) -> None:
        def run() -> Any:
            self.client.connect("127.0.0.1", self.port)
            self.client.loop_start()
            return self._events.get(timeout=WAIT_S)

        assert await trio.to_thread.run_sync(run) == ("connack", 0)

    async def subscribe(self, topic_filter: str) -> None:
        def run() -> Any:
            self.client.subscribe(topic_filter, qos=1)
            return self._events.get(timeout=WAIT_S)

        assert await trio.to_thread.run_sync(run) == ("suback", 1)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> None:
        def run() -> None:
            self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=WAIT_S)

        await trio.to_thread.run_sync(run)

    async def message(self) -> mqtt.MQTTMessage:
        return await trio.to_thread.run_sync(lambda: self.messages.get(timeout=WAIT_S))

    async def nothing(self) -> None:
        await trio.sleep(0.3)
        assert self.messages.empty()

    async def close(self) -> None:
        def run() -> None:
            self.client.disconnect()
            self.client.loop_stop()

        await trio.to_thread.run_sync(run)


# ------------------------------------------------------------------------------ the seed's examples


def seed_post() -> bytes:
    head = f"""
POST /data/v0/single/tt/weather/1/2/0/2/0/0/3/3/1/3/3/2/0/0/0/1 HTTP/1.1
User-Agent: sleepy-device/1.0
Authorization: Bearer {TOKEN}
Content-Type: application/json
Content-Length: {len(WEATHER)}
Connection: close
"""
    return request_bytes(head, WEATHER)


def seed_get() -> bytes:
    return request_bytes(f"""
GET /data/v0/single/tt/weather/1/2/0/2/0/0/3/3/1/3/3/2/0/0/0/1 HTTP/1.1
User-Agent: sleepy-device/1.0
Authorization: Bearer {TOKEN}
Host: 127.0.0.1
Accept: application/json
Connection: close
""")


def seed_delete() -> bytes:
    return request_bytes(f"""
DELETE /data/v0/single/tt/weather/1/2/0/2/0/0/3/3/1/3/3/2/0/0/0/1 HTTP/1.1
User-Agent: sleepy-device/1.0
Authorization: Bearer {TOKEN}
Host: 127.0.0.1
Connection: close
""")


MULTI_BODY = b"""{
"content-type": "text/plain",
"topic-filters": [
    "/tt/weather/1/2/0/2/0/0/3/3/1/3/3/2/#",
    "/tt/weather/1/2/0/2/0/0/3/3/1/3/3/1/#",
    "/tt/weather/1/2/0/2/0/0/3/3/1/3/3/0/#"
]
}"""


def seed_multi() -> bytes:
    head = f"""
POST /data/v0/multi HTTP/1.1
User-Agent: sleepy-device/1.0
Authorization: Bearer {TOKEN}
Content-Type: application/json
Content-Length: {len(MULTI_BODY)}
Connection: close
"""
    return request_bytes(head, MULTI_BODY)


def with_host(request: bytes) -> bytes:
    return request.replace(b"\r\n", b"\r\nHost: 127.0.0.1\r\n", 1)


def assert_ok_and_closed(response: RawResponse) -> None:
    assert response.status == 200
    # The seed prints "Connection: Closed"; HTTP's token is "close" (RFC 9112 §9.6), and the server closes.
    assert response.headers["connection"] == "close"
    assert response.closed


async def test_seed_examples_post_get_delete(edge: Running) -> None:
    # The seed's POST has no Host header; see test_seed_examples_without_host for that exact request.
    response = await exchange(edge, with_host(seed_post()))
    assert_ok_and_closed(response)
    assert response.body == b""
    response = await exchange(edge, seed_get())
    assert_ok_and_closed(response)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(WEATHER))
    assert response.body == WEATHER
    response = await exchange(edge, seed_delete())
    assert_ok_and_closed(response)
    assert (await exchange(edge, seed_get())).status == 404


async def test_seed_example_multi(edge: Running) -> None:
    base = "/tt/weather/1/2/0/2/0/0/3/3/1/3/3"
    values = {
        f"{base}/2/0/0/0/1": '{ "sunrise": 1617167648, "code": 250, "snow_3h": 0, "rain_3h": 0 }',
        f"{base}/2/0/0/1/1": '{ "sunrise": 1617167648, "code": 135, "snow_3h": 0, "rain_3h": 0 }',
        f"{base}/1/0/0/0/0": '{ "sunrise": 1617167648, "code": 765, "snow_3h": 0, "rain_3h": 0 }',
    }
    async with httpx.AsyncClient(
        base_url=edge.base_url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        for topic, value in values.items():
            r = await client.post(
                f"/data/v0/single{topic}", content=value, headers={"Content-Type": "text/plain"}
            )
            assert r.status_code == 200
    response = await exchange(edge, with_host(seed_multi()))
    assert_ok_and_closed(response)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.body))
    assert orjson.loads(response.body) == [
        {"topic": topic, "payload": value} for topic, value in values.items()
    ]


async def test_seed_examples_without_host(edge: Running) -> None:
    # The seed's POST and multi examples send no Host: api.server adds an empty one (h11 would answer 400).
    assert (await exchange(edge, seed_post())).status == 200
    assert (await exchange(edge, seed_multi())).status == 200


# ----------------------------------------------------------------------- each status of the tables


async def test_each_status_code_of_the_tables(edge: Running) -> None:
    single = "/data/v0/single/tt/weather/a/b"
    auth = {"Authorization": DITTO}
    text = {**auth, "Content-Type": "text/plain"}
    async with httpx.AsyncClient(base_url=edge.base_url) as client:
        assert (await client.post(single, content=b"v", headers=text)).status_code == 200
        assert (await client.get(single, headers=auth)).status_code == 200
        assert (await client.delete(single, headers=auth)).status_code == 200
        # 400: invalid properties.
        assert (await client.post(single + "?qos=2", content=b"v", headers=text)).status_code == 400
        assert (await client.post(single + "?retained=maybe", content=b"v", headers=text)).status_code == 400
        r = await client.post(
            "/data/v0/multi", content=b"{not json", headers={**auth, "Content-Type": "application/json"}
        )
        assert r.status_code == 400
        # 401: missing or wrong.
        for headers in ({}, {"Authorization": "Basic ZGl0dG86bm8="}, {"Authorization": "Bearer a.b.c"}):
            assert (await client.get(single, headers=headers)).status_code == 401
        # 403: not allowed to publish / subscribe there.
        device = {"Authorization": "Basic ZGV2aWNlOmQ="}
        water = "/data/v0/single/tt/water/a"
        assert (
            await client.post(water, content=b"v", headers={**device, "Content-Type": "text/plain"})
        ).status_code == 403
        assert (await client.get(water, headers=device)).status_code == 403
        assert (await client.delete(water, headers=device)).status_code == 403
        r = await client.post(
            "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": ["#"]}, headers=device
        )
        assert r.status_code == 403
        # 404: no retained data, invalid layout, unknown stream.
        for path in (
            single,
            "/data/v0/single/tt/weather/a//b",
            "/data/v0/single/tt/weather/+",
            "/data/v0/single/tt/sky/a",
        ):
            assert (await client.get(path, headers=auth)).status_code == 404, path
        r = await client.post(
            "/data/v0/multi",
            json={"content-type": "text/plain", "topic-filters": ["/tt/sky/#"]},
            headers=auth,
        )
        assert r.status_code == 404
        # 405: another method.
        r = await client.put(single, content=b"v", headers=text)
        assert (r.status_code, r.headers["allow"]) == (405, "POST, GET, DELETE")
        r = await client.get("/data/v0/multi", headers=auth)
        assert (r.status_code, r.headers["allow"]) == (405, "POST")
        r = await client.head(single, headers=auth)
        assert (r.status_code, r.headers["allow"], r.content) == (405, "POST, GET, DELETE", b"")
        # 413: above messaging.max_payload_kb (4 here).
        assert (await client.post(single, content=b"x" * 4097, headers=text)).status_code == 413
        # 415: another media type (single), or a content-type the multi body does not know.
        r = await client.post(single, content=b"v", headers={**auth, "Content-Type": "image/png"})
        assert r.status_code == 415
        r = await client.post(
            "/data/v0/multi", json={"content-type": "image/png", "topic-filters": []}, headers=auth
        )
        assert r.status_code == 415
    # 411: no Content-Length (absent, or a chunked body), single and multi.
    for path, content_type in ((single, "text/plain"), ("/data/v0/multi", "application/json")):
        head = f"POST {path} HTTP/1.1\nHost: x\nAuthorization: {DITTO}\nContent-Type: {content_type}\nConnection: close"
        assert (await exchange(edge, request_bytes(head))).status == 411
        chunked = request_bytes(head + "\nTransfer-Encoding: chunked", b"2\r\n{}\r\n0\r\n\r\n")
        assert (await exchange(edge, chunked)).status == 411


async def test_http_1_0_is_505(edge: Running) -> None:
    for method, extra in (("GET", ""), ("POST", "Content-Type: text/plain\nContent-Length: 1\n")):
        head = f"{method} /data/v0/single/tt/weather/a HTTP/1.0\nHost: 127.0.0.1\nAuthorization: {DITTO}\n{extra}"
        response = await exchange(edge, request_bytes(head, b"v" if extra else b""))
        assert response.status == 505
        assert orjson.loads(response.body)["error"] == "messaging:httpversion.notsupported"
        assert response.closed


async def test_connection_setup_rule_applies(edge: Running, autojump_clock: trio.abc.Clock) -> None:
    async with await trio.open_tcp_stream(edge.host, edge.http_port) as stream:
        await stream.send_all(b"GET /data/v0/single/tt/weather/a HTTP/1.1\r\nHost: x\r\n")
        start = trio.current_time()
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
        assert trio.current_time() - start == pytest.approx(10, abs=0.5)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_keep_alive_serves_several_requests(edge: Running) -> None:
    async with httpx.AsyncClient(base_url=edge.base_url, headers={"Authorization": DITTO}) as client:
        for i in range(5):
            r = await client.post(
                "/data/v0/single/tt/weather/k", content=str(i), headers={"Content-Type": "text/plain"}
            )
            assert r.status_code == 200
            r = await client.get("/data/v0/single/tt/weather/k", headers={"Accept": "text/plain"})
            assert r.text == str(i)
            assert r.headers.get("connection") != "close"


# ---------------------------------------------------------------------------------- HTTP and MQTT


async def test_http_and_mqtt_share_the_retained_values(edge: Running) -> None:
    topic = "/tt/weather/station/7"
    path = "/data/v0/single" + topic
    watcher = Mqtt(edge.mqtt_port)
    await watcher.connect()
    await watcher.subscribe("/tt/weather/#")
    try:
        async with httpx.AsyncClient(base_url=edge.base_url, headers={"Authorization": DITTO}) as client:
            # HTTP -> MQTT: live subscribers get it, later subscribers get it as retained.
            r = await client.post(path, content=b"21.5", headers={"Content-Type": "text/plain"})
            assert r.status_code == 200
            message = await watcher.message()
            assert (message.topic, message.payload, message.qos) == (topic, b"21.5", 1)
            late = Mqtt(edge.mqtt_port)
            await late.connect()
            await late.subscribe(topic)
            retained = await late.message()
            assert (retained.payload, retained.retain) == (b"21.5", True)
            await late.close()
            # Not retained: delivered, but the latest value stays.
            r = await client.post(
                path + "?retained=false&qos=0", content=b"22", headers={"Content-Type": "text/plain"}
            )
            assert r.status_code == 200
            message = await watcher.message()
            assert (message.payload, message.qos) == (b"22", 0)
            assert (await client.get(path, headers={"Accept": "text/plain"})).content == b"21.5"
            # base64 over HTTP is the decoded bytes over MQTT.
            r = await client.post(path, content=b"AAEC", headers={"Content-Type": "base64"})
            assert (await watcher.message()).payload == b"\x00\x01\x02"
            # MQTT -> HTTP.
            await watcher.publish(topic, b'{"t": 23}')
            assert (await watcher.message()).payload == b'{"t": 23}'
            r = await client.get(path, headers={"Accept": "application/json"})
            assert (r.status_code, r.content) == (200, b'{"t": 23}')
            r = await client.post(
                "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": [topic]}
            )
            assert r.json() == [{"topic": topic, "payload": '{"t": 23}'}]
            # DELETE over HTTP: subscribers get the empty retained message, new ones get nothing.
            assert (await client.delete(path)).status_code == 200
            gone = await watcher.message()
            assert (gone.topic, gone.payload) == (topic, b"")
            late = Mqtt(edge.mqtt_port)
            await late.connect()
            await late.subscribe(topic)
            await late.nothing()
            await late.close()
            assert (await client.get(path)).status_code == 404
            # A delete over MQTT (empty retained) is seen by HTTP.
            await watcher.publish(topic, b"back")
            await watcher.message()
            assert (await client.get(path)).content == b"back"
            await watcher.publish(topic, b"")
            await watcher.message()
            assert (await client.get(path)).status_code == 404
    finally:
        await watcher.close()


async def test_jwt_dsh_claims_over_http_and_mqtt(edge: Running) -> None:
    token = dsh_token(("publish", "sensor/+/temp"), ("subscribe", "sensor/#"))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    async with httpx.AsyncClient(base_url=edge.base_url, headers=headers) as client:
        r = await client.post("/data/v0/single/tt/weather/sensor/9/temp", content=b"19")
        assert r.status_code == 200
        assert (await client.get("/data/v0/single/tt/weather/sensor/9/temp")).content == b"19"
        # Outside the claims: no publish to another level or stream; subscribe reaches the whole subtree only.
        assert (await client.post("/data/v0/single/tt/weather/sensor/9/hum", content=b"1")).status_code == 403
        assert (await client.post("/data/v0/single/tt/water/sensor/9/temp", content=b"1")).status_code == 403
        assert (await client.get("/data/v0/single/tt/weather/other")).status_code == 403
        r = await client.post(
            "/data/v0/multi",
            json={"content-type": "text/plain", "topic-filters": ["/tt/weather/sensor/#"]},
            headers={"Content-Type": "application/json"},
        )
        assert r.json() == [{"topic": "/tt/weather/sensor/9/temp", "payload": "19"}]
    # The same token as an MQTT password: the same permissions.
    device = Mqtt(edge.mqtt_port, user="weather-station-1", password=token)
    await device.connect()
    try:
        await device.subscribe("/tt/weather/sensor/#")
        retained = await device.message()
        assert (retained.topic, retained.payload) == ("/tt/weather/sensor/9/temp", b"19")
    finally:
        await device.close()


async def test_one_round_trip_post_and_fetch(edge: Running) -> None:
    desired = "/tt/weather/lamp/desired"
    async with httpx.AsyncClient(base_url=edge.base_url, headers={"Authorization": DITTO}) as client:
        await client.post(
            "/data/v0/single" + desired, content=b'{"on": true}', headers={"Content-Type": "text/plain"}
        )
        body = {
            "content-type": "text/plain",
            "topic-filters": ["/tt/weather/lamp/#"],
            "publish": [{"topic": "/tt/weather/lamp/reported", "payload": '{"on": false}'}],
        }
        r = await client.post("/data/v0/multi", json=body)
        assert r.json() == [
            {"topic": desired, "payload": '{"on": true}'},
            {"topic": "/tt/weather/lamp/reported", "payload": '{"on": false}'},
        ]
        # Conditional GET: the device that has the latest value gets a 304 without a body.
        r = await client.get("/data/v0/single" + desired)
        etag = r.headers["etag"]
        r = await client.get("/data/v0/single" + desired, headers={"If-None-Match": etag})
        assert (r.status_code, r.content) == (304, b"")
