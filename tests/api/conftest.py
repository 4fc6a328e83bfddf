"""The Things API over the real service, store and writer, called in-process through httpx's ASGI transport."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from edgetwin.api.auth import Authenticator
from edgetwin.api.live import LiveHttp
from edgetwin.api.things import ThingsApi
from edgetwin.config import AuthSettings, LiveSettings, PreAuthenticatedSettings, User
from edgetwin.core.bus import EventBus
from edgetwin.core.live import LiveRouter
from edgetwin.core.passwords import hash_password
from edgetwin.core.service import TwinService
from edgetwin.core.writer import StoreWriter
from edgetwin.store import Store

# Hashed once per session: scrypt is deliberately slow.
SECRET_HASH = hash_password("s3cret", salt=b"0123456789abcdef")
AUTH_SETTINGS = AuthSettings(
    users=(User("ditto", password="ditto"), User("hashed", password_hash=SECRET_HASH)),
    pre_authenticated=PreAuthenticatedSettings(trusted_proxies=("10.0.0.0/8", "::1")),
)
BASE_URL = "http://edge.example:8080"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


DITTO = {"Authorization": basic("ditto", "ditto")}


@dataclass
class Api:
    """The app under test and a way to build clients for it."""

    app: ThingsApi
    authenticator: Authenticator
    service: TwinService
    live: LiveRouter

    def client(
        self, *, client_addr: str = "127.0.0.1", headers: dict[str, str] | None = None
    ) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(client_addr, 40000))
        return httpx.AsyncClient(
            transport=transport, base_url=BASE_URL, headers=DITTO if headers is None else headers
        )


@contextlib.asynccontextmanager
async def open_api(path: Path) -> AsyncIterator[Api]:
    """The whole stack on a fresh store under ``path``, its writer running until the block ends."""
    with Store.open(path, map_size_mb=16, max_map_size_mb=64) as store:
        writer = StoreWriter(store, queue_size=256, max_batch=64)
        service = TwinService(store, writer, EventBus())
        authenticator = Authenticator(AUTH_SETTINGS)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.serve)
            live = LiveRouter(service)
            app = ThingsApi(service, authenticator, live=LiveHttp(live, LiveSettings()))
            yield Api(app, authenticator, service, live)
            writer.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with open_api(tmp_path / "data") as built:
        yield built


@pytest.fixture
async def client(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as c:
        yield c


def error_of(response: httpx.Response) -> tuple[int, str]:
    """The status and Ditto error code of an error response, checking the error JSON's shape."""
    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert body["status"] == response.status_code
    assert isinstance(body["message"], str)
    return response.status_code, body["error"]


ClientFactory = Callable[..., httpx.AsyncClient]
