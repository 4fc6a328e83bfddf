"""Routing and command building of ThingsApi against a recording fake service (no store)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.api.auth import Authenticator
from edgetwin.api.things import ThingsApi, handles
from edgetwin.config import AuthSettings, PreAuthenticatedSettings, User
from edgetwin.core.commands import (
    AuthContext,
    CountThings,
    CreateThing,
    DeletePolicy,
    DeleteThing,
    MergeThing,
    ModifyPolicy,
    ModifyThing,
    Preconditions,
    Retrieved,
    RetrievePolicy,
    RetrieveThing,
    RetrieveThings,
    SearchResult,
    SearchThings,
    Written,
)
from edgetwin.errors import NotModified
from edgetwin.twin import Json

AUTH = AuthSettings(
    users=(User("ditto", password="ditto"),),
    pre_authenticated=PreAuthenticatedSettings(trusted_proxies=("10.0.0.0/8",)),
)
CREDENTIALS = ("ditto", "ditto")


class Recorder:
    """Records every command and answers with canned results."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, AuthContext]] = []
        self.fail: BaseException | None = None

    def _record(self, name: str, cmd: Any, auth: AuthContext) -> None:
        self.calls.append((name, cmd, auth))
        if self.fail is not None:
            raise self.fail

    @property
    def last(self) -> Any:
        return self.calls[-1][1]

    async def retrieve(self, cmd: RetrieveThing, auth: AuthContext) -> Retrieved:
        self._record("retrieve", cmd, auth)
        return Retrieved({"ok": True}, '"rev:1"')

    async def retrieve_many(self, cmd: RetrieveThings, auth: AuthContext) -> list[Json]:
        self._record("retrieve_many", cmd, auth)
        return []

    async def modify(self, cmd: ModifyThing, auth: AuthContext) -> Written:
        self._record("modify", cmd, auth)
        return Written(204, cmd.thing_id, 2, '"rev:2"')

    async def create(self, cmd: CreateThing, auth: AuthContext) -> Written:
        self._record("create", cmd, auth)
        return Written(201, "ns:new id", 1, '"rev:1"', {"thingId": "ns:new id"})

    async def merge(self, cmd: MergeThing, auth: AuthContext) -> Written:
        self._record("merge", cmd, auth)
        return Written(204, cmd.thing_id, 2, '"rev:2"')

    async def delete(self, cmd: DeleteThing, auth: AuthContext) -> Written:
        self._record("delete", cmd, auth)
        return Written(204, cmd.thing_id, 3)

    async def search(self, cmd: SearchThings, auth: AuthContext) -> SearchResult:
        self._record("search", cmd, auth)
        return SearchResult([], None)

    async def count(self, cmd: CountThings, auth: AuthContext) -> int:
        self._record("count", cmd, auth)
        return 0

    async def retrieve_policy(self, cmd: RetrievePolicy, auth: AuthContext) -> Retrieved:
        self._record("retrieve_policy", cmd, auth)
        return Retrieved({"policyId": cmd.policy_id}, '"rev:1"')

    async def modify_policy(self, cmd: ModifyPolicy, auth: AuthContext) -> Written:
        self._record("modify_policy", cmd, auth)
        return Written(204, cmd.policy_id, 2, '"rev:2"')

    async def delete_policy(self, cmd: DeletePolicy, auth: AuthContext) -> Written:
        self._record("delete_policy", cmd, auth)
        return Written(204, cmd.policy_id, 3)


@pytest.fixture
def service() -> Recorder:
    return Recorder()


def client_for(
    service: Recorder, *, client_addr: str = "127.0.0.1", auth: Any = CREDENTIALS
) -> httpx.AsyncClient:
    app = ThingsApi(service, Authenticator(AUTH))
    transport = httpx.ASGITransport(app=app, client=(client_addr, 1))
    return httpx.AsyncClient(transport=transport, base_url="http://h", auth=auth)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/api/2/things/ns:t", ()),
        ("/api/2/things/ns:t/policyId", ("policyId",)),
        ("/api/2/things/ns:t/definition", ("definition",)),
        ("/api/2/things/ns:t/attributes", ("attributes",)),
        ("/api/2/things/ns:t/attributes/a/b/c", ("attributes", "a", "b", "c")),
        ("/api/2/things/ns:t/attributes/a~0b/%7E1", ("attributes", "a~b", "~1")),
        ("/api/2/things/ns:t/features", ("features",)),
        ("/api/2/things/ns:t/features/f%2Fx", ("features", "f/x")),
        ("/api/2/things/ns:t/features/f/definition", ("features", "f", "definition")),
        ("/api/2/things/ns:t/features/f/properties", ("features", "f", "properties")),
        ("/api/2/things/ns:t/features/f/properties/p/q", ("features", "f", "properties", "p", "q")),
        ("/api/2/things/ns:t/features/f/desiredProperties", ("features", "f", "desiredProperties")),
        ("/api/2/things/ns:t/features/f/desiredProperties/p", ("features", "f", "desiredProperties", "p")),
    ],
)
async def test_paths_become_pointers(service: Recorder, url: str, path: tuple[str, ...]) -> None:
    async with client_for(service) as client:
        r = await client.get(url)
    assert r.status_code == 200
    assert r.headers["etag"] == '"rev:1"'
    assert service.last == RetrieveThing("ns:t", path)


async def test_pointer_depth_is_bounded(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.get("/api/2/things/ns:t/attributes/" + "/".join(["k"] * 129))
    assert (r.status_code, r.json()["error"]) == (400, "json.pointer.invalid")


async def test_preconditions_from_headers_and_query(service: Recorder) -> None:
    async with client_for(service) as client:
        await client.put(
            "/api/2/things/ns:t/attributes/a?condition=eq(a,1)",
            json=1,
            headers={"if-match": '"rev:1"', "if-none-match": "*", "if-equal": "skip"},
        )
        assert service.last == ModifyThing(
            "ns:t", ("attributes", "a"), 1, Preconditions('"rev:1"', "*", "skip", "eq(a,1)")
        )
        await client.delete("/api/2/things/ns:t", headers={"condition": "exists(a)"})
        assert service.last == DeleteThing("ns:t", (), Preconditions(condition="exists(a)"))


async def test_policy_fields_are_lifted_only_at_the_root(service: Recorder) -> None:
    body = {"attributes": {"_policy": 1}, "_policy": {"entries": {}}, "_copyPolicyFrom": "ns:p"}
    async with client_for(service) as client:
        await client.put("/api/2/things/ns:t", json=body)
        assert service.last == ModifyThing(
            "ns:t",
            (),
            {"attributes": {"_policy": 1}},
            initial_policy={"entries": {}},
            copy_policy_from="ns:p",
        )
        await client.put("/api/2/things/ns:t/attributes", json={"_policy": 1})
        assert service.last == ModifyThing("ns:t", ("attributes",), {"_policy": 1})
        await client.post("/api/2/things?namespace=ns", json={"_policy": {"entries": {}}, "a": 1})
        assert service.last == CreateThing({"a": 1}, "ns", {"entries": {}}, None)


async def test_post_location_escapes_the_new_id(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.post("/api/2/things")
    assert r.status_code == 201
    assert r.headers["location"] == "http://h/api/2/things/ns:new%20id"
    assert service.last == CreateThing({}, None)


async def test_merge_command(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.patch(
            "/api/2/things/ns:t/features/f",
            content=b'{"properties":null}',
            headers={"content-type": "application/merge-patch+json"},
        )
    assert (r.status_code, r.headers["etag"]) == (204, '"rev:2"')
    assert service.last == MergeThing("ns:t", ("features", "f"), {"properties": None})


async def test_delete_without_etag(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.delete("/api/2/things/ns:t")
    assert r.status_code == 204
    assert "etag" not in r.headers


async def test_search_parameters(service: Recorder) -> None:
    async with client_for(service) as client:
        await client.get(
            "/api/2/search/things?filter=eq(a,1)&filter=eq(b,2)&namespaces=n1,n2&namespaces=n3"
            "&option=size(5)&option=sort(%2BthingId)&fields=thingId"
        )
        cmd = service.last
        assert cmd.filter == "and(eq(a,1),eq(b,2))"
        assert cmd.namespaces == ("n1", "n2", "n3")
        assert cmd.option == "size(5),sort(+thingId)"
        assert cmd.fields.pointers == (("thingId",),)
        await client.post("/api/2/search/things/count?namespaces=q", data={"filter": "eq(a,1)"})
        assert service.last == CountThings("eq(a,1)", ("q",))
        await client.get("/api/2/search/things/count?filter=&namespaces=")
        assert service.last == CountThings(None, None)


async def test_retrieve_many_command(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.get("/api/2/things?ids=a:1,b:2&ids=c:3&fields=thingId")
    assert r.json() == []
    assert service.last.thing_ids == ("a:1", "b:2", "c:3")
    assert service.last.fields.text == "thingId"


async def test_not_modified_without_etag(service: Recorder) -> None:
    service.fail = NotModified("same")
    async with client_for(service) as client:
        r = await client.get("/api/2/things/ns:t")
    assert (r.status_code, r.content) == (304, b"")
    assert "etag" not in r.headers


async def test_unexpected_error_is_500_with_correlation_id(service: Recorder) -> None:
    service.fail = RuntimeError("boom")
    async with client_for(service) as client:
        r = await client.get("/api/2/things/ns:t", headers={"x-correlation-id": "cid"})
    assert r.status_code == 500
    assert r.json()["error"] == "internalerror"
    assert r.headers["correlation-id"] == "cid"


async def test_unparseable_path_is_400_with_correlation_id(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.get("/api/2/things/%FF", headers={"correlation-id": "c2"})
    assert r.status_code == 400
    assert r.headers["correlation-id"] == "c2"


async def test_authentication_comes_before_routing(service: Recorder) -> None:
    async with client_for(service, auth=None) as client:
        for method, url in (
            ("GET", "/api/2/things/ns:t"),
            ("GET", "/api/2/things/ns:t/bogus"),
            ("POST", "/api/2/things/ns:t"),
        ):
            r = await client.request(method, url)
            assert r.status_code == 401
            assert r.json()["error"] == "gateway:authentication.failed"
            assert r.headers["www-authenticate"] == 'Basic realm="edgetwin"'
            assert r.headers["correlation-id"]
    assert service.calls == []


async def test_wrong_password_is_401(service: Recorder) -> None:
    async with client_for(service, auth=("ditto", "nope")) as client:
        r = await client.get("/api/2/things/ns:t")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="edgetwin"'


async def test_pre_authenticated_subject_reaches_the_service(service: Recorder) -> None:
    headers = {"x-ditto-pre-authenticated": "nginx:proxyuser", "x-correlation-id": "c9"}
    async with client_for(service, client_addr="10.9.9.9", auth=None) as client:
        assert (await client.get("/api/2/things/ns:t", headers=headers)).status_code == 200
    assert service.calls[-1][2] == AuthContext(("nginx:proxyuser",), "c9")
    async with client_for(service, client_addr="192.168.1.1", auth=None) as client:
        assert (await client.get("/api/2/things/ns:t", headers=headers)).status_code == 401


async def test_channel_header_is_validated(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.get("/api/2/things/ns:t", headers={"channel": "elsewhere"})
        assert (r.status_code, r.json()["error"]) == (400, "header.invalid")
        r = await client.get("/api/2/search/things", headers={"channel": "live"})
        assert (r.status_code, r.json()["error"]) == (400, "header.invalid")
        r = await client.get("/api/2/things/ns:t", params={"channel": "twin"})
        assert r.status_code == 200


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/2/things", True),
        ("/api/2/things/", True),
        ("/api/2/things/ns:t", True),
        ("/api/2/things/ns:t/attributes/a/b", True),
        ("/api/2/things/ns:t/bogus", True),
        ("/api/2/things/ns:t/features/f/properties/inbox", True),
        ("/api/2/search/things", True),
        ("/api/2/search/things/", True),
        ("/api/2/search/things/count", True),
        ("/api/2/thingsfoo", False),
        ("/api/2/things/ns:t/inbox/messages/hello", True),
        ("/api/2/things/ns:t/outbox/messages/hello", True),
        ("/api/2/things/ns:t/inbox/claim", True),
        ("/api/2/things/ns:t/migrateDefinition", False),
        ("/api/2/things/ns:t/features/f/inbox/messages/x", True),
        ("/api/2/things/ns:t/features/f/outbox/messages/x", True),
        ("/api/2/search/things/other", False),
        ("/api/2/policies/p", True),
        ("/api/2/policiesx", False),
        ("/api/2/whoami", True),
        ("/api/1/things", False),
        ("/health", False),
    ],
)
def test_handles(path: str, expected: bool) -> None:
    assert handles(path) is expected


def test_handles_leaves_sse_to_quart() -> None:
    assert handles("/api/2/things", [(b"accept", b"application/json")])
    assert not handles("/api/2/things", [(b"accept", b"text/event-stream")])
    assert not handles("/api/2/search/things", [(b"host", b"x"), (b"accept", b"text/event-stream")])


async def test_timeout_expiry_is_408(service: Recorder, autojump_clock: trio.abc.Clock) -> None:
    async def slow(cmd: RetrieveThing, auth: AuthContext) -> Retrieved:
        await trio.sleep(5)
        return Retrieved(1)

    service.retrieve = slow  # type: ignore[method-assign]
    async with client_for(service) as client:
        r = await client.get("/api/2/things/ns:t", params={"timeout": "1500ms"})
        assert (r.status_code, r.json()["error"]) == (408, "command.timeout")
        r = await client.get("/api/2/things/ns:t", headers={"timeout": "10"})
        assert r.status_code == 200


async def test_search_post_body_needs_the_form_media_type(service: Recorder) -> None:
    async with client_for(service) as client:
        r = await client.post("/api/2/search/things", content=b"filter=eq(a,1)")
        assert (r.status_code, r.json()["error"]) == (415, "mediatype.unsupported")
        r = await client.post("/api/2/search/things?filter=eq(a,1)")
        assert r.status_code == 200
        assert service.last.filter == "eq(a,1)"


_SEGMENT = st.text(st.characters(codec="utf-8", exclude_characters="/?#"), max_size=6).map(
    lambda text: quote(text, safe=":~")
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS"]),
    segments=st.lists(
        st.one_of(
            st.sampled_from(["things", "ns:t", "attributes", "features", "f", "properties", "search", ""]),
            _SEGMENT,
        ),
        max_size=8,
    ),
    query=st.text(st.characters(codec="ascii", exclude_characters="#"), max_size=20),
    content_type=st.sampled_from([None, "application/json", "application/merge-patch+json", "text/plain"]),
    body=st.binary(max_size=20),
)
async def test_no_request_shape_is_a_500(
    service: Recorder,
    method: str,
    segments: list[str],
    query: str,
    content_type: str | None,
    body: bytes,
) -> None:
    url = "/api/2/" + "/".join(segments) + ("?" + quote(query, safe="=&,()") if query else "")
    headers = {"content-type": content_type} if content_type else {}
    async with client_for(service) as client:
        r = await client.request(method, url, content=body, headers=headers)
    assert r.status_code < 500, (url, r.text)
    assert r.headers["correlation-id"]
