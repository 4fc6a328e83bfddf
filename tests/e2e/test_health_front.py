"""``/health`` answered by the ASGI front: GET, HEAD, wrong method, and DOWN while not all services are up."""

from __future__ import annotations

import httpx

from edgetwin.api.app_factory import create_app
from edgetwin.core.health import Health
from tests.conftest import RunningApp


async def _get(app: object, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:  # type: ignore[arg-type]
        return await client.request(method, "/health")


async def test_health_down_while_starting_and_stopping() -> None:
    health = Health()
    app = create_app(health=health)
    health.set("store", "up")
    health.set("http", "starting")
    r = await _get(app)
    assert r.status_code == 503
    assert r.json() == {
        "status": "DOWN",
        "services": {"store": {"status": "UP"}, "http": {"status": "STARTING"}},
    }
    health.set("http", "up")
    assert (await _get(app)).status_code == 200
    health.stopping()
    r = await _get(app)
    assert r.status_code == 503
    assert r.json()["status"] == "DOWN"


async def test_head_and_wrong_method(running: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        head = await client.head("/health")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        post = await client.post("/health")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        assert post.json()["error"] == "method.notallowed"
