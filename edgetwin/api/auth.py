"""Who is calling: HTTP credentials to policy subjects (an :class:`~edgetwin.core.commands.AuthContext`).

Contract, in the order :meth:`Authenticator.authenticate` tries them (DESIGN.md "Identity", ditto.md 1.1):

1. ``x-ditto-pre-authenticated: <prefix>:<subject>[,<prefix>:<subject>...]``, **only** from a client address
   inside ``auth.pre_authenticated.trusted_proxies``; from anywhere else the header is ignored (it is what a
   reverse proxy sets after authenticating the user, so a client must not be able to set it itself). A
   trusted proxy that sends a malformed value gets a 401. The header name and the comma-separated subject
   list are Ditto's (``PreAuthenticatedAuthenticationProvider``); unlike Ditto, the query parameter of the
   same name is *not* accepted, because a proxy that strips the header may still pass the query through.
2. ``Authorization: Bearer <token>``: the seam for JWT (a later issue). With no :class:`TokenVerifier`
   configured a bearer token does not authenticate.
3. ``Authorization: Basic`` against ``[[auth.users]]``: ``password`` is compared with
   :func:`hmac.compare_digest`, ``password_hash`` with :func:`~edgetwin.core.passwords.verify_password` in a
   worker thread (scrypt takes ~50 ms and 16 MiB; it must not stall the event loop). Successful
   verifications are remembered in a small LRU keyed by ``(user, sha256(password))`` so that a client
   sending the same credentials on every request pays scrypt once; failures are never cached. The subject
   is ``nginx:<name>``, Ditto's convention for users authenticated by nginx.

Nothing valid raises :class:`~edgetwin.errors.Unauthenticated` (401 ``gateway:authentication.failed``); the
HTTP layer adds ``WWW-Authenticate: Basic realm="edgetwin"``.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
from collections import OrderedDict
from typing import TYPE_CHECKING, Final, Protocol

import trio

from edgetwin.core.commands import AuthContext
from edgetwin.core.passwords import verify_password
from edgetwin.errors import Unauthenticated

if TYPE_CHECKING:
    from edgetwin.api.http import Request
    from edgetwin.config import AuthSettings, User

__all__ = ["PRE_AUTHENTICATED_HEADER", "USER_SUBJECT_PREFIX", "Authenticator", "TokenVerifier"]

PRE_AUTHENTICATED_HEADER: Final = "x-ditto-pre-authenticated"
USER_SUBJECT_PREFIX: Final = "nginx"
VERIFIED_CACHE_SIZE: Final = 256
"""Distinct ``(user, password)`` pairs remembered after a successful scrypt verification."""
SCRYPT_THREADS: Final = 2
"""scrypt verifications running at once: each takes 16 MiB, so a burst of bad passwords stays bounded."""

_FAILED_DESCRIPTION: Final = (
    "Check the credentials: HTTP Basic with a configured user, or a trusted proxy's pre-authenticated"
    " subject."
)

_IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenVerifier(Protocol):
    """The JWT seam: turns a bearer token into policy subjects (``<prefix>:<sub>``)."""

    async def verify(self, token: str) -> tuple[str, ...]:
        """Verify ``token`` and return its subjects.

        Raises:
            Unauthenticated: the token is invalid, expired or from an unknown issuer.
        """
        ...


class Authenticator:
    """Authenticates HTTP requests against the ``[auth]`` settings.

    Args:
        settings: the ``[auth]`` tree (users, trusted proxies).
        token_verifier: verifies ``Authorization: Bearer`` tokens; ``None`` until JWT support lands.
        cache_size: how many verified ``(user, password)`` pairs to remember.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        token_verifier: TokenVerifier | None = None,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        self._users: dict[str, User] = {user.name: user for user in settings.users}
        self._trusted: tuple[_IpNetwork, ...] = tuple(
            ipaddress.ip_network(proxy, strict=False) for proxy in settings.pre_authenticated.trusted_proxies
        )
        self._token_verifier = token_verifier
        self._cache_size = cache_size
        # (user name, sha256 of the password) -> the user's password_hash it was verified against.
        self._verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._scrypt_limiter = trio.CapacityLimiter(SCRYPT_THREADS)

    async def authenticate(self, request: Request) -> AuthContext:
        """The caller's subjects, the first being the originator; the request's correlation id rides along.

        Args:
            request: the HTTP request.

        Returns:
            The authentication context.

        Raises:
            Unauthenticated: no valid credentials (401 ``gateway:authentication.failed``).
        """
        correlation_id = request.correlation_id
        if self._trusted:
            pre = request.header(PRE_AUTHENTICATED_HEADER)
            if pre is not None and self._is_trusted(request.client_host):
                return AuthContext(_pre_authenticated_subjects(pre), correlation_id)
        authorization = request.header("authorization")
        if authorization is None:
            raise Unauthenticated(
                "No authentication was provided.",
                description=_FAILED_DESCRIPTION,
            )
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            name = await self._verify_basic(credentials.strip())
            return AuthContext((f"{USER_SUBJECT_PREFIX}:{name}",), correlation_id)
        if scheme == "bearer" and self._token_verifier is not None:
            return AuthContext(await self._token_verifier.verify(credentials.strip()), correlation_id)
        raise Unauthenticated(
            f"The authentication scheme '{scheme}' is not supported.", description=_FAILED_DESCRIPTION
        )

    def _is_trusted(self, host: str | None) -> bool:
        if not self._trusted or not host:
            return False
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 zone id
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._trusted)

    async def _verify_basic(self, credentials: str) -> str:
        """Check Basic credentials; return the user name."""
        try:
            decoded = binascii.a2b_base64(credentials, strict_mode=True).decode("utf-8")
        except ValueError:  # binascii.Error, a non-ASCII header, UnicodeDecodeError
            raise Unauthenticated(
                "The Basic credentials are not valid base64 of 'user:password'.",
                description=_FAILED_DESCRIPTION,
            ) from None
        name, colon, password = decoded.partition(":")
        user = self._users.get(name)
        if not colon or user is None:
            raise _bad_credentials()
        if user.password:
            if not hmac.compare_digest(password.encode(), user.password.encode()):
                raise _bad_credentials()
            return name
        key = (name, hashlib.sha256(password.encode()).digest())
        if self._verified.get(key) == user.password_hash:
            self._verified.move_to_end(key)
            return name
        ok = await trio.to_thread.run_sync(
            verify_password, password, user.password_hash, limiter=self._scrypt_limiter
        )
        if not ok:
            raise _bad_credentials()
        self._verified[key] = user.password_hash
        self._verified.move_to_end(key)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return name


def _bad_credentials() -> Unauthenticated:
    # One message for "no such user" and "wrong password": do not tell which one it was.
    return Unauthenticated("The username or password is not correct.", description=_FAILED_DESCRIPTION)


def _pre_authenticated_subjects(value: str) -> tuple[str, ...]:
    """Ditto's comma-separated subject list; every subject must be ``<prefix>:<id>``."""
    subjects = tuple(s for s in (part.strip() for part in value.split(",")) if s)
    if not subjects or any(
        not prefix or not rest for prefix, _, rest in (s.partition(":") for s in subjects)
    ):
        raise Unauthenticated(
            f"Failed to extract AuthorizationSubjects from pre-authenticated header value <{value}>!",
            description="Send subjects as '<prefix>:<subject>', separated by commas.",
        )
    return subjects
