"""The one place where errors become HTTP responses (Ditto error JSON)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from quart import Response

if TYPE_CHECKING:
    from edgetwin.errors import EdgeTwinError

__all__ = ["error_response", "json_response"]

JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised with orjson."""
    return Response(orjson.dumps(body), status=status, headers=headers, content_type=JSON)


def error_response(err: EdgeTwinError, headers: dict[str, str] | None = None) -> Response:
    """Ditto's error JSON with the error's status; a 304 has no body."""
    merged = {**err.headers, **(headers or {})}
    if err.status == 304:
        return Response(b"", status=304, headers=merged)
    return json_response(err.to_json(), err.status, merged)
