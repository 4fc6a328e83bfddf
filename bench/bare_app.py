"""A bare ASGI app on Hypercorn's trio worker: the framework's ceiling for the HTTP benchmarks.

Usage: python -m bench.bare_app 127.0.0.1:8099
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

BODY = b'{"status":"UP"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    config = Config()
    config.bind = [sys.argv[1]]
    config.accesslog = None
    trio.run(partial(serve, app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
