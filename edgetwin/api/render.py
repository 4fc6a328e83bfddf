"""Errors as Quart responses, for the routes Quart still serves.

The mapping itself (Ditto error JSON, status, the error's headers, ``WWW-Authenticate`` on a 401, no body on
a 304) is :func:`edgetwin.api.http.error_response`; this only hands its result to Quart, so that every
route, ours or Quart's, answers an error the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response
from werkzeug.datastructures import Headers

from edgetwin.api import http

if TYPE_CHECKING:
    from edgetwin.errors import EdgeTwinError

__all__ = ["error_response"]


def error_response(err: EdgeTwinError) -> Response:
    """The Quart response for ``err``."""
    mapped = http.error_response(err)
    headers = Headers([(name.decode("latin-1"), value.decode("latin-1")) for name, value in mapped.headers])
    return Response(mapped.body, status=mapped.status, headers=headers)
