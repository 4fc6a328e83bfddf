"""The one exception tree of edgetwin.

Errors are raised deep, as the specific class below, and mapped once at each edge: ``api.render`` turns
them into Ditto error JSON with the HTTP status, the WebSocket adapter into a Ditto Protocol error
envelope, the CLI into one line on stderr and exit status 2. Nothing between the raise and the edge
catches them to re-label them, except where a room deliberately narrows a generic error to its own Ditto
code (``raise InvalidInput(..., error_code="things:condition.invalid") from err``).

::

    EdgeTwinError                       status_hint  default error_code
    ├── ConfigError                     -            (key path named in the message; CLI exit 2)
    ├── StoreError                      500          edgetwin:store.failed
    │   ├── StoreFull                   507          edgetwin:store.full
    │   └── StoreVersionError           -            (store written by a newer edgetwin; refused at open)
    ├── NotModified                     304          things:precondition.notmodified
    ├── InvalidInput                    400          json.invalid
    │   └── RqlSyntaxError              400          rql.expression.invalid   (.position)
    ├── Unauthenticated                 401          gateway:authentication.failed
    ├── PolicyDenied                    403          things:thing.notmodifiable
    ├── NotFound                        404          things:thing.notfound
    ├── MethodNotAllowed                405          method.notallowed
    ├── RequestTimeout                  408          command.timeout
    ├── Conflict                        409          things:thing.conflict
    ├── PreconditionFailed              412          things:precondition.failed
    ├── PayloadTooLarge                 413          things:thing.toolarge
    ├── UnsupportedMediaType            415          mediatype.unsupported
    └── Unavailable                     503          gateway:service.unavailable

Every error carries a human ``message`` and an optional ``description`` (Ditto's two text fields), a
``status_hint`` and a Ditto ``error_code``; both can be overridden per raise, because Ditto uses many codes
per status (``things:attribute.notfound``, ``things:feature.notfound``, ...).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ConfigError",
    "Conflict",
    "EdgeTwinError",
    "InvalidInput",
    "MethodNotAllowed",
    "NotFound",
    "NotModified",
    "PayloadTooLarge",
    "PolicyDenied",
    "PreconditionFailed",
    "RequestTimeout",
    "RqlSyntaxError",
    "StoreError",
    "StoreFull",
    "StoreVersionError",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
]


class EdgeTwinError(Exception):
    """Root of every error edgetwin raises on purpose.

    Args:
        message: what went wrong, for a human (Ditto's ``message``).
        description: what to do about it (Ditto's ``description``); a class default applies when omitted.
        error_code: the Ditto error code; the class default applies when omitted.
        status: the HTTP status; the class default applies when omitted.
        headers: response headers that belong to the error (``etag`` on 304/412).
    """

    status_hint: ClassVar[int] = 500
    default_code: ClassVar[str] = "internalerror"
    default_description: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        description: str | None = None,
        error_code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.description = description if description is not None else self.default_description
        self.error_code = error_code if error_code is not None else self.default_code
        self.status = status if status is not None else self.status_hint
        # Response headers the edge adds, e.g. the current ETag on a 304 or 412.
        self.headers: dict[str, str] = dict(headers or {})

    def to_json(self) -> dict[str, object]:
        """The Ditto error JSON (``status``, ``error``, ``message`` and, when known, ``description``)."""
        body: dict[str, object] = {"status": self.status, "error": self.error_code, "message": self.message}
        if self.description:
            body["description"] = self.description
        return body


class ConfigError(EdgeTwinError):
    """The configuration is unusable. The message starts with the offending key path."""

    default_code = "edgetwin:config.invalid"


class StoreError(EdgeTwinError):
    """The store could not do what was asked (I/O error, corrupt environment)."""

    default_code = "edgetwin:store.failed"


class StoreFull(StoreError):
    """The store reached ``storage.max_map_size_mb``; the write was not applied."""

    status_hint = 507
    default_code = "edgetwin:store.full"
    default_description = "Free space by deleting data, or raise storage.max_map_size_mb."


class StoreVersionError(StoreError):
    """The store on disk was written by a newer edgetwin (a higher schema version)."""

    default_code = "edgetwin:store.version"


class NotModified(EdgeTwinError):
    """``If-None-Match`` matched on a read: HTTP 304, no body."""

    status_hint = 304
    default_code = "things:precondition.notmodified"


class InvalidInput(EdgeTwinError):
    """The request is malformed: body, header, query, path, id, pointer or option."""

    status_hint = 400
    default_code = "json.invalid"


class RqlSyntaxError(InvalidInput):
    """An RQL expression does not parse.

    Args:
        message: what is wrong, naming the position.
        position: zero-based character offset in the expression where parsing failed.
    """

    default_code = "rql.expression.invalid"

    def __init__(
        self,
        message: str,
        *,
        position: int,
        description: str | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message, description=description, error_code=error_code)
        self.position = position


class Unauthenticated(EdgeTwinError):
    """No credentials, or credentials that do not verify."""

    status_hint = 401
    default_code = "gateway:authentication.failed"


class PolicyDenied(EdgeTwinError):
    """The caller is known but its policy does not allow the change."""

    status_hint = 403
    default_code = "things:thing.notmodifiable"


class NotFound(EdgeTwinError):
    """The resource does not exist, or the caller may not know that it does."""

    status_hint = 404
    default_code = "things:thing.notfound"


class MethodNotAllowed(EdgeTwinError):
    """The method is not allowed on this resource or channel."""

    status_hint = 405
    default_code = "method.notallowed"


class RequestTimeout(EdgeTwinError):
    """A deadline passed (a live response, a connection set-up)."""

    status_hint = 408
    default_code = "command.timeout"


class Conflict(EdgeTwinError):
    """The resource already exists where a create was asked for."""

    status_hint = 409
    default_code = "things:thing.conflict"


class PreconditionFailed(EdgeTwinError):
    """``If-Match`` / ``If-None-Match`` / ``condition`` did not hold; nothing was changed."""

    status_hint = 412
    default_code = "things:precondition.failed"


class PayloadTooLarge(EdgeTwinError):
    """The entity would exceed its size limit."""

    status_hint = 413
    default_code = "things:thing.toolarge"


class UnsupportedMediaType(EdgeTwinError):
    """The request body's ``Content-Type`` is not accepted here."""

    status_hint = 415
    default_code = "mediatype.unsupported"


class Unavailable(EdgeTwinError):
    """A service edgetwin needs is not running (starting, stopping)."""

    status_hint = 503
    default_code = "gateway:service.unavailable"
