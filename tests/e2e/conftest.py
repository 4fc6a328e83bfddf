"""Shared by the end-to-end tests: the whole appliance on free ports with a few users."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from edgetwin import app
from tests.conftest import make_settings

JWT_SECRET = "a-test-secret-of-at-least-32-bytes!"
ISSUER = "https://issuer.example"
USERS = {
    "users": [
        {"name": "ditto", "password": "ditto"},
        {"name": "observer", "password": "o"},
        {"name": "stranger", "password": "s"},
    ],
    "jwt": [{"prefix": "hs", "issuer": ISSUER, "secret": JWT_SECRET, "leeway_s": 0}],
}


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    """The appliance with USERS; its HTTP address."""
    settings = make_settings(tmp_path, auth=USERS, http={"bind": "127.0.0.1:0", "shutdown_grace_s": 0.2})
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: app.serve(
                settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        yield ports.http[0]
        stop.set()
