"""The Things HTTP API end to end in-process: ThingsApi + real TwinService + real LMDB store and writer."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.conftest import BASE_URL, DITTO, Api, basic, error_of, open_api

_DITTO_HEADERS = [(b"authorization", DITTO["Authorization"].encode())]

T = "org.eclipse.ditto:t1"
THING = f"/api/2/things/{T}"


async def _create(
    client: httpx.AsyncClient, body: object | None = None, thing: str = THING
) -> httpx.Response:
    r = await client.put(thing, json={"attributes": {"a": 1}} if body is None else body)
    assert r.status_code == 201, r.text
    return r


# ---------------------------------------------------------------- thing root


async def test_put_creates_with_201_location_etag_and_body(client: httpx.AsyncClient) -> None:
    r = await client.put(THING, json={"attributes": {"a": 1}})
    assert r.status_code == 201
    assert r.headers["location"] == f"{BASE_URL}{THING}"
    assert r.headers["etag"] == '"rev:1"'
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"thingId": T, "policyId": T, "attributes": {"a": 1}}


async def test_put_existing_is_204_with_etag_and_no_body(client: httpx.AsyncClient) -> None:
    await _create(client)
    r = await client.put(THING, json={"attributes": {"b": 2}})
    assert r.status_code == 204
    assert r.headers["etag"] == '"rev:2"'
    assert r.content == b""
    assert "location" not in r.headers


async def test_get_thing_with_etag_and_fields(client: httpx.AsyncClient) -> None:
    await _create(
        client, {"attributes": {"a": 1, "b": {"c": 2}}, "features": {"f": {"properties": {"p": 1}}}}
    )
    r = await client.get(THING)
    assert r.status_code == 200
    assert r.headers["etag"] == '"rev:1"'
    assert r.json()["attributes"] == {"a": 1, "b": {"c": 2}}
    r = await client.get(THING, params={"fields": "thingId,attributes/b(c),_revision"})
    assert r.json() == {"thingId": T, "attributes": {"b": {"c": 2}}, "_revision": 1}


async def test_malformed_fields_is_400(client: httpx.AsyncClient) -> None:
    await _create(client)
    r = await client.get(THING, params={"fields": "attributes(a"})
    assert error_of(r) == (400, "json.fieldselector.invalid")


async def test_get_missing_thing_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get(THING)
    assert error_of(r) == (404, "things:thing.notfound")


async def test_delete_thing_then_404(client: httpx.AsyncClient) -> None:
    await _create(client)
    r = await client.delete(THING)
    assert r.status_code == 204
    assert r.content == b""
    assert error_of(await client.get(THING)) == (404, "things:thing.notfound")
    assert error_of(await client.delete(THING)) == (404, "things:thing.notfound")


async def test_invalid_thing_id_is_400(client: httpx.AsyncClient) -> None:
    r = await client.put("/api/2/things/no-namespace-colon", json={})
    assert error_of(r) == (400, "things:id.invalid")


async def test_put_body_thing_id_mismatch_is_400(client: httpx.AsyncClient) -> None:
    r = await client.put(THING, json={"thingId": "org.eclipse.ditto:other"})
    assert error_of(r) == (400, "things:id.notsettable")


async def test_put_lifts_inline_policy(client: httpx.AsyncClient) -> None:
    policy = {
        "entries": {
            "OWNER": {
                "subjects": {"nginx:ditto": {"type": "test"}},
                "resources": {
                    "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                    "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
                },
            }
        }
    }
    r = await client.put(THING, json={"policyId": "org.eclipse.ditto:p1", "_policy": policy})
    assert r.status_code == 201
    assert "_policy" not in r.json()
    assert r.json()["policyId"] == "org.eclipse.ditto:p1"
    got = await client.get(THING, params={"fields": "_policy"})
    assert got.json()["_policy"]["entries"]["OWNER"]["subjects"] == {"nginx:ditto": {"type": "test"}}


async def test_copy_policy_from_must_be_a_string(client: httpx.AsyncClient) -> None:
    r = await client.put(THING, json={"_copyPolicyFrom": 42})
    assert error_of(r) == (400, "json.format.invalid")


# ------------------------------------------------------------- sub-resources


@pytest.mark.parametrize(
    ("path", "value", "after"),
    [
        ("/policyId", "org.eclipse.ditto:t1", None),
        ("/definition", "org.eclipse.ditto:Model:1.0.0", None),
        ("/attributes", {"x": 1}, None),
        ("/attributes/a/b/c", [1, 2], None),
        ("/features", {"lamp": {}}, None),
        ("/features/lamp", {"properties": {"on": True}}, None),
        ("/features/lamp/definition", ["org.eclipse.ditto:lamp:1.0.0"], "/features/lamp"),
        ("/features/lamp/properties", {"on": False}, "/features/lamp"),
        ("/features/lamp/properties/color/r", 255, "/features/lamp"),
        ("/features/lamp/desiredProperties", {"on": True}, "/features/lamp"),
        ("/features/lamp/desiredProperties/deep/er", "x", "/features/lamp"),
    ],
)
async def test_sub_resource_put_get(
    client: httpx.AsyncClient, path: str, value: object, after: str | None
) -> None:
    await _create(client, {})
    if after is not None:
        assert (await client.put(THING + after, json={})).status_code == 201
    url = THING + path
    r = await client.put(url, json=value)
    if path == "/policyId":
        assert r.status_code == 204  # the policyId always exists
    else:
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"{BASE_URL}{url}"
        assert r.json() == value
    assert r.headers["etag"]
    got = await client.get(url)
    assert got.status_code == 200
    assert got.json() == value
    assert got.headers["etag"].startswith('"hash:')
    again = await client.put(url, json=value)
    assert again.status_code == 204
    assert again.headers["etag"] == got.headers["etag"]


@pytest.mark.parametrize(
    "path",
    [
        "/definition",
        "/attributes",
        "/attributes/a",
        "/features",
        "/features/lamp",
        "/features/lamp/definition",
        "/features/lamp/properties",
        "/features/lamp/properties/on",
        "/features/lamp/desiredProperties",
        "/features/lamp/desiredProperties/on",
    ],
)
async def test_sub_resource_delete(client: httpx.AsyncClient, path: str) -> None:
    await _create(
        client,
        {
            "definition": "org.eclipse.ditto:Model:1.0.0",
            "attributes": {"a": 1},
            "features": {
                "lamp": {
                    "definition": ["org.eclipse.ditto:lamp:1.0.0"],
                    "properties": {"on": True},
                    "desiredProperties": {"on": False},
                }
            },
        },
    )
    r = await client.delete(THING + path)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert (await client.get(THING + path)).status_code == 404


async def test_sub_resource_404_codes(client: httpx.AsyncClient) -> None:
    await _create(client, {"attributes": {"a": 1}, "features": {"f": {}}})
    assert error_of(await client.get(THING + "/attributes/nope")) == (404, "things:attribute.notfound")
    assert error_of(await client.get(THING + "/features/nope")) == (404, "things:feature.notfound")
    r = await client.put(THING + "/features/nope/properties/x", json=1)
    assert error_of(r) == (404, "things:feature.notfound")
    r = await client.get("/api/2/things/org.eclipse.ditto:missing/attributes")
    assert error_of(r) == (404, "things:thing.notfound")


async def test_fields_on_sub_resource_is_relative(client: httpx.AsyncClient) -> None:
    await _create(client, {"attributes": {"a": 1, "b": 2}})
    r = await client.get(THING + "/attributes", params={"fields": "b"})
    assert r.json() == {"b": 2}


async def test_empty_pointer_segment_is_400(client: httpx.AsyncClient) -> None:
    await _create(client)
    for url in (THING + "/attributes//x", THING + "/attributes/x//y", THING + "/features/f/properties//p"):
        r = await client.put(url, json=1)
        assert error_of(r) == (400, "json.pointer.invalid"), url


async def test_encoded_slash_stays_inside_its_segment(client: httpx.AsyncClient) -> None:
    await _create(client, {"attributes": {"a": {"b": 1}}})
    # a%2Fb is ONE key "a/b" (which does not exist), not the pointer a/b.
    r = await client.get(THING + "/attributes/a%2Fb")
    assert error_of(r) == (404, "things:attribute.notfound")
    assert (await client.get(THING + "/attributes/a/b")).json() == 1
    r = await client.put(THING + "/attributes/a%2Fb", json=1)
    assert error_of(r) == (400, "json.key.invalid")


async def test_encoded_characters_in_ids_and_keys(client: httpx.AsyncClient) -> None:
    url = (
        "/api/2/things/org.eclipse.ditto:foo%20bar/attributes/%E6%B8%A9%E5%BA%A6"  # 温度 (ö would be refused)
    )
    r = await client.put("/api/2/things/org.eclipse.ditto:foo%20bar", json={})
    assert r.status_code == 201
    assert r.json()["thingId"] == "org.eclipse.ditto:foo bar"
    r = await client.put(url, json="x")
    assert r.status_code == 201
    assert r.headers["location"] == f"{BASE_URL}{url}"
    assert (await client.get("/api/2/things/org.eclipse.ditto:foo%20bar/attributes")).json() == {"温度": "x"}


async def test_trailing_slash_is_ignored(client: httpx.AsyncClient) -> None:
    await _create(client)
    assert (await client.get(THING + "/")).status_code == 200
    assert (await client.get(THING + "/attributes/")).json() == {"a": 1}


# ----------------------------------------------------------------------- PATCH


async def test_patch_merges_with_204(client: httpx.AsyncClient) -> None:
    await _create(client, {"attributes": {"a": 1, "b": 2}})
    r = await client.patch(
        THING,
        content=b'{"attributes":{"a":null,"c":3}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 204
    assert r.headers["etag"] == '"rev:2"'
    assert (await client.get(THING + "/attributes")).json() == {"b": 2, "c": 3}


async def test_patch_sub_path_merges(client: httpx.AsyncClient) -> None:
    await _create(client, {"features": {"f": {"properties": {"x": 1}}}})
    r = await client.patch(
        THING + "/features/f/properties",
        content=b'{"y":2}',
        headers={"content-type": "application/merge-patch+json; charset=utf-8"},
    )
    assert r.status_code == 204
    assert (await client.get(THING + "/features/f/properties")).json() == {"x": 1, "y": 2}


async def test_patch_root_creates_missing_thing_with_201(client: httpx.AsyncClient) -> None:
    r = await client.patch(
        THING,
        content=b'{"attributes":{"a":1,"n":null}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert r.status_code == 201
    assert r.headers["location"] == f"{BASE_URL}{THING}"
    assert r.json()["attributes"] == {"a": 1}


async def test_patch_requires_merge_patch_media_type(client: httpx.AsyncClient) -> None:
    await _create(client)
    r = await client.patch(THING, json={"attributes": {"a": 2}})
    assert error_of(r) == (415, "mediatype.unsupported")
    r = await client.patch(THING, content=b"{}")
    assert error_of(r) == (415, "mediatype.unsupported")


async def test_patch_on_sub_path_of_missing_thing_is_404(client: httpx.AsyncClient) -> None:
    r = await client.patch(
        THING + "/attributes", content=b'{"a":1}', headers={"content-type": "application/merge-patch+json"}
    )
    assert error_of(r) == (404, "things:thing.notfound")


# ------------------------------------------------------- HTTP-level validation


async def test_put_requires_json_media_type(client: httpx.AsyncClient) -> None:
    for headers in ({"content-type": "text/plain"}, {"content-type": "application/merge-patch+json"}, {}):
        r = await client.put(THING, content=b"{}", headers=headers)
        assert error_of(r) == (415, "mediatype.unsupported"), headers


async def test_put_accepts_json_with_charset(client: httpx.AsyncClient) -> None:
    r = await client.put(THING, content=b"{}", headers={"content-type": "Application/JSON; charset=UTF-8"})
    assert r.status_code == 201


async def test_unparseable_json_is_400(client: httpx.AsyncClient) -> None:
    for body in (b"{", b"", b"{'a': 1}", b"NaN"):
        r = await client.put(THING, content=body, headers={"content-type": "application/json"})
        assert error_of(r) == (400, "json.invalid"), body


async def test_body_over_100_kb_is_413(client: httpx.AsyncClient) -> None:
    big = orjson.dumps({"attributes": {"blob": "x" * (100 * 1024)}})
    r = await client.put(THING, content=big, headers={"content-type": "application/json"})
    assert error_of(r) == (413, "things:thing.toolarge")


async def test_body_over_limit_without_content_length_is_413(api: Api) -> None:
    # Straight through ASGI: a chunked body with no Content-Length, refused once 100 kB have arrived.
    chunks = [{"type": "http.request", "body": b" " * 4096, "more_body": True}] * 30
    received: list[dict[str, Any]] = []
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = chunks[len(received)]
        received.append(message)
        return message

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "PUT",
        "path": THING,
        "raw_path": THING.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *_DITTO_HEADERS],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
    }
    await api.app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"])["error"] == "things:thing.toolarge"
    assert len(received) == 26  # 26 * 4096 > 100 * 1024: it stopped reading there


@pytest.mark.parametrize(
    "path",
    [
        "/api/2/things/org.eclipse.ditto:t1/bogus",
        "/api/2/things//org.eclipse.ditto:t1",
        "/api/2/things/org.eclipse.ditto:t1/policyId/x",
        "/api/2/things/org.eclipse.ditto:t1/definition/x",
        "/api/2/things/org.eclipse.ditto:t1/features/f/bogus",
        "/api/2/things/org.eclipse.ditto:t1/features/f/definition/x",
        "/api/2/things/org.eclipse.ditto:t1/features//properties",
        "/api/2/search/things/bogus",
        "/api/2/search/things/count/x",
    ],
)
async def test_unknown_route_shapes_are_404(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert error_of(r) == (404, "resource.notfound")
    assert r.headers["correlation-id"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", THING, "GET, PUT, PATCH, DELETE"),
        ("DELETE", THING + "/policyId", "GET, PUT, PATCH"),
        ("POST", THING + "/attributes/a", "GET, PUT, PATCH, DELETE"),
        ("DELETE", "/api/2/things", "GET, POST"),
        ("PUT", "/api/2/search/things", "GET, POST"),
        ("DELETE", "/api/2/search/things/count", "GET, POST"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    r = await client.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert error_of(r) == (405, "method.notallowed")


async def test_head_is_get_without_the_body(client: httpx.AsyncClient) -> None:
    await _create(client)
    get = await client.get(THING)
    r = await client.head(THING)
    assert (r.status_code, r.content) == (200, b"")
    assert r.headers["etag"] == get.headers["etag"]
    assert r.headers["content-length"] == str(len(get.content))
    r = await client.head(THING + "/attributes/nope")
    assert (r.status_code, r.content) == (404, b"")


# ------------------------------------------------------------ headers in general


async def test_correlation_id_is_echoed_from_header_or_query_or_generated(client: httpx.AsyncClient) -> None:
    r = await client.get(THING, headers={"x-correlation-id": "abc-1"})
    assert r.headers["correlation-id"] == "abc-1"
    r = await client.get(THING, headers={"correlation-id": "abc-2"})
    assert r.headers["correlation-id"] == "abc-2"
    r = await client.get(THING, params={"correlation-id": "abc-3"})
    assert r.headers["correlation-id"] == "abc-3"
    r = await client.put(THING, json={})
    uuid.UUID(r.headers["correlation-id"])
    r = await client.put(THING, json={})
    assert r.status_code == 204
    uuid.UUID(r.headers["correlation-id"])


async def test_arbitrary_request_headers_are_not_echoed(client: httpx.AsyncClient) -> None:
    r = await client.put(THING, json={}, headers={"Referrer": "x", "Set-Cookie": "y=z"})
    assert "referrer" not in r.headers
    assert "set-cookie" not in r.headers


async def test_response_required_false_and_timeout_zero_answer_202(client: httpx.AsyncClient) -> None:
    r = await client.put(THING, json={}, headers={"response-required": "false"})
    assert r.status_code == 202
    assert r.content == b""
    assert (await client.get(THING)).status_code == 200  # it was applied
    r = await client.put(THING + "/attributes/a", json=1, params={"timeout": "0"})
    assert r.status_code == 202
    assert (await client.get(THING + "/attributes/a")).json() == 1
    # errors are still returned
    r = await client.get("/api/2/things/org.eclipse.ditto:nope", params={"response-required": "false"})
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"timeout": "61"}, "gateway:timeout.invalid"),
        ({"timeout": "2m"}, "gateway:timeout.invalid"),
        ({"timeout": "soon"}, "header.invalid"),
        ({"timeout": "\u00b2"}, "header.invalid"),
        ({"response-required": "maybe"}, "header.invalid"),
        ({"timeout": "0", "response-required": "true"}, "header.invalid"),
        ({"channel": "elsewhere"}, "header.invalid"),
    ],
)
async def test_invalid_header_values_are_400(
    client: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    r = await client.get(THING, params=params)
    assert error_of(r) == (400, code)


async def test_timeouts_within_the_limit_are_accepted(client: httpx.AsyncClient) -> None:
    await _create(client)
    for value in ("60", "500ms", "10s", "1m"):
        assert (await client.get(THING, headers={"timeout": value})).status_code == 200


async def test_post_on_live_channel_is_405(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/2/things", json={}, params={"channel": "live"})
    assert error_of(r) == (405, "things:thing.notcreatable")


# ------------------------------------------------------- conditional requests


async def test_if_none_match_on_get_is_304_with_etag_and_no_body(client: httpx.AsyncClient) -> None:
    await _create(client)
    r = await client.get(THING, headers={"if-none-match": '"rev:1"'})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == '"rev:1"'
    assert r.headers["correlation-id"]
    etag = (await client.get(THING + "/attributes")).headers["etag"]
    r = await client.get(THING + "/attributes", headers={"if-none-match": etag})
    assert (r.status_code, r.headers["etag"]) == (304, etag)
    r = await client.get(THING, headers={"if-none-match": '"rev:7"'})
    assert r.status_code == 200


async def test_if_match_on_write_is_412_with_current_etag(client: httpx.AsyncClient) -> None:
    await _create(client)
    r = await client.put(THING, json={}, headers={"if-match": '"rev:23"'})
    assert error_of(r) == (412, "things:precondition.failed")
    assert r.headers["etag"] == '"rev:1"'
    r = await client.put(THING, json={}, headers={"if-match": '"rev:1"'})
    assert r.status_code == 204


async def test_if_none_match_star_creates_once(client: httpx.AsyncClient) -> None:
    r = await client.put(THING, json={}, headers={"if-none-match": "*"})
    assert r.status_code == 201
    r = await client.put(THING, json={}, headers={"if-none-match": "*"})
    assert error_of(r) == (412, "things:precondition.failed")


async def test_malformed_if_match_is_400(client: httpx.AsyncClient) -> None:
    await _create(client)
    r = await client.put(THING, json={}, headers={"if-match": "rev:1"})
    assert error_of(r) == (400, "header.invalid")


SEED_THING = "/api/2/things/org.eclipse.ditto:fancy-thing"
SEED_VALUE = SEED_THING + "/features/temperature/properties/value"


async def _seed(client: httpx.AsyncClient) -> None:
    await _create(
        client,
        {
            "attributes": {"location": "kitchen"},
            "features": {
                "temperature": {
                    "properties": {
                        "value": 23.42,
                        "unit": "Celcius",
                        "lastModified": "2021-08-10T15:07:20.398Z",
                    }
                }
            },
        },
        thing=SEED_THING,
    )


async def test_seed_conditional_put_by_query_parameter(client: httpx.AsyncClient) -> None:
    await _seed(client)
    # curl -X PUT .../value?condition=gt(features/temperature/properties/lastModified,'2021-08-10T15:10:02.592Z')
    url = (
        SEED_VALUE + "?condition=gt(features/temperature/properties/lastModified,'2021-08-10T15:10:02.592Z')"
    )
    r = await client.put(url, content=b"19.26", headers={"content-type": "application/json"})
    assert error_of(r) == (412, "things:condition.failed")
    assert (await client.get(SEED_VALUE)).json() == 23.42
    url = (
        SEED_VALUE + "?condition=gt(features/temperature/properties/lastModified,'2021-08-10T15:00:00.000Z')"
    )
    r = await client.put(url, content=b"19.26", headers={"content-type": "application/json"})
    assert r.status_code == 204
    assert (await client.get(SEED_VALUE)).json() == 19.26


async def test_seed_conditional_put_by_header(client: httpx.AsyncClient) -> None:
    await _seed(client)
    failing = 'gt(features/temperature/properties/lastModified,"2021-08-10T15:10:02.592Z")'
    r = await client.put(
        SEED_VALUE, content=b"19.26", headers={"content-type": "application/json", "condition": failing}
    )
    assert error_of(r) == (412, "things:condition.failed")
    holding = 'gt(features/temperature/properties/lastModified,"2021-08-10T15:00:00.000Z")'
    r = await client.put(
        SEED_VALUE, content=b"19.26", headers={"content-type": "application/json", "condition": holding}
    )
    assert r.status_code == 204
    assert (await client.get(SEED_VALUE)).json() == 19.26


async def test_seed_condition_on_other_methods_and_invalid_condition(client: httpx.AsyncClient) -> None:
    await _seed(client)
    r = await client.get(SEED_THING, params={"condition": "eq(attributes/location,'garage')"})
    assert error_of(r) == (412, "things:condition.failed")
    r = await client.get(SEED_THING, params={"condition": "eq(attributes/location,'kitchen')"})
    assert r.status_code == 200
    r = await client.delete(
        SEED_THING + "/attributes/location", headers={"condition": "eq(attributes/location,1)"}
    )
    assert error_of(r) == (412, "things:condition.failed")
    r = await client.put(
        SEED_VALUE, json=1, params={"condition": "gt(features/temperature/properties/lastModified,"}
    )
    assert error_of(r) == (400, "things:condition.invalid")


# ---------------------------------------------------------------- collection


async def test_post_creates_with_generated_id_and_location(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/2/things", json={"attributes": {"a": 1}})
    assert r.status_code == 201
    thing_id = r.json()["thingId"]
    namespace, _, name = thing_id.partition(":")
    assert namespace == "org.eclipse.ditto"
    uuid.UUID(name)
    assert r.headers["location"] == f"{BASE_URL}/api/2/things/{thing_id}"
    assert r.headers["etag"] == '"rev:1"'
    assert (await client.get(f"/api/2/things/{thing_id}/attributes/a")).json() == 1


async def test_post_with_namespace_and_without_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/2/things", params={"namespace": "com.example"})
    assert r.status_code == 201
    assert r.json()["thingId"].startswith("com.example:")
    assert r.headers["location"] == f"{BASE_URL}/api/2/things/{r.json()['thingId']}"


async def test_post_refuses_thing_id_in_body_and_wrong_media_type(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/2/things", json={"thingId": "a:b"})
    assert error_of(r) == (400, "things:id.notsettable")
    r = await client.post("/api/2/things", content=b"{}", headers={"content-type": "text/plain"})
    assert error_of(r) == (415, "mediatype.unsupported")
    r = await client.post("/api/2/things", content=b"{}")
    assert error_of(r) == (415, "mediatype.unsupported")


async def test_get_things_by_ids(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await _create(client, {"attributes": {"n": name}}, thing=f"/api/2/things/ns:{name}")
    r = await client.get("/api/2/things", params={"ids": "ns:c,ns:a,ns:missing"})
    assert r.status_code == 200
    assert [t["thingId"] for t in r.json()] == ["ns:c", "ns:a"]
    r = await client.get("/api/2/things?ids=ns:a&ids=ns:b&fields=attributes")
    assert r.json() == [{"attributes": {"n": "a"}}, {"attributes": {"n": "b"}}]
    r = await client.get("/api/2/things", params={"ids": "ns:nope"})
    assert r.json() == []


async def test_get_things_with_empty_or_invalid_ids_is_400(client: httpx.AsyncClient) -> None:
    assert error_of(await client.get("/api/2/things?ids=")) == (400, "things:id.invalid")
    assert error_of(await client.get("/api/2/things?ids=ns:a,")) == (400, "things:id.invalid")
    assert error_of(await client.get("/api/2/things?ids=bad id")) == (400, "things:id.invalid")


async def test_get_things_without_ids_pages_with_link_headers(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await _create(client, {"attributes": {"n": name}}, thing=f"/api/2/things/ns:{name}")
    r = await client.get("/api/2/things")
    assert [t["thingId"] for t in r.json()] == ["ns:a", "ns:b", "ns:c"]
    assert r.headers["link"] == f'<{BASE_URL}/api/2/things>; rel="canonical"'
    r = await client.get("/api/2/things", params={"option": "size(2)", "fields": "thingId"})
    assert r.json() == [{"thingId": "ns:a"}, {"thingId": "ns:b"}]
    links = r.headers.get_list("link")
    assert links[0] == f'<{r.request.url}>; rel="canonical"'
    assert links[1].endswith('>; rel="next"')
    next_url = links[1].split(">")[0][1:]
    assert next_url.startswith("/api/2/things?")
    r = await client.get(next_url)
    assert r.json() == [{"thingId": "ns:c"}]
    assert len(r.headers.get_list("link")) == 1


async def test_get_things_without_ids_by_namespace(client: httpx.AsyncClient) -> None:
    await _create(client, {}, thing="/api/2/things/ns1:a")
    await _create(client, {}, thing="/api/2/things/ns2:b")
    r = await client.get("/api/2/things", params={"namespaces": "ns2"})
    assert [t["thingId"] for t in r.json()] == ["ns2:b"]
    r = await client.get("/api/2/things", params={"option": "size(500)"})
    assert error_of(r) == (400, "thing-search:search.option.invalid")


# -------------------------------------------------------------------- search


async def _three(client: httpx.AsyncClient) -> None:
    for i, name in enumerate(("a", "b", "c")):
        await _create(client, {"attributes": {"n": i}}, thing=f"/api/2/things/ns:{name}")


async def test_search_get(client: httpx.AsyncClient) -> None:
    await _three(client)
    r = await client.get("/api/2/search/things", params={"filter": "ge(attributes/n,1)"})
    assert r.status_code == 200
    body = r.json()
    assert [t["thingId"] for t in body["items"]] == ["ns:b", "ns:c"]
    assert body["nextPageOffset"] == -1
    assert "cursor" not in body


async def test_search_multiple_filters_are_and_combined(client: httpx.AsyncClient) -> None:
    await _three(client)
    r = await client.get(
        "/api/2/search/things?filter=ge(attributes/n,1)&filter=lt(attributes/n,2)&fields=thingId"
    )
    assert r.json()["items"] == [{"thingId": "ns:b"}]


async def test_search_paging_shapes(client: httpx.AsyncClient) -> None:
    await _three(client)
    r = await client.get("/api/2/search/things", params={"option": "size(2)", "fields": "thingId"})
    body = r.json()
    assert body["items"] == [{"thingId": "ns:a"}, {"thingId": "ns:b"}]
    assert set(body) == {"items", "cursor"}
    r = await client.get("/api/2/search/things", params={"option": f"size(2),cursor({body['cursor']})"})
    assert set(r.json()) == {"items"}
    assert [t["thingId"] for t in r.json()["items"]] == ["ns:c"]
    r = await client.get("/api/2/search/things", params={"option": "limit(0,2)"})
    assert r.json()["nextPageOffset"] == 2
    assert "cursor" not in r.json()
    r = await client.get("/api/2/search/things", params={"option": "limit(2,2)"})
    assert r.json()["nextPageOffset"] == -1


async def test_search_post_form(client: httpx.AsyncClient) -> None:
    await _three(client)
    r = await client.post(
        "/api/2/search/things", data={"filter": "eq(attributes/n,2)", "fields": "thingId", "namespaces": "ns"}
    )
    assert r.status_code == 200
    assert r.json()["items"] == [{"thingId": "ns:c"}]
    r = await client.post("/api/2/search/things", json={"filter": "eq(attributes/n,2)"})
    assert error_of(r) == (415, "mediatype.unsupported")


async def test_search_count_get_and_post(client: httpx.AsyncClient) -> None:
    await _three(client)
    r = await client.get("/api/2/search/things/count")
    assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"3", "application/json")
    r = await client.get("/api/2/search/things/count", params={"filter": "gt(attributes/n,0)"})
    assert r.json() == 2
    r = await client.post("/api/2/search/things/count", data={"filter": "eq(attributes/n,0)"})
    assert r.json() == 1
    r = await client.post("/api/2/search/things/count")
    assert r.json() == 3


async def test_search_invalid_filter_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/2/search/things", params={"filter": "eq(attributes/n"})
    assert error_of(r) == (400, "rql.expression.invalid")


# -------------------------------------------------------------- authentication


async def test_without_or_with_wrong_credentials_is_401(api: Api) -> None:
    async with api.client(headers={}) as anonymous:
        r = await anonymous.put(THING, json={})
        assert error_of(r) == (401, "gateway:authentication.failed")
        assert r.headers["www-authenticate"] == 'Basic realm="edgetwin"'
        assert r.headers["correlation-id"]
    async with api.client(headers={"Authorization": basic("ditto", "wrong")}) as wrong:
        r = await wrong.get(THING)
        assert error_of(r) == (401, "gateway:authentication.failed")
        assert r.headers["www-authenticate"] == 'Basic realm="edgetwin"'


async def test_hashed_user_creates_with_its_subject(api: Api) -> None:
    async with api.client(headers={"Authorization": basic("hashed", "s3cret")}) as client:
        assert (await client.put(THING, json={})).status_code == 201
        r = await client.get(THING, params={"fields": "_policy"})
    assert list(r.json()["_policy"]["entries"]["DEFAULT"]["subjects"]) == ["nginx:hashed"]


async def test_pre_authenticated_only_from_trusted_proxies(api: Api) -> None:
    headers = {"x-ditto-pre-authenticated": "nginx:viaproxy"}
    async with api.client(client_addr="10.20.30.40", headers=headers) as proxied:
        assert (await proxied.put(THING, json={})).status_code == 201
        r = await proxied.get(THING, params={"fields": "_policy"})
        assert list(r.json()["_policy"]["entries"]["DEFAULT"]["subjects"]) == ["nginx:viaproxy"]
    async with api.client(client_addr="192.0.2.1", headers=headers) as direct:
        assert error_of(await direct.get(THING)) == (401, "gateway:authentication.failed")
    async with api.client(client_addr="::1", headers=headers) as local_proxy:
        assert (await local_proxy.get(THING)).status_code == 200


# ------------------------------------------------------------------ robustness

_KEYS = st.sampled_from(["a", "b", "~", "x y", "%2F", "%C3%A9", "%E6%B8%A9", "*", ""])


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "POST"]),
    thing=st.sampled_from(["ns:a", "ns:b", "bad", "ns:%20", ":x"]),
    sub=st.lists(
        st.one_of(st.sampled_from(["attributes", "features", "properties", "definition"]), _KEYS), max_size=5
    ),
    body=st.one_of(
        st.just(b""),
        st.sampled_from([b"{}", b"null", b"1", b'"s"', b"[]", b'{"a":{"b":null}}', b'{"_policy":1}', b"{"]),
    ),
    patch=st.booleans(),
    query=st.sampled_from(["", "fields=a", "fields=(", "condition=eq(a,1)", "condition=x(", "timeout=1s"]),
)
async def test_no_request_to_the_real_service_is_a_500(
    method: str, thing: str, sub: list[str], body: bytes, patch: bool, query: str
) -> None:
    # Each example runs in its own trio.run, so the stack is built per example (fixtures would be stale).
    url = "/".join(["/api/2/things", thing, *sub]) + (f"?{query}" if query else "")
    content_type = "application/merge-patch+json" if patch else "application/json"
    with tempfile.TemporaryDirectory() as tmp:
        async with open_api(Path(tmp)) as api, api.client() as client:
            # something to find, so that the sub-resource paths get past "thing not found"
            await client.put(
                "/api/2/things/ns:a", json={"attributes": {"a": {"b": 1}}, "features": {"a": {}}}
            )
            r = await client.request(method, url, content=body, headers={"content-type": content_type})
    assert r.status_code < 500, (method, url, body, r.text)
