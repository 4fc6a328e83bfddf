"""Who is calling: credentials to policy subjects and MQTT topic filters (an
:class:`~edgetwin.core.commands.AuthContext`).

Contract, in the order :meth:`Authenticator.authenticate` tries them (DESIGN.md "Identity", ditto.md 1.1):

1. ``x-ditto-pre-authenticated: <prefix>:<subject>[,<prefix>:<subject>...]``, **only** from a client address
   inside ``auth.pre_authenticated.trusted_proxies``; from anywhere else the header is ignored (it is what a
   reverse proxy sets after authenticating the user, so a client must not be able to set it itself). A
   trusted proxy that sends a malformed value gets a 401. The header name and the comma-separated subject
   list are Ditto's (``PreAuthenticatedAuthenticationProvider``); unlike Ditto, the query parameter of the
   same name is *not* accepted, because a proxy that strips the header may still pass the query through.
   Pre-authenticated subjects carry no topic filters.
2. ``Authorization: Bearer <jwt>`` against ``[[auth.jwt]]`` (:class:`~edgetwin.api.jwt_auth.JwtVerifier`):
   the subject is ``<prefix>:<sub>``; the token's DSH ``claims`` become its topic filters
   (:func:`topic_filters_from_claims`).
   :meth:`Authenticator.authenticate_token` verifies a raw token the same way (the WebSocket's
   ``?access_token=``). Without ``[[auth.jwt]]`` a bearer token does not authenticate.
3. ``Authorization: Basic`` against ``[[auth.users]]``: ``password`` is compared with
   :func:`hmac.compare_digest`, ``password_hash`` with :func:`~edgetwin.core.passwords.verify_password` in a
   worker thread (scrypt takes ~50 ms and 16 MiB; it must not stall the event loop). Successful
   verifications are remembered in a small LRU keyed by ``(user, sha256(password))`` so that a client
   sending the same credentials on every request pays scrypt once; failures are never cached. The subject
   is ``nginx:<name>``, Ditto's convention for users authenticated by nginx; the topic filters are the
   user's ``publish`` / ``subscribe`` lists.

Nothing valid raises :class:`~edgetwin.errors.Unauthenticated` (401 ``gateway:authentication.failed``, or
``gateway:jwt.issuer.notsupported`` for a token from an issuer not configured, as Ditto). The HTTP layer
adds ``WWW-Authenticate: Basic realm="edgetwin"`` unless the error carries its own: a failed bearer token
gets ``Bearer realm="edgetwin", error="invalid_token"`` (RFC 6750 §3.1), and a request without credentials
is offered both schemes when JWT issuers are configured.

**Repeated failures are slowed down** (:class:`FailureSlowdown`): per client address (an IPv6 address by its
/64, since one host usually holds a whole /64), after :data:`FREE_FAILURES` consecutive failed Basic or
Bearer verifications the 401 is delayed, doubling from :data:`FIRST_DELAY_S` up to :data:`MAX_DELAY_S`; a
success resets the count. The delay is a ``trio.sleep`` in the failing request's own task, so other clients
never wait for it. Requests without credentials, with an unsupported scheme or a malformed
pre-authenticated header do not count: they are not guesses. The table is an LRU of at most
:data:`SLOWDOWN_CLIENTS` addresses.

**JWT rules** (:class:`~edgetwin.api.jwt_auth.JwtVerifier`; RFC 7519, RFC 8725):

* The issuer is chosen by the token's unverified ``iss``, Ditto-style: a configured ``issuer`` matches itself
  and, when it has no scheme, ``https://<issuer>`` too (``JwtSubjectIssuersConfig``). Unknown → 401
  ``gateway:jwt.issuer.notsupported``.
* Keys are loaded once, at construction: ``secret`` (HS*), ``public_key_file`` (a PEM public key or
  certificate: RSA for RS*/PS*, EC P-256/384/521 for ES256/384/512, Ed25519/Ed448 for EdDSA) or
  ``jwks_file`` (a local JWK Set; the key is chosen by the token's ``kid``, an unknown ``kid`` is a 401; a
  token without ``kid`` is accepted only when the set holds one usable key). A key that cannot be read, or
  cannot verify any configured algorithm, or is shorter than RFC 7518 requires (an HS secret as long as the
  hash, RSA 2048 bits) is a :class:`~edgetwin.errors.ConfigError` naming the key. JWKS entries for
  encryption (``use: enc``) or for an algorithm not configured are skipped.
* The token's ``alg`` must be one the issuer lists **and** one its key can verify: ``none`` never is, and an
  HS token is never checked against an RSA/EC key (no algorithm confusion).
* ``exp`` is **required** (and must be a number): Ditto's JWT model reads it with ``getValueOrThrow`` and
  its WebSocket sessions end at it; a token that never expires cannot be cached safely or revoked by time.
  ``exp`` and ``nbf`` are checked with the issuer's ``leeway_s``; ``iat`` is not checked (Ditto does not).
  ``sub`` is required (a non-empty string): it names the subject. ``aud`` is checked only when the issuer
  configures ``audience`` (a token's ``aud`` is otherwise ignored, as in Ditto).
* Verified tokens are cached (an LRU of :data:`TOKEN_CACHE_SIZE`, keyed by the token) until their ``exp``
  plus leeway, so a client sending the same token on every request pays for the signature once. Failures
  are never cached. Tokens longer than :data:`MAX_TOKEN_CHARS` are refused before any parsing.
* Any malformed input (truncated, tampered, not base64url, not JSON, wrong types) is a 401, never a 500.

**DSH claims** (DSH Messaging API, "MQTT Tokens", §3.3.2.4): a token's ``claims`` is a list of
``{"action": "publish"|"subscribe", "resource": {"type": "topic", "prefix": "/tt", "stream": "weather",
"topic": "<pattern>"}}``; each becomes the MQTT topic filter ``<prefix>/<stream>/<pattern>`` (so prefix
``/tt``, stream ``water`` and pattern ``drip/drip/drip`` allow exactly ``/tt/water/drip/drip/drip``). An
entry that is malformed (wrong action or type, a prefix or stream with a wildcard, an empty stream or one
with ``/``, a pattern that is not a valid MQTT filter) grants nothing; the rest of the token still counts.
A token without ``claims`` (or with DSH's REST-token shape, a map) has no topic filters: no list, no access
(DESIGN "Topic permissions"; the DSH instead grants the API client's full rights then).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import trio

from edgetwin.core.commands import AuthContext
from edgetwin.core.passwords import verify_password
from edgetwin.errors import ConfigError, Unauthenticated
from edgetwin.mqtt.topics import TopicError, is_valid_topic_filter, validate_topic_filter

if TYPE_CHECKING:
    from edgetwin.api.http import Request
    from edgetwin.config import AuthSettings, User

__all__ = [
    "PRE_AUTHENTICATED_HEADER",
    "USER_SUBJECT_PREFIX",
    "Authenticator",
    "FailureSlowdown",
    "TokenIdentity",
    "TokenVerifier",
    "topic_filters_from_claims",
]

logger = logging.getLogger(__name__)

PRE_AUTHENTICATED_HEADER: Final = "x-ditto-pre-authenticated"
USER_SUBJECT_PREFIX: Final = "nginx"
VERIFIED_CACHE_SIZE: Final = 256
"""Distinct ``(user, password)`` pairs remembered after a successful scrypt verification."""
SCRYPT_THREADS: Final = 2
"""scrypt verifications running at once: each takes 16 MiB, so a burst of bad passwords stays bounded."""
TOKEN_CACHE_SIZE: Final = 512
"""Verified tokens remembered (each at most :data:`MAX_TOKEN_CHARS`, so at most 4 MiB of keys)."""
MAX_TOKEN_CHARS: Final = 8192
"""The longest token accepted; a DSH MQTT token with a few claims is under 1 KiB."""
FREE_FAILURES: Final = 3
"""Consecutive failures per client address answered without delay."""
FIRST_DELAY_S: Final = 0.125
"""The delay of the first slowed-down 401; it doubles with each further failure."""
MAX_DELAY_S: Final = 2.0
"""The longest delay of a 401."""
SLOWDOWN_CLIENTS: Final = 4096
"""Client addresses whose failures are remembered (an LRU)."""

REALM: Final = "edgetwin"
_BASIC_AND_BEARER: Final = f'Basic realm="{REALM}", Bearer realm="{REALM}"'
_BEARER_INVALID: Final = f'Bearer realm="{REALM}", error="invalid_token"'
_FAILED_DESCRIPTION: Final = (
    "Check the credentials: HTTP Basic with a configured user, a bearer JWT from a configured issuer, or a"
    " trusted proxy's pre-authenticated subject."
)
_JWT_FAILED: Final = "The JWT could not be verified."

_IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- tokens ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """What a verified token says about its bearer.

    Attributes:
        subjects: the policy subjects (``<prefix>:<sub>``), the first being the originator.
        publish: MQTT topic filters the bearer may publish to.
        subscribe: MQTT topic filters the bearer may subscribe to.
        expires_at: the token's ``exp`` (seconds since the epoch).
    """

    subjects: tuple[str, ...]
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    expires_at: float = math.inf


class TokenVerifier(Protocol):
    """The bearer-token seam: turns a token into a :class:`TokenIdentity`."""

    async def verify(self, token: str) -> TokenIdentity:
        """Verify ``token`` and say who holds it.

        Raises:
            Unauthenticated: the token is invalid, expired or from an unknown issuer.
        """
        ...


def topic_filters_from_claims(claims: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The MQTT topic filters a DSH-style ``claims`` list grants (see the module docstring).

    Args:
        claims: the token's ``claims`` value, as decoded from JSON (anything).

    Returns:
        ``(publish, subscribe)`` filter tuples, each in claim order without duplicates.
    """
    publish: dict[str, None] = {}
    subscribe: dict[str, None] = {}
    if not isinstance(claims, list):
        return (), ()
    for claim in claims:
        topic_filter = _claim_filter(claim)
        if topic_filter is None:
            logger.debug("ignoring a malformed topic claim: %.200r", claim)
            continue
        (publish if claim["action"] == "publish" else subscribe)[topic_filter] = None
    return tuple(publish), tuple(subscribe)


def _claim_filter(claim: object) -> str | None:
    if not isinstance(claim, dict) or claim.get("action") not in ("publish", "subscribe"):
        return None
    resource = claim.get("resource")
    if not isinstance(resource, dict) or resource.get("type") != "topic":
        return None
    prefix, stream, pattern = resource.get("prefix"), resource.get("stream"), resource.get("topic")
    if not isinstance(prefix, str) or not isinstance(stream, str) or not isinstance(pattern, str):
        return None
    # The prefix and stream are literal: a wildcard there would reach beyond the stream.
    if not prefix or not stream or "/" in stream or any(c in prefix + stream for c in "+#"):
        return None
    topic_filter = f"{prefix}/{stream}/{pattern}"
    return topic_filter if pattern and is_valid_topic_filter(topic_filter) else None


class FailureSlowdown:
    """Counts consecutive authentication failures per client address and says how long to delay the 401.

    Pure bookkeeping (no clock, no I/O): :class:`Authenticator` does the sleeping.

    Args:
        free_failures: consecutive failures answered without delay.
        first_delay_s: the delay of the first delayed failure; it doubles with each further one.
        max_delay_s: the cap on the delay.
        max_clients: how many client addresses to remember (least recently failed ones are forgotten).
    """

    def __init__(
        self,
        *,
        free_failures: int = FREE_FAILURES,
        first_delay_s: float = FIRST_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        max_clients: int = SLOWDOWN_CLIENTS,
    ) -> None:
        self._free = free_failures
        self._first = first_delay_s
        self._max = max_delay_s
        self._max_clients = max_clients
        self._failures: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        """How many client addresses have unreset failures."""
        return len(self._failures)

    def failed(self, client_host: str | None) -> float:
        """Record a failure; return how long to delay its answer.

        Args:
            client_host: the client's address (``Request.client_host``).

        Returns:
            The delay in seconds (0 for the first :data:`FREE_FAILURES` in a row).
        """
        key = _client_key(client_host)
        count = self._failures.pop(key, 0) + 1
        self._failures[key] = count
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)
        excess = count - self._free
        if excess <= 0:
            return 0.0
        return min(self._max, self._first * 2.0 ** min(excess - 1, 64))

    def succeeded(self, client_host: str | None) -> None:
        """Forget the client's failures.

        Args:
            client_host: the client's address.
        """
        if self._failures:
            self._failures.pop(_client_key(client_host), None)


def _client_key(host: str | None) -> str:
    if not host:
        return ""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# --- the authenticator ----------------------------------------------------------------------------------


class Authenticator:
    """Authenticates HTTP requests (and WebSocket tokens) against the ``[auth]`` settings.

    Args:
        settings: the ``[auth]`` tree (users, JWT issuers, trusted proxies).
        token_verifier: verifies bearer tokens; by default a :class:`JwtVerifier` over ``settings.jwt`` when
            issuers are configured, else none (bearer tokens are then refused).
        cache_size: how many verified ``(user, password)`` pairs to remember.
        slowdown: the failure bookkeeping; a fresh :class:`FailureSlowdown` by default.

    Raises:
        ConfigError: a user's topic filter is invalid, or a JWT key cannot be loaded.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        token_verifier: TokenVerifier | None = None,
        cache_size: int = VERIFIED_CACHE_SIZE,
        slowdown: FailureSlowdown | None = None,
    ) -> None:
        for i, user in enumerate(settings.users):
            for kind in ("publish", "subscribe"):
                for j, topic_filter in enumerate(getattr(user, kind)):
                    try:
                        validate_topic_filter(topic_filter)
                    except TopicError as err:
                        raise ConfigError(f"auth.users[{i}].{kind}[{j}]: {err}") from None
        self._users: dict[str, User] = {user.name: user for user in settings.users}
        self._trusted: tuple[_IpNetwork, ...] = tuple(
            ipaddress.ip_network(proxy, strict=False) for proxy in settings.pre_authenticated.trusted_proxies
        )
        if token_verifier is None and settings.jwt:
            # Imported here: PyJWT and cryptography cost ~9 MB, paid only when issuers are configured.
            from edgetwin.api.jwt_auth import JwtVerifier

            token_verifier = JwtVerifier(settings.jwt)
        self._token_verifier = token_verifier
        self._challenge = _BASIC_AND_BEARER if token_verifier is not None else None
        self._cache_size = cache_size
        # (user name, sha256 of the password) -> the user's password_hash it was verified against.
        self._verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()
        self._scrypt_limiter = trio.CapacityLimiter(SCRYPT_THREADS)
        self._slowdown = slowdown if slowdown is not None else FailureSlowdown()

    async def authenticate(self, request: Request) -> AuthContext:
        """The caller's subjects (the first being the originator) and topic filters; the request's
        correlation id rides along.

        Args:
            request: the HTTP request.

        Returns:
            The authentication context.

        Raises:
            Unauthenticated: no valid credentials (401), after the slow-down delay when this address
                keeps failing.
        """
        return (await self.authenticate_expiring(request))[0]

    async def authenticate_expiring(self, request: Request) -> tuple[AuthContext, float]:
        """Like :meth:`authenticate`, also saying until when the credentials hold (a long-lived WebSocket
        session is closed then, unless it refreshes its token).

        Args:
            request: the HTTP request.

        Returns:
            The authentication context, and the token's ``exp`` (seconds since the epoch) for a bearer
            token, ``math.inf`` for credentials that do not expire (Basic, pre-authenticated).

        Raises:
            Unauthenticated: as :meth:`authenticate`.
        """
        correlation_id = request.correlation_id
        if self._trusted:
            pre = request.header(PRE_AUTHENTICATED_HEADER)
            if pre is not None and self._is_trusted(request.client_host):
                return AuthContext(_pre_authenticated_subjects(pre), correlation_id), math.inf
        authorization = request.header("authorization")
        if authorization is None:
            raise Unauthenticated(
                "No authentication was provided.",
                description=_FAILED_DESCRIPTION,
                headers={"www-authenticate": self._challenge} if self._challenge else None,
            )
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                user = await self._verify_basic(credentials.strip())
            except Unauthenticated as err:
                failure = err
            else:
                self._slowdown.succeeded(request.client_host)
                context = AuthContext(
                    (f"{USER_SUBJECT_PREFIX}:{user.name}",), correlation_id, user.publish, user.subscribe
                )
                return context, math.inf
            # Sleep outside the except block (flake8-async ASYNC120): a cancelled sleep must not look like
            # it replaced the 401; it simply ends the request.
            await self._slow_down(request.client_host)
            raise failure
        if scheme == "bearer" and self._token_verifier is not None:
            return await self.authenticate_token_expiring(
                credentials.strip(), client_host=request.client_host, correlation_id=correlation_id
            )
        raise Unauthenticated(
            f"The authentication scheme '{scheme}' is not supported.", description=_FAILED_DESCRIPTION
        )

    async def authenticate_token(
        self, token: str, *, client_host: str | None = None, correlation_id: str | None = None
    ) -> AuthContext:
        """Authenticate a raw bearer token (the WebSocket's ``?access_token=``), with the same slow-down.

        Args:
            token: the token.
            client_host: the client's address, for the slow-down.
            correlation_id: carried into the context.

        Returns:
            The authentication context (subjects and topic filters).

        Raises:
            Unauthenticated: the token is not valid (or no issuer is configured), with a ``Bearer``
                ``WWW-Authenticate`` challenge.
        """
        context, _ = await self.authenticate_token_expiring(
            token, client_host=client_host, correlation_id=correlation_id
        )
        return context

    async def authenticate_token_expiring(
        self, token: str, *, client_host: str | None = None, correlation_id: str | None = None
    ) -> tuple[AuthContext, float]:
        """Like :meth:`authenticate_token`, also returning the token's ``exp`` (seconds since the epoch;
        ``math.inf`` when the verifier does not say), until when a WebSocket session may use it.

        Raises:
            Unauthenticated: as :meth:`authenticate_token`.
        """
        if self._token_verifier is None:
            raise Unauthenticated("Bearer tokens are not accepted here.", description=_FAILED_DESCRIPTION)
        try:
            identity = await self._token_verifier.verify(token)
        except Unauthenticated as err:
            err.headers.setdefault("www-authenticate", _BEARER_INVALID)
            failure = err
        else:
            self._slowdown.succeeded(client_host)
            context = AuthContext(identity.subjects, correlation_id, identity.publish, identity.subscribe)
            return context, identity.expires_at
        await self._slow_down(client_host)
        raise failure

    async def authenticate_credentials(
        self, username: str | None, password: bytes | None, *, client_host: str | None = None
    ) -> tuple[AuthContext, float]:
        """MQTT CONNECT credentials: a built-in user's name and password, or a JWT as the password (any user
        name, or none), with the same slow-down as HTTP.

        Args:
            username: the CONNECT user name.
            password: the CONNECT password.
            client_host: the client's address, for the slow-down.

        Returns:
            The authentication context and until when it holds (a token's ``exp``, else ``math.inf``).

        Raises:
            Unauthenticated: no such user, a wrong password, or an invalid token.
        """
        secret = (password or b"").decode("utf-8", "replace")
        if (
            self._token_verifier is not None
            and secret.count(".") == 2
            and (username or "") not in self._users
        ):
            return await self.authenticate_token_expiring(secret, client_host=client_host)
        try:
            user = await self._verify_user(username or "", secret)
        except Unauthenticated as err:
            failure = err
        else:
            self._slowdown.succeeded(client_host)
            subject = f"{USER_SUBJECT_PREFIX}:{user.name}"
            return AuthContext((subject,), None, user.publish, user.subscribe), math.inf
        await self._slow_down(client_host)
        raise failure

    async def _slow_down(self, client_host: str | None) -> None:
        delay = self._slowdown.failed(client_host)
        if delay > 0:
            logger.debug("authentication keeps failing from %s: answering in %.3f s", client_host, delay)
            await trio.sleep(delay)

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

    async def _verify_basic(self, credentials: str) -> User:
        """Check Basic credentials; return the user."""
        try:
            decoded = binascii.a2b_base64(credentials, strict_mode=True).decode("utf-8")
        except ValueError:  # binascii.Error, a non-ASCII header, UnicodeDecodeError
            raise Unauthenticated(
                "The Basic credentials are not valid base64 of 'user:password'.",
                description=_FAILED_DESCRIPTION,
            ) from None
        name, colon, password = decoded.partition(":")
        if not colon:
            raise _bad_credentials()
        return await self._verify_user(name, password)

    async def _verify_user(self, name: str, password: str) -> User:
        """A built-in user whose password is ``password`` (scrypt verified once, then cached)."""
        user = self._users.get(name)
        if user is None:
            raise _bad_credentials()
        if user.password:
            if not hmac.compare_digest(password.encode(), user.password.encode()):
                raise _bad_credentials()
            return user
        key = (name, hashlib.sha256(password.encode()).digest())
        if self._verified.get(key) == user.password_hash:
            self._verified.move_to_end(key)
            return user
        ok = await trio.to_thread.run_sync(
            verify_password, password, user.password_hash, limiter=self._scrypt_limiter
        )
        if not ok:
            raise _bad_credentials()
        self._verified[key] = user.password_hash
        self._verified.move_to_end(key)
        while len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return user


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
