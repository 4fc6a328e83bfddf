"""``GET /api/2/whoami`` (Ditto's ``WhoamiRoute``): the caller's subjects and the default one."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import orjson
import pytest

from edgetwin.api.auth import Authenticator
from edgetwin.api.http import Request, Response, error_response
from edgetwin.api.whoami import WHOAMI_PATHS, whoami
from edgetwin.config import AuthSettings, JwtIssuer, PreAuthenticatedSettings, User
from edgetwin.errors import EdgeTwinError, MethodNotAllowed, Unauthenticated

SECRET = "an HS256 secret of at least thirty-two bytes"
SETTINGS = AuthSettings(
    users=(User("ditto", password="ditto"),),
    jwt=(JwtIssuer(prefix="idp", issuer="https://idp.example", secret=SECRET),),
    pre_authenticated=PreAuthenticatedSettings(trusted_proxies=("10.0.0.0/8",)),
)
BASIC = {"Authorization": "Basic " + base64.b64encode(b"ditto:ditto").decode()}


def request(headers: dict[str, str], *, method: str = "GET", path: str = "/api/2/whoami") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("10.1.2.3", 1234),
    }

    async def receive() -> dict[str, Any]:
        raise AssertionError

    return Request(scope, receive)


async def answer(headers: dict[str, str], **kwargs: Any) -> Response:
    """What the router sends: the route's response, or its error rendered once."""
    try:
        return await whoami(request(headers, **kwargs), Authenticator(SETTINGS))
    except EdgeTwinError as err:
        return error_response(err)


@pytest.mark.parametrize("path", sorted(WHOAMI_PATHS))
async def test_basic_user(path: str) -> None:
    response = await answer(BASIC, path=path)
    assert response.status == 200
    assert (b"content-type", b"application/json") in response.headers
    assert response.body == b'{"defaultSubject":"nginx:ditto","subjects":["nginx:ditto"]}'


async def test_pre_authenticated_subjects_in_order() -> None:
    response = await answer({"x-ditto-pre-authenticated": "google:bob,nginx:alice"})
    assert orjson.loads(response.body) == {
        "defaultSubject": "google:bob",
        "subjects": ["google:bob", "nginx:alice"],
    }


async def test_jwt_subject() -> None:
    token = jwt.encode({"iss": "https://idp.example", "sub": "carol", "exp": time.time() + 60}, SECRET)
    response = await answer({"Authorization": f"Bearer {token}"})
    assert orjson.loads(response.body) == {"defaultSubject": "idp:carol", "subjects": ["idp:carol"]}


async def test_head_is_a_get() -> None:
    response = await answer(BASIC, method="HEAD")
    assert response.status == 200


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_anonymous_is_401_whatever_the_method(method: str) -> None:
    with pytest.raises(Unauthenticated):
        await whoami(request({}, method=method), Authenticator(SETTINGS))
    response = await answer({}, method=method)
    assert response.status == 401
    assert orjson.loads(response.body)["error"] == "gateway:authentication.failed"
    assert any(name == b"www-authenticate" for name, _ in response.headers)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_other_methods_are_405_after_authentication(method: str) -> None:
    with pytest.raises(MethodNotAllowed):
        await whoami(request(BASIC, method=method), Authenticator(SETTINGS))
    response = await answer(BASIC, method=method)
    assert response.status == 405
    assert (b"allow", b"GET, HEAD") in response.headers
    assert orjson.loads(response.body)["error"] == "method.notallowed"
