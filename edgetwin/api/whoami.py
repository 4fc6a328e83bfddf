"""``GET /api/2/whoami``: who the caller is authenticated as (Ditto's ``WhoamiRoute``, since Ditto 1.2).

Contract (ditto.md §10 and the OpenAPI ``WhoAmI`` schema; the body is Ditto's ``DefaultUserInformation``):

* ``GET`` (and ``HEAD``, without the body) on ``/api/2/whoami`` or ``/api/2/whoami/`` (Ditto's
  ``pathEndOrSingleSlash``) answers 200 ``{"defaultSubject": "<first subject>", "subjects": [...]}``:
  the caller's authorization subjects in order, the first being the default one (the originator; ``null``
  if there were none, which our authenticator never produces).
* Authentication comes first, as on every Ditto route: an anonymous request is 401 whatever the method;
  another method is then 405 ``method.notallowed`` with ``Allow: GET, HEAD``.

The Things router (``api.things``) sends these paths here; it adds ``correlation-id`` and renders errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from edgetwin.api.http import json_response
from edgetwin.errors import MethodNotAllowed

if TYPE_CHECKING:
    from edgetwin.api.http import Request, Response
    from edgetwin.api.things import RequestAuthenticator

__all__ = ["WHOAMI_PATHS", "whoami"]

WHOAMI_PATHS: Final = frozenset({"/api/2/whoami", "/api/2/whoami/"})
"""The request paths (``scope["path"]``, also ``Request.raw_path``) this route answers."""
_ALLOW: Final = "GET, HEAD"


async def whoami(request: Request, authenticator: RequestAuthenticator) -> Response:
    """Answer ``/api/2/whoami``.

    Args:
        request: the request (its path is one of :data:`WHOAMI_PATHS`).
        authenticator: authenticates the caller.

    Returns:
        200 with Ditto's ``WhoAmI`` JSON.

    Raises:
        Unauthenticated: no valid credentials (401).
        MethodNotAllowed: not a GET or HEAD (405, after authentication).
    """
    auth = await authenticator.authenticate(request)
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowed(
            f"The method {request.method} is not allowed on this resource.",
            description=f"Use one of: {_ALLOW}.",
            headers={"allow": _ALLOW},
        )
    subjects = list(auth.subjects)
    return json_response({"defaultSubject": subjects[0] if subjects else None, "subjects": subjects})
