"""Authentication: HTTP Basic (plain and scrypt, with the verified cache) and trusted pre-authentication."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from edgetwin.api import auth as auth_module
from edgetwin.api.auth import Authenticator, TokenIdentity
from edgetwin.api.http import Request
from edgetwin.config import AuthSettings, PreAuthenticatedSettings, User
from edgetwin.core.passwords import hash_password, verify_password
from edgetwin.errors import Unauthenticated

HASH = hash_password("s3cret", salt=b"fedcba9876543210")
SETTINGS = AuthSettings(
    users=(User("ditto", password="ditto"), User("hashed", password_hash=HASH)),
    pre_authenticated=PreAuthenticatedSettings(trusted_proxies=("10.0.0.0/8", "fd00::/8")),
)


def request(
    headers: dict[str, str] | None = None, client: str | None = "127.0.0.1", query: bytes = b""
) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/api/2/things",
        "raw_path": b"/api/2/things",
        "query_string": query,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 1234) if client else None,
    }

    async def receive() -> dict[str, Any]:
        raise AssertionError

    return Request(scope, receive)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_plain_password() -> None:
    ctx = await Authenticator(SETTINGS).authenticate(
        request(basic("ditto", "ditto") | {"x-correlation-id": "c1"})
    )
    assert ctx.subjects == ("nginx:ditto",)
    assert ctx.originator == "nginx:ditto"
    assert ctx.correlation_id == "c1"


async def test_basic_scheme_is_case_insensitive() -> None:
    header = basic("ditto", "ditto")["Authorization"].replace("Basic", "bAsIc")
    ctx = await Authenticator(SETTINGS).authenticate(request({"Authorization": header}))
    assert ctx.subjects == ("nginx:ditto",)


async def test_password_may_contain_colons() -> None:
    settings = AuthSettings(users=(User("u", password="a:b:c"),))
    ctx = await Authenticator(settings).authenticate(request(basic("u", "a:b:c")))
    assert ctx.subjects == ("nginx:u",)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("ditto", "wrong"),
        basic("nobody", "ditto"),
        basic("hashed", "wrong"),
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic Zm9v\u00e9"},
        {"Authorization": "Basic " + base64.b64encode(b"ditto:\xff").decode()},
        {"Authorization": "Basic"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Bearer some.jwt.token"},
        {"Authorization": "Digest x"},
    ],
)
async def test_invalid_credentials_are_401(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthenticated) as info:
        await Authenticator(SETTINGS).authenticate(request(headers))
    assert (info.value.status, info.value.error_code) == (401, "gateway:authentication.failed")


async def test_hashed_password_is_verified_once_then_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = verify_password

    def counting(password: str, encoded: str) -> bool:
        calls.append(password)
        return real(password, encoded)

    monkeypatch.setattr(auth_module, "verify_password", counting)
    authenticator = Authenticator(SETTINGS)
    for _ in range(3):
        ctx = await authenticator.authenticate(request(basic("hashed", "s3cret")))
        assert ctx.subjects == ("nginx:hashed",)
    assert calls == ["s3cret"]
    # failures are never cached: each one is verified again
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await authenticator.authenticate(request(basic("hashed", "nope")))
    assert calls == ["s3cret", "nope", "nope"]


async def test_verified_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def accept_all(password: str, encoded: str) -> bool:
        calls.append(password)
        return True

    monkeypatch.setattr(auth_module, "verify_password", accept_all)
    authenticator = Authenticator(SETTINGS, cache_size=2)
    for password in ("p1", "p2", "p3", "p3", "p1"):
        await authenticator.authenticate(request(basic("hashed", password)))
    # p1 was evicted by p3 (size 2), so it is verified again; p3's repeat was a hit.
    assert calls == ["p1", "p2", "p3", "p1"]
    assert len(authenticator._verified) == 2


@pytest.mark.parametrize("client", ["10.1.2.3", "fd00::5", "::ffff:10.0.0.1"])
async def test_pre_authenticated_from_trusted_proxy(client: str) -> None:
    headers = {"x-ditto-pre-authenticated": "nginx:alice, google:bob"}
    ctx = await Authenticator(SETTINGS).authenticate(request(headers, client=client))
    assert ctx.subjects == ("nginx:alice", "google:bob")


@pytest.mark.parametrize("client", ["127.0.0.1", "11.0.0.1", "fe80::1", None, "not-an-ip"])
async def test_pre_authenticated_from_elsewhere_is_ignored(client: str | None) -> None:
    authenticator = Authenticator(SETTINGS)
    headers = {"x-ditto-pre-authenticated": "nginx:alice"}
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(request(headers, client=client))
    # ... and does not override real credentials either
    ctx = await authenticator.authenticate(request(headers | basic("ditto", "ditto"), client=client))
    assert ctx.subjects == ("nginx:ditto",)


async def test_pre_authenticated_query_parameter_is_not_accepted() -> None:
    with pytest.raises(Unauthenticated):
        await Authenticator(SETTINGS).authenticate(
            request(client="10.0.0.1", query=b"x-ditto-pre-authenticated=nginx:alice")
        )


@pytest.mark.parametrize("value", ["", " , ", "alice", ":alice", "nginx:"])
async def test_malformed_pre_authenticated_from_trusted_proxy_is_401(value: str) -> None:
    with pytest.raises(Unauthenticated):
        await Authenticator(SETTINGS).authenticate(
            request({"x-ditto-pre-authenticated": value}, client="10.0.0.1")
        )


async def test_no_trusted_proxies_means_never_trusted() -> None:
    authenticator = Authenticator(AuthSettings(users=SETTINGS.users))
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(request({"x-ditto-pre-authenticated": "nginx:a"}, client="10.0.0.1"))


async def test_bearer_tokens_go_to_the_token_verifier() -> None:
    class Verifier:
        async def verify(self, token: str) -> TokenIdentity:
            if token != "good":
                raise Unauthenticated("bad token")
            return TokenIdentity(("idp:alice",), publish=("a/#",), subscribe=("#",))

    authenticator = Authenticator(SETTINGS, token_verifier=Verifier())
    ctx = await authenticator.authenticate(request({"Authorization": "Bearer good"}))
    assert (ctx.subjects, ctx.publish, ctx.subscribe) == (("idp:alice",), ("a/#",), ("#",))
    with pytest.raises(Unauthenticated) as info:
        await authenticator.authenticate(request({"Authorization": "Bearer bad"}))
    assert info.value.headers["www-authenticate"] == 'Bearer realm="edgetwin", error="invalid_token"'


async def test_pre_authenticated_and_basic_filters() -> None:
    settings = AuthSettings(
        users=(User("u", password="p", publish=("a/+",), subscribe=("a/#", "b")),),
        pre_authenticated=SETTINGS.pre_authenticated,
    )
    authenticator = Authenticator(settings)
    ctx = await authenticator.authenticate(request(basic("u", "p")))
    assert (ctx.publish, ctx.subscribe) == (("a/+",), ("a/#", "b"))
    # a pre-authenticated subject carries no topic filters: no list, no access
    ctx = await authenticator.authenticate(
        request({"x-ditto-pre-authenticated": "nginx:u"}, client="10.0.0.1")
    )
    assert (ctx.publish, ctx.subscribe) == ((), ())


async def test_expiry_is_the_tokens_exp_and_infinite_otherwise() -> None:
    class Verifier:
        async def verify(self, token: str) -> TokenIdentity:
            return TokenIdentity(("idp:alice",), expires_at=1234.5)

    authenticator = Authenticator(SETTINGS, token_verifier=Verifier())
    ctx, expires_at = await authenticator.authenticate_expiring(request({"Authorization": "Bearer t"}))
    assert (ctx.subjects, expires_at) == (("idp:alice",), 1234.5)
    ctx, expires_at = await authenticator.authenticate_token_expiring("t", correlation_id="c")
    assert (ctx.subjects, ctx.correlation_id, expires_at) == (("idp:alice",), "c", 1234.5)
    _, expires_at = await authenticator.authenticate_expiring(request(basic("ditto", "ditto")))
    assert expires_at == float("inf")
    _, expires_at = await authenticator.authenticate_expiring(
        request({"x-ditto-pre-authenticated": "nginx:u"}, client="10.0.0.1")
    )
    assert expires_at == float("inf")
