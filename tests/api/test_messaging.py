"""The DSH Messaging API in-process: MessagingApi over the real broker, store and writer, through httpx's ASGI
transport (and straight through ASGI where httpx cannot send the request: no Content-Length, HTTP/1.0)."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import trio

from edgetwin.api import messaging
from edgetwin.api.auth import Authenticator
from edgetwin.api.messaging import MAX_PUBLISHES, MessagingApi, handles
from edgetwin.config import (
    AuthSettings,
    JwtIssuer,
    MessagingSettings,
    MqttSettings,
    User,
    settings_from_mapping,
)
from edgetwin.core.mqtt_store import BrokerStore, RetainedMessage
from edgetwin.core.writer import StoreWriter
from edgetwin.errors import ConfigError, StoreError
from edgetwin.mqtt.broker import Broker
from edgetwin.store import Store
from tests.api.conftest import basic

SECRET = "a messaging test secret of at least 32 bytes"
ISSUER = "https://dsh.example"
AUTH = AuthSettings(
    users=(
        User("ditto", password="ditto", publish=("#",), subscribe=("#",)),
        User("device", password="d", publish=("/tt/weather/#",), subscribe=("/tt/weather/#",)),
        User("reader", password="r", subscribe=("/tt/#",)),
        User("nobody", password="n"),
    ),
    jwt=(JwtIssuer(prefix="dsh", issuer=ISSUER, secret=SECRET),),
)
DITTO = {"Authorization": basic("ditto", "ditto")}
DEVICE = {"Authorization": basic("device", "d")}
READER = {"Authorization": basic("reader", "r")}
NOBODY = {"Authorization": basic("nobody", "n")}
STREAMS = ("weather", "water")
TOPIC = "/tt/weather/1/2/0/2/0/0/3/3/1/3/3/2/0/0/0/1"
SINGLE = "/data/v0/single" + TOPIC
TEXT = {"Content-Type": "text/plain"}


def token(claims: list[dict[str, Any]]) -> dict[str, str]:
    payload = {"iss": ISSUER, "sub": "device-7", "exp": time.time() + 3600, "claims": claims}
    return {"Authorization": "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")}


def claim(action: str, stream: str, topic: str) -> dict[str, Any]:
    return {
        "action": action,
        "resource": {"type": "topic", "prefix": "/tt", "stream": stream, "topic": topic},
    }


@dataclass
class Env:
    app: MessagingApi
    broker: Broker

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://edge.example",
            headers=DITTO if headers is None else headers,
        )


@contextlib.asynccontextmanager
async def open_env(path: Path, **settings: Any) -> AsyncIterator[Env]:
    with Store.open(path, map_size_mb=16, max_map_size_mb=64) as store:
        writer = StoreWriter(store, queue_size=256, max_batch=64)
        authenticator = Authenticator(AUTH)
        broker = Broker(MqttSettings(), authenticator, BrokerStore(store, writer, clock=time.time))
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.serve)
            app = MessagingApi(broker, authenticator, MessagingSettings(**{"streams": STREAMS, **settings}))
            yield Env(app, broker)
            writer.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_env(tmp_path / "data") as built:
        yield built


@pytest.fixture
async def client(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    async with env.client() as c:
        yield c


def error(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert body["status"] == response.status_code
    assert isinstance(body["message"], str)
    return response.status_code, body["error"]


async def asgi(
    app: MessagingApi,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes] | None = None,
    *,
    http_version: str = "1.1",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight through ASGI (headers exactly as given)."""
    pending = list(chunks or [b""])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "http_version": http_version,
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 4000),
    }
    await app(scope, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


def test_public_names_are_pinned() -> None:
    assert sorted(messaging.__all__) == sorted(
        ["MAX_PUBLISHES", "MAX_TOPIC_FILTERS", "PREFIX", "MessagingApi", "MessagingBroker", "handles"]
    )
    for name in messaging.__all__:
        assert hasattr(messaging, name), name


def test_handles_every_path_under_data_v0() -> None:
    assert handles("/data/v0/single/tt/weather/a")
    assert handles("/data/v0/multi")
    assert handles("/data/v0/anything")
    assert not handles("/data/v0")
    assert not handles("/data/v1/multi")
    assert not handles("/api/2/things")


def test_config_max_payload_kb() -> None:
    assert MessagingSettings().max_payload_kb == 128
    assert settings_from_mapping({"messaging": {"max_payload_kb": 4}}).messaging.max_payload_kb == 4
    with pytest.raises(ConfigError, match=r"^messaging\.max_payload_kb: must be greater than 0"):
        settings_from_mapping({"messaging": {"max_payload_kb": 0}})
    with pytest.raises(ConfigError, match=r"^messaging\.max_payload_kb: expected an integer"):
        settings_from_mapping({"messaging": {"max_payload_kb": "lots"}})


# ------------------------------------------------------------------------------------------ single


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", "application/json"])
async def test_post_then_get_returns_the_bytes_as_stored(
    client: httpx.AsyncClient, content_type: str
) -> None:
    body = b'{"temperature": 288.93}\n\xff'
    r = await client.post(SINGLE, content=body, headers={"Content-Type": content_type})
    assert (r.status_code, r.content) == (200, b"")
    assert r.headers["content-length"] == "0"
    r = await client.get(SINGLE, headers={"Accept": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content == body
    assert r.headers["content-length"] == str(len(body))


async def test_post_stores_a_retained_mqtt_message_with_qos(client: httpx.AsyncClient, env: Env) -> None:
    await client.post(SINGLE + "?qos=0", content=b"v", headers=TEXT)
    stored = env.broker.retained(TOPIC)
    assert isinstance(stored, RetainedMessage)
    assert (stored.topic, stored.payload, stored.qos) == (TOPIC, b"v", 0)
    await client.post(SINGLE, content=b"w", headers={"Content-Type": "text/plain; charset=utf-8"})
    stored = env.broker.retained(TOPIC)
    assert stored is not None
    assert (stored.payload, stored.qos) == (b"w", 1)


async def test_base64_body_is_decoded_and_accept_base64_encodes(client: httpx.AsyncClient) -> None:
    payload = bytes(range(256))
    text = base64.encodebytes(payload)  # lines of 76 characters with newlines
    r = await client.post(SINGLE, content=text, headers={"Content-Type": "base64"})
    assert r.status_code == 200
    r = await client.get(SINGLE, headers={"Accept": "application/octet-stream"})
    assert r.content == payload
    assert r.headers["content-type"] == "application/octet-stream"
    r = await client.get(SINGLE, headers={"Accept": "base64"})
    assert r.headers["content-type"] == "base64"
    assert r.content == base64.b64encode(payload)
    # Padding is optional.
    await client.post(SINGLE, content=b"aGk", headers={"Content-Type": "base64"})
    assert (await client.get(SINGLE, headers={"Accept": "text/plain"})).content == b"hi"


async def test_invalid_base64_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(SINGLE, content=b"not base64!", headers={"Content-Type": "base64"})
    assert error(r) == (400, "messaging:payload.invalid")


@pytest.mark.parametrize(
    ("accept", "content_type", "encoded"),
    [
        (None, "application/octet-stream", False),
        ("*/*", "application/octet-stream", False),
        ("text/plain", "text/plain", False),
        ("text/*", "text/plain", False),
        ("application/json", "application/json", False),
        ("application/json;q=0.5, base64", "base64", True),
        ("base64;q=0.2, text/plain;q=0.9, image/png", "text/plain", False),
        ("text/html, */*;q=0.8", "application/octet-stream", False),
    ],
)
async def test_accept(
    client: httpx.AsyncClient, accept: str | None, content_type: str, encoded: bool
) -> None:
    await client.post(SINGLE, content=b"22.5", headers=TEXT)
    request = client.build_request("GET", SINGLE)
    if accept is None:
        del request.headers["accept"]
    else:
        request.headers["accept"] = accept
    r = await client.send(request)
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.content == (b"MjIuNQ==" if encoded else b"22.5")


async def test_accept_without_a_servable_type_is_400(client: httpx.AsyncClient) -> None:
    await client.post(SINGLE, content=b"1", headers=TEXT)
    for accept in ("image/png", "text/plain;q=0"):
        assert error(await client.get(SINGLE, headers={"Accept": accept})) == (
            400,
            "messaging:accept.invalid",
        )


async def test_get_without_a_value_is_404(client: httpx.AsyncClient) -> None:
    assert error(await client.get(SINGLE)) == (404, "messaging:value.notfound")


async def test_etag_and_if_none_match(client: httpx.AsyncClient) -> None:
    await client.post(SINGLE, content=b"on", headers=TEXT)
    r = await client.get(SINGLE, headers={"Accept": "text/plain"})
    etag = r.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    r = await client.get(SINGLE, headers={"Accept": "text/plain", "If-None-Match": etag})
    assert (r.status_code, r.content, r.headers["etag"]) == (304, b"", etag)
    assert "content-length" not in r.headers
    for condition in (f'"other", W/{etag}', "*"):
        assert (await client.get(SINGLE, headers={"If-None-Match": condition})).status_code == 304
    # The base64 representation has its own tag.
    r = await client.get(SINGLE, headers={"Accept": "base64", "If-None-Match": etag})
    assert r.status_code == 200
    assert r.headers["etag"] != etag
    # The same value posted again keeps its tag; another value changes it.
    await client.post(SINGLE, content=b"on", headers=TEXT)
    assert (await client.get(SINGLE, headers={"If-None-Match": etag})).status_code == 304
    await client.post(SINGLE, content=b"off", headers=TEXT)
    r = await client.get(SINGLE, headers={"If-None-Match": etag})
    assert (r.status_code, r.content) == (200, b"off")
    # No value: 404, whatever the condition.
    await client.delete(SINGLE)
    assert (await client.get(SINGLE, headers={"If-None-Match": "*"})).status_code == 404


async def test_post_parameters(client: httpx.AsyncClient, env: Env) -> None:
    await client.post(SINGLE, content=b"kept", headers=TEXT)
    r = await client.post(SINGLE, params={"retained": "false", "qos": "0"}, content=b"live", headers=TEXT)
    assert r.status_code == 200
    stored = env.broker.retained(TOPIC)
    assert stored is not None
    assert stored.payload == b"kept"
    r = await client.post(SINGLE, params={"retained": "TRUE", "qos": "1"}, content=b"new", headers=TEXT)
    assert r.status_code == 200
    assert (await client.get(SINGLE)).content == b"new"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"qos": "2"}, "messaging:qos.invalid"),
        ({"qos": ""}, "messaging:qos.invalid"),
        ({"qos": "one"}, "messaging:qos.invalid"),
        ({"retained": "yes"}, "messaging:retained.invalid"),
        ({"retained": ""}, "messaging:retained.invalid"),
    ],
)
async def test_invalid_parameters_are_400(
    client: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    r = await client.post(SINGLE, params=params, content=b"x", headers=TEXT)
    assert error(r) == (400, code)


async def test_empty_retained_post_deletes_like_mqtt(client: httpx.AsyncClient) -> None:
    await client.post(SINGLE, content=b"x", headers=TEXT)
    assert (await client.post(SINGLE, content=b"", headers=TEXT)).status_code == 200
    assert (await client.get(SINGLE)).status_code == 404


async def test_delete_removes_the_value_and_is_200_without_one(client: httpx.AsyncClient) -> None:
    await client.post(SINGLE, content=b"x", headers=TEXT)
    r = await client.delete(SINGLE)
    assert (r.status_code, r.content) == (200, b"")
    assert error(await client.get(SINGLE)) == (404, "messaging:value.notfound")
    assert (await client.delete(SINGLE)).status_code == 200


@pytest.mark.parametrize("content_type", [None, "application/xml", "text/html", "multipart/form-data"])
async def test_unsupported_media_type_is_415(env: Env, content_type: str | None) -> None:
    headers = [(b"authorization", DITTO["Authorization"].encode()), (b"content-length", b"1")]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    status, _, body = await asgi(env.app, "POST", SINGLE, headers, [b"x"])
    assert status == 415
    assert orjson.loads(body)["error"] == "mediatype.unsupported"


async def test_missing_content_length_is_411(env: Env) -> None:
    auth = (b"authorization", DITTO["Authorization"].encode())
    text = (b"content-type", b"text/plain")
    for headers in ([auth, text], [auth, text, (b"transfer-encoding", b"chunked")]):
        status, _, body = await asgi(env.app, "POST", SINGLE, headers, [b"x", b"y"])
        assert status == 411
        assert orjson.loads(body)["error"] == "messaging:contentlength.required"
    json = (b"content-type", b"application/json")
    status, _, _ = await asgi(env.app, "POST", "/data/v0/multi", [auth, json], [b"{}"])
    assert status == 411


async def test_chunked_request_from_httpx_is_411(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    r = await client.post(SINGLE, content=chunks(), headers=TEXT)
    assert error(r) == (411, "messaging:contentlength.required")


async def test_payload_limit_is_413(tmp_path: Path) -> None:
    async with open_env(tmp_path / "data", max_payload_kb=1) as env, env.client() as client:
        assert (await client.post(SINGLE, content=b"x" * 1024, headers=TEXT)).status_code == 200
        r = await client.post(SINGLE, content=b"x" * 1025, headers=TEXT)
        assert error(r) == (413, "messaging:payload.toolarge")
        r = await client.post(
            SINGLE, content=base64.b64encode(b"x" * 1024), headers={"Content-Type": "base64"}
        )
        assert r.status_code == 200
        r = await client.post(
            SINGLE, content=base64.b64encode(b"x" * 1025), headers={"Content-Type": "base64"}
        )
        assert error(r) == (413, "messaging:payload.toolarge")
        # Refused from the Content-Length, before the body is read.
        headers = [
            (b"authorization", DITTO["Authorization"].encode()),
            (b"content-type", b"text/plain"),
            (b"content-length", b"999999999"),
        ]
        status, _, _ = await asgi(env.app, "POST", SINGLE, headers, [b"x"])
        assert status == 413


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/data/v0/single/tt/unknown/a", "messaging:stream.notfound"),
        ("/data/v0/single/tt/weather", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/a/", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/a//b", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/a/+/b", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/a/%2B", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/a/%23", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/a%2Fb", "messaging:topic.invalid"),
        ("/data/v0/single/tt/weather/a%00b", "messaging:topic.invalid"),
        ("/data/v0/single/xx/weather/a", "messaging:topic.invalid"),
        ("/data/v0/single/weather/a/b", "messaging:topic.invalid"),
        ("/data/v0/single/", "messaging:topic.invalid"),
        ("/data/v0/single", "resource.notfound"),
        ("/data/v0/multi/x", "resource.notfound"),
        ("/data/v0/other", "resource.notfound"),
        ("/data/v0/", "resource.notfound"),
        ("/data/v0%2Fsingle/tt/weather/a", "resource.notfound"),
    ],
)
async def test_unsupported_topic_paths_are_404(client: httpx.AsyncClient, path: str, code: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        r = await client.request(method, path, content=b"x", headers=TEXT)
        assert error(r) == (404, code), (method, path)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "HEAD", "OPTIONS"])
async def test_other_methods_on_single_are_405(client: httpx.AsyncClient, method: str) -> None:
    r = await client.request(method, SINGLE)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST, GET, DELETE"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_on_multi_are_405(client: httpx.AsyncClient, method: str) -> None:
    r = await client.request(method, "/data/v0/multi")
    assert error(r) == (405, "method.notallowed")
    assert r.headers["allow"] == "POST"


@pytest.mark.parametrize("http_version", ["1.0", "2", "3"])
async def test_not_http_1_1_is_505(env: Env, http_version: str) -> None:
    headers = [(b"authorization", DITTO["Authorization"].encode())]
    status, _, body = await asgi(env.app, "GET", SINGLE, headers, http_version=http_version)
    assert status == 505
    assert orjson.loads(body)["error"] == "messaging:httpversion.notsupported"
    # Before authentication: no credentials are needed to learn it.
    status, _, _ = await asgi(env.app, "GET", SINGLE, [], http_version=http_version)
    assert status == 505


# --------------------------------------------------------------------------------------------- auth


async def test_missing_or_wrong_credentials_are_401(env: Env) -> None:
    for headers in ({}, {"Authorization": basic("ditto", "wrong")}, {"Authorization": "Bearer x.y.z"}):
        async with env.client(headers) as client:
            for method in ("GET", "POST", "DELETE"):
                r = await client.request(method, SINGLE, content=b"x", headers=TEXT)
                assert error(r) == (401, "gateway:authentication.failed")
                assert "www-authenticate" in r.headers
            r = await client.post("/data/v0/multi", json={"content-type": "text/plain", "topic-filters": []})
            assert r.status_code == 401


async def test_topic_permissions(env: Env) -> None:
    other = "/data/v0/single/tt/water/x"
    async with env.client(DEVICE) as device, env.client(READER) as reader, env.client(NOBODY) as nobody:
        assert (await device.post(SINGLE, content=b"1", headers=TEXT)).status_code == 200
        assert (await device.get(SINGLE)).status_code == 200
        assert error(await device.post(other, content=b"1", headers=TEXT)) == (
            403,
            "messaging:topic.forbidden",
        )
        assert error(await device.delete(other)) == (403, "messaging:topic.forbidden")
        assert error(await device.get(other)) == (403, "messaging:topic.forbidden")
        # subscribe only: reads everywhere under /tt, publishes nowhere.
        assert (await reader.get(SINGLE)).status_code == 200
        assert (await reader.get(other)).status_code == 404
        assert (await reader.post(SINGLE, content=b"1", headers=TEXT)).status_code == 403
        assert (await reader.delete(SINGLE)).status_code == 403
        # No list, no access.
        for method in ("GET", "POST", "DELETE"):
            assert (await nobody.request(method, SINGLE, content=b"1", headers=TEXT)).status_code == 403


async def test_jwt_with_dsh_claims(env: Env) -> None:
    headers = token([claim("publish", "weather", "1/2/#"), claim("subscribe", "weather", "1/+/#")])
    async with env.client(headers) as device:
        assert (await device.post(SINGLE, content=b"t", headers=TEXT)).status_code == 200
        assert (await device.get(SINGLE)).content == b"t"
        assert (await device.delete(SINGLE)).status_code == 200
        r = await device.post("/data/v0/single/tt/weather/2/x", content=b"t", headers=TEXT)
        assert error(r) == (403, "messaging:topic.forbidden")
        r = await device.post("/data/v0/single/tt/water/1/2/3", content=b"t", headers=TEXT)
        assert r.status_code == 403
        filters = {"content-type": "text/plain", "topic-filters": ["/tt/weather/1/2/#"]}
        assert (await device.post("/data/v0/multi", json=filters)).status_code == 200
        # "/tt/weather/1/#" also matches /tt/weather/1, which "1/+/#" does not allow.
        filters["topic-filters"] = ["/tt/weather/1/#"]
        assert error(await device.post("/data/v0/multi", json=filters)) == (403, "messaging:topic.forbidden")
    # A token without claims may do nothing.
    async with env.client(token([])) as bare:
        assert (await bare.get(SINGLE)).status_code == 403


# -------------------------------------------------------------------------------------------- multi


async def _seed(client: httpx.AsyncClient, values: dict[str, bytes]) -> None:
    for topic, value in values.items():
        r = await client.post(
            "/data/v0/single" + topic, content=value, headers={"Content-Type": "text/plain"}
        )
        assert r.status_code == 200, r.text


BASE = "/tt/weather/1/2/0/2/0/0/3/3/1/3/3"


async def test_multi_the_seed_example(client: httpx.AsyncClient) -> None:
    await _seed(
        client,
        {
            f"{BASE}/2/0/0/0/1": b'{ "sunrise": 1617167648, "code": 250 }',
            f"{BASE}/2/0/0/1/1": b'{ "sunrise": 1617167648, "code": 135 }',
            f"{BASE}/1/0/0/0/0": b'{ "sunrise": 1617167648, "code": 765 }',
            f"{BASE}/9/0/0/0/0": b"not asked for",
        },
    )
    body = (
        b'{\n"content-type": "text/plain",\n"topic-filters": [\n'
        + f'    "{BASE}/2/#",\n    "{BASE}/1/#",\n    "{BASE}/0/#"\n]\n}}'.encode()
    )
    r = await client.post("/data/v0/multi", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    # Grouped by filter in request order, as the seed shows.
    assert r.json() == [
        {"topic": f"{BASE}/2/0/0/0/1", "payload": '{ "sunrise": 1617167648, "code": 250 }'},
        {"topic": f"{BASE}/2/0/0/1/1", "payload": '{ "sunrise": 1617167648, "code": 135 }'},
        {"topic": f"{BASE}/1/0/0/0/0", "payload": '{ "sunrise": 1617167648, "code": 765 }'},
    ]


async def test_multi_base64_wildcards_and_each_topic_once(client: httpx.AsyncClient, env: Env) -> None:
    await _seed(client, {"/tt/weather/a/x": b"1", "/tt/water/b/x": b"\xff", "/tt/water/c": b"3"})
    # Values outside the layout (retained over MQTT) are not the messaging API's.
    await env.broker.publish("/tt/weather", b"no topic level", qos=1, retain=True)
    await env.broker.publish("/tt/weather/a//x", b"empty level", qos=1, retain=True)
    await env.broker.publish("/tt/other/a", b"unknown stream", qos=1, retain=True)
    await env.broker.publish("plain/topic", b"not /tt", qos=1, retain=True)
    r = await client.post(
        "/data/v0/multi", json={"content-type": "base64", "topic-filters": ["/tt/+/+/x", "#"]}
    )
    assert r.status_code == 200
    assert r.json() == [
        {"topic": "/tt/water/b/x", "payload": "/w=="},
        {"topic": "/tt/weather/a/x", "payload": "MQ=="},
        {"topic": "/tt/water/c", "payload": "Mw=="},
    ]
    r = await client.post(
        "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": ["+/+/water/#"]}
    )
    assert r.json() == [
        {"topic": "/tt/water/b/x", "payload": "\ufffd"},
        {"topic": "/tt/water/c", "payload": "3"},
    ]
    r = await client.post("/data/v0/multi", json={"content-type": "text/plain", "topic-filters": []})
    assert r.json() == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{", 400, "json.invalid"),
        (b"[]", 400, "messaging:request.invalid"),
        (b'{"topic-filters": ["/tt/weather/#"]}', 400, "messaging:request.invalid"),
        (b'{"content-type": "text/plain"}', 400, "messaging:request.invalid"),
        (b'{"content-type": 1, "topic-filters": []}', 400, "messaging:request.invalid"),
        (
            b'{"content-type": "text/plain", "topic-filters": "/tt/weather/#"}',
            400,
            "messaging:request.invalid",
        ),
        (b'{"content-type": "text/plain", "topic-filters": [1]}', 400, "messaging:request.invalid"),
        (
            b'{"content-type": "text/plain", "topic-filters": ["/tt/weather/a#"]}',
            400,
            "messaging:topicfilter.invalid",
        ),
        (
            b'{"content-type": "text/plain", "topic-filters": ["/tt/#/a"]}',
            400,
            "messaging:topicfilter.invalid",
        ),
        (b'{"content-type": "text/plain", "topic-filters": [""]}', 400, "messaging:topicfilter.invalid"),
        (
            b'{"content-type": "application/json", "topic-filters": []}',
            415,
            "messaging:contenttype.unsupported",
        ),
        (b'{"content-type": "text/plain", "topic-filters": ["/foo/#"]}', 404, "messaging:topic.invalid"),
        (
            b'{"content-type": "text/plain", "topic-filters": ["tt/weather/#"]}',
            404,
            "messaging:topic.invalid",
        ),
        (b'{"content-type": "text/plain", "topic-filters": ["/tt/weather"]}', 404, "messaging:topic.invalid"),
        (b'{"content-type": "text/plain", "topic-filters": ["/tt"]}', 404, "messaging:topic.invalid"),
        (
            b'{"content-type": "text/plain", "topic-filters": ["/tt/nope/#"]}',
            404,
            "messaging:stream.notfound",
        ),
    ],
)
async def test_multi_errors(client: httpx.AsyncClient, body: bytes, status: int, code: str) -> None:
    r = await client.post("/data/v0/multi", content=body, headers={"Content-Type": "application/json"})
    assert error(r) == (status, code)


async def test_multi_needs_application_json(client: httpx.AsyncClient) -> None:
    body = b'{"content-type": "text/plain", "topic-filters": []}'
    for content_type in ("text/plain", "base64"):
        r = await client.post("/data/v0/multi", content=body, headers={"Content-Type": content_type})
        assert error(r) == (415, "mediatype.unsupported")


async def test_multi_filter_permissions_are_the_brokers(env: Env) -> None:
    async with env.client(DEVICE) as device:
        for allowed in (["/tt/weather/#"], ["/tt/weather/+/x"], ["/tt/weather/a"]):
            r = await device.post(
                "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": allowed}
            )
            assert r.status_code == 200, allowed
        # As a SUBSCRIBE: "#" could match more than /tt/weather/#, even if the layout narrows it.
        for forbidden in (["#"], ["/tt/+/x"], ["/tt/weather/#", "/tt/water/#"]):
            r = await device.post(
                "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": forbidden}
            )
            assert error(r) == (403, "messaging:topic.forbidden"), forbidden


async def test_multi_publishes_before_reading(client: httpx.AsyncClient, env: Env) -> None:
    await _seed(client, {"/tt/weather/dev/desired": b'{"on": true}'})
    request = {
        "content-type": "text/plain",
        "topic-filters": ["/tt/weather/dev/#"],
        "publish": [
            {"topic": "/tt/weather/dev/reported", "payload": '{"on": false}'},
            {"topic": "/tt/weather/dev/raw", "payload": "AAE=", "content-type": "base64", "qos": 0},
            {"topic": "/tt/weather/dev/event", "payload": "boot", "retained": False},
        ],
    }
    r = await client.post("/data/v0/multi", json=request)
    assert r.status_code == 200
    assert r.json() == [
        {"topic": "/tt/weather/dev/desired", "payload": '{"on": true}'},
        {"topic": "/tt/weather/dev/raw", "payload": "\x00\x01"},
        {"topic": "/tt/weather/dev/reported", "payload": '{"on": false}'},
    ]
    raw = env.broker.retained("/tt/weather/dev/raw")
    assert raw is not None
    assert (raw.payload, raw.qos) == (b"\x00\x01", 0)
    # The request's content-type is the default of each publication's.
    r = await client.post(
        "/data/v0/multi",
        json={
            "content-type": "base64",
            "topic-filters": [],
            "publish": [{"topic": "/tt/weather/dev/raw", "payload": "AgM="}],
        },
    )
    assert (r.status_code, r.json()) == (200, [])
    raw = env.broker.retained("/tt/weather/dev/raw")
    assert raw is not None
    assert raw.payload == b"\x02\x03"


@pytest.mark.parametrize(
    ("publication", "status", "code"),
    [
        ("not an object", 400, "messaging:request.invalid"),
        ({"payload": "x"}, 400, "messaging:request.invalid"),
        ({"topic": "/tt/weather/a"}, 400, "messaging:request.invalid"),
        ({"topic": "/tt/weather/a", "payload": 1}, 400, "messaging:request.invalid"),
        ({"topic": "/tt/weather/a", "payload": "x", "qos": 2}, 400, "messaging:qos.invalid"),
        ({"topic": "/tt/weather/a", "payload": "x", "qos": True}, 400, "messaging:qos.invalid"),
        ({"topic": "/tt/weather/a", "payload": "x", "retained": "true"}, 400, "messaging:retained.invalid"),
        (
            {"topic": "/tt/weather/a", "payload": "!!", "content-type": "base64"},
            400,
            "messaging:payload.invalid",
        ),
        (
            {"topic": "/tt/weather/a", "payload": "x", "content-type": "x/y"},
            415,
            "messaging:contenttype.unsupported",
        ),
        ({"topic": "/tt/weather/a/#", "payload": "x"}, 404, "messaging:topic.invalid"),
        ({"topic": "/tt/weather//a", "payload": "x"}, 404, "messaging:topic.invalid"),
        ({"topic": "tt/weather/a", "payload": "x"}, 404, "messaging:topic.invalid"),
        ({"topic": "/tt/nope/a", "payload": "x"}, 404, "messaging:stream.notfound"),
        ({"topic": "/tt/water/a", "payload": "x"}, 403, "messaging:topic.forbidden"),
    ],
)
async def test_multi_publication_errors_publish_nothing(
    env: Env, publication: object, status: int, code: str
) -> None:
    request = {
        "content-type": "text/plain",
        "topic-filters": ["/tt/weather/#"],
        "publish": [{"topic": "/tt/weather/first", "payload": "1"}, publication],
    }
    async with env.client(DEVICE) as device:
        assert error(await device.post("/data/v0/multi", json=request)) == (status, code)
    assert env.broker.retained("/tt/weather/first") is None


async def test_multi_limits(tmp_path: Path) -> None:
    async with open_env(tmp_path / "data", max_payload_kb=1) as env, env.client() as client:
        big = {"topic": "/tt/weather/a", "payload": "x" * 1025}
        r = await client.post(
            "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": [], "publish": [big]}
        )
        assert error(r) == (413, "messaging:payload.toolarge")
        many = [{"topic": "/tt/weather/a", "payload": "x"}] * (MAX_PUBLISHES + 1)
        r = await client.post(
            "/data/v0/multi", json={"content-type": "text/plain", "topic-filters": [], "publish": many}
        )
        assert error(r) == (400, "messaging:request.invalid")
        r = await client.post(
            "/data/v0/multi",
            json={"content-type": "text/plain", "topic-filters": ["/tt/weather/a"] * 257},
        )
        assert error(r) == (400, "messaging:request.invalid")
        r = await client.post(
            "/data/v0/multi",
            json={"content-type": "text/plain", "topic-filters": ["/tt/weather/" + "a" * (70 * 1024)]},
        )
        assert error(r) == (413, "request.toolarge")


# ------------------------------------------------------------------------------------------- failures


class _BrokenBroker:
    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        await trio.lowlevel.checkpoint()
        raise StoreError("The store could not be written.")

    def retained(self, topic: str) -> RetainedMessage | None:
        raise RuntimeError("a bug")

    def retained_matching(
        self, topic_filters: list[str], *, limit: int | None = None
    ) -> list[RetainedMessage]:
        return []


async def test_a_failing_service_is_500(caplog: pytest.LogCaptureFixture) -> None:
    app = MessagingApi(_BrokenBroker(), Authenticator(AUTH), MessagingSettings(streams=STREAMS))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://edge.example", headers=DITTO
    ) as client:
        assert error(await client.post(SINGLE, content=b"x", headers=TEXT)) == (500, "edgetwin:store.failed")
        assert error(await client.delete(SINGLE)) == (500, "edgetwin:store.failed")
        assert error(await client.get(SINGLE)) == (500, "internalerror")
    assert "request GET" in caplog.text
