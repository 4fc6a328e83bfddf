"""JWT verification for :class:`edgetwin.api.auth.Authenticator`: keys, algorithms, claims.

Kept apart from ``auth`` so that PyJWT and cryptography (about 9 MB of resident memory) are imported only
when ``[[auth.jwt]]`` issuers are configured: an appliance without JWTs does not pay for them.

Issuers come from ``[[auth.jwt]]``; keys are loaded once (a secret for HS*, a PEM public key or certificate
for RS*/PS*/ES*/EdDSA, or a local JWKS file selected by ``kid``), and every token is checked against its
issuer's ``algorithms`` (never ``none``, never an algorithm the key type cannot verify), ``exp`` (required),
``nbf``, ``iss`` and, when configured, ``aud``, with ``leeway_s``. Verified tokens are cached until they
expire. DSH-style ``claims`` become the identity's topic filters (``auth.topic_filters_from_claims``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from edgetwin.api.auth import (
    _JWT_FAILED,
    MAX_TOKEN_CHARS,
    TOKEN_CACHE_SIZE,
    TokenIdentity,
    topic_filters_from_claims,
)
from edgetwin.errors import ConfigError, Unauthenticated

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from edgetwin.config import JwtIssuer

__all__ = ["JwtVerifier"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any  # bytes (HS*) or a cryptography public key
    algorithms: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Issuer:
    prefix: str
    issuer: str
    audience: str
    leeway_s: float
    jwks: bool
    single: _Key | None  # secret, public_key_file, or a JWKS holding exactly one usable key
    by_kid: dict[str, _Key]


@dataclass(frozen=True, slots=True)
class _Cached:
    identity: TokenIdentity
    valid_until: float


class JwtVerifier:
    """Verifies bearer JWTs against the ``[[auth.jwt]]`` issuers (see the module docstring for the rules).

    Args:
        issuers: the accepted issuers, in configuration order (error messages name ``auth.jwt[i]``).
        cache_size: how many verified tokens to remember.
        clock: the wall clock (seconds since the epoch) against which ``exp`` and ``nbf`` are checked.

    Raises:
        ConfigError: a key cannot be read or used, or two entries name the same issuer.
    """

    def __init__(
        self,
        issuers: Iterable[JwtIssuer],
        *,
        cache_size: int = TOKEN_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers: dict[str, _Issuer] = {}
        for i, config in enumerate(issuers):
            issuer = _load_issuer(f"auth.jwt[{i}]", config)
            names = {config.issuer}
            if "://" not in config.issuer:
                names.add(f"https://{config.issuer}")  # Ditto's JwtSubjectIssuersConfig does the same
            for name in names:
                if name in self._issuers:
                    raise ConfigError(f'auth.jwt[{i}].issuer: issuer "{name}" is configured twice')
                self._issuers[name] = issuer
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    async def verify(self, token: str) -> TokenIdentity:
        """The :class:`TokenVerifier` seam: :meth:`verify_token` (CPU only: microseconds, once per token)."""
        return self.verify_token(token)

    def verify_token(self, token: str) -> TokenIdentity:
        """Verify a raw token string (a bearer header's value, or a WebSocket ``access_token``).

        Args:
            token: the compact JWS (``header.payload.signature``).

        Returns:
            The bearer's subjects and topic filters.

        Raises:
            Unauthenticated: 401 for anything but a valid, current token from a configured issuer.
        """
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            if now < cached.valid_until:
                self._cache.move_to_end(token)
                return cached.identity
            del self._cache[token]
        identity, valid_until = self._verify_uncached(token, now)
        self._cache[token] = _Cached(identity, valid_until)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return identity

    def _verify_uncached(self, token: str, now: float) -> tuple[TokenIdentity, float]:
        if len(token) > MAX_TOKEN_CHARS:
            raise _jwt_failed(f"The token is longer than {MAX_TOKEN_CHARS} characters.")
        try:
            unverified = jwt.decode_complete(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as err:
            raise _jwt_failed(f"The token is not a well-formed JWT: {err}") from None
        header: dict[str, Any] = unverified["header"]
        iss = unverified["payload"].get("iss")
        if not isinstance(iss, str):
            raise _jwt_failed("The JWT has no 'iss' claim.")
        issuer = self._issuers.get(iss)
        if issuer is None:
            raise Unauthenticated(
                f"The JWT issuer '{iss[:200]}' is not supported.",  # Ditto's message; the value is the caller's
                description="Check if your JWT is correct.",
                error_code="gateway:jwt.issuer.notsupported",
            )
        key = _select_key(issuer, header)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in key.algorithms:
            raise _jwt_failed(
                f"The JWT algorithm {alg!r} is not accepted for issuer '{iss}'"
                f" (accepted: {', '.join(sorted(key.algorithms))})."
            )
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                options={
                    "require": ["exp", "iss", "sub"],
                    # exp/nbf are checked below against our clock (the cache uses the same one).
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": bool(issuer.audience),
                    "verify_iss": True,
                    "verify_sub": True,
                    "verify_jti": False,
                },
                audience=issuer.audience or None,
                issuer=iss,
            )
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as err:
            raise _jwt_failed(str(err) or type(err).__name__) from None
        exp = _numeric_date(payload, "exp")
        valid_until = exp + issuer.leeway_s
        if now >= valid_until:
            raise _jwt_failed("The JWT has expired.")
        if "nbf" in payload and _numeric_date(payload, "nbf") > now + issuer.leeway_s:
            raise _jwt_failed("The JWT is not valid yet (nbf).")
        sub = payload["sub"]
        if not isinstance(sub, str) or not sub:
            raise _jwt_failed("The JWT's 'sub' claim must be a non-empty string.")
        publish, subscribe = topic_filters_from_claims(payload.get("claims"))
        return TokenIdentity((f"{issuer.prefix}:{sub}",), publish, subscribe, exp), valid_until


def _numeric_date(payload: dict[str, Any], claim: str) -> float:
    # RFC 7519 §2 NumericDate: a JSON number (not a string, not a boolean).
    value = payload[claim]
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer beyond a float's range
            number = float(value)
    if not math.isfinite(number):
        raise _jwt_failed(f"The JWT's '{claim}' claim must be a number of seconds since the epoch.")
    return number


def _select_key(issuer: _Issuer, header: dict[str, Any]) -> _Key:
    if not issuer.jwks and issuer.single is not None:
        return issuer.single  # a secret or public_key_file: the token's kid does not matter
    kid = header.get("kid")
    if kid is None:
        if issuer.single is not None:
            return issuer.single
        raise _jwt_failed(f"The JWT has no 'kid' header, and issuer '{issuer.issuer}' has several keys.")
    key = issuer.by_kid.get(kid) if isinstance(kid, str) else None
    if key is None:
        # Ditto's DefaultJwtValidator message.
        raise _jwt_failed(f"Public Key of issuer <{issuer.issuer}> with key ID <{str(kid)[:200]}> not found!")
    return key


def _jwt_failed(description: str) -> Unauthenticated:
    return Unauthenticated(_JWT_FAILED, description=description)


# --- key loading ----------------------------------------------------------------------------------------

_EC_ALGORITHMS: Final = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def _load_issuer(where: str, config: JwtIssuer) -> _Issuer:
    algorithms = frozenset(config.algorithms)
    single: _Key | None = None
    by_kid: dict[str, _Key] = {}
    if config.secret:
        single = _make_key(f"{where}.secret", config.secret.encode("utf-8"), algorithms)
    elif config.public_key_file:
        key_where = f"{where}.public_key_file"
        single = _make_key(key_where, _read_pem(key_where, config.public_key_file), algorithms)
    elif config.jwks_file:
        single, by_kid = _read_jwks(f"{where}.jwks_file", config.jwks_file, algorithms)
    else:
        raise ConfigError(f"{where}: set exactly one of secret, public_key_file or jwks_file")
    jwks = bool(config.jwks_file)
    return _Issuer(config.prefix, config.issuer, config.audience, config.leeway_s, jwks, single, by_kid)


def _compatible(key: Any) -> frozenset[str]:
    """The JWS algorithms (RFC 7518 §3.1) this key's type can verify."""
    if isinstance(key, bytes):
        return frozenset({"HS256", "HS384", "HS512"})
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        return frozenset({alg}) if alg else frozenset()
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    return frozenset()


def _describe_key(key: Any) -> str:
    if isinstance(key, bytes):
        return "a secret"
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA key ({key.key_size} bits)"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC key on {key.curve.name}"
    return f"a {type(key).__name__.removeprefix('_')}"


def _make_key(where: str, key: Any, algorithms: frozenset[str], *, jwk_alg: str | None = None) -> _Key:
    usable = algorithms & _compatible(key)
    if jwk_alg is not None:
        usable &= {jwk_alg}
    if not usable:
        raise ConfigError(
            f"{where}: {_describe_key(key)} cannot verify any of the configured algorithms"
            f" ({', '.join(sorted(algorithms))})"
        )
    for alg in sorted(usable):
        algorithm = jwt.get_algorithm_by_name(alg)
        try:
            prepared = algorithm.prepare_key(key)
        except (jwt.PyJWTError, ValueError, TypeError) as err:
            raise ConfigError(f"{where}: not usable for {alg}: {err}") from None
        # RFC 7518 §3.2 (HMAC keys at least the hash size) and §3.3 (RSA at least 2048 bits) are MUSTs;
        # refusing here also keeps PyJWT from warning on every verification.
        short = algorithm.check_key_length(prepared)
        if short:
            raise ConfigError(f"{where}: {short}")
    return _Key(key, frozenset(usable))


def _read_pem(where: str, file: str) -> Any:
    try:
        data = Path(file).read_bytes()
    except OSError as err:
        raise ConfigError(f'{where}: cannot read "{file}": {err.strerror}') from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ConfigError(f'{where}: "{file}" is not a PEM public key or certificate: {err}') from None


def _read_jwks(where: str, file: str, algorithms: frozenset[str]) -> tuple[_Key | None, dict[str, _Key]]:
    try:
        document = json.loads(Path(file).read_bytes())
    except OSError as err:
        raise ConfigError(f'{where}: cannot read "{file}": {err.strerror}') from None
    except ValueError as err:
        raise ConfigError(f'{where}: "{file}" is not JSON: {err}') from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{where}: "{file}" is not a JWK Set (an object with a "keys" array)')
    keys: list[_Key] = []
    by_kid: dict[str, _Key] = {}
    for j, entry in enumerate(entries):
        key_where = f"{where}: keys[{j}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key_where} is not an object")
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise ConfigError(f"{key_where}: kid must be a string")
        if kid is not None:
            key_where = f'{where}: key "{kid}"'
        jwk_alg = entry.get("alg")
        if entry.get("use", "sig") != "sig" or (jwk_alg is not None and jwk_alg not in algorithms):
            logger.debug("%s: skipped (use %s, alg %s)", key_where, entry.get("use"), jwk_alg)
            continue
        try:
            public = jwt.PyJWK(entry).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as err:
            raise ConfigError(f"{key_where}: not a usable JWK: {err}") from None
        if hasattr(public, "public_key"):  # a private JWK: verification needs only its public half
            public = public.public_key()
        if not algorithms & _compatible(public):
            logger.debug("%s: skipped (%s verifies none of the algorithms)", key_where, _describe_key(public))
            continue
        key = _make_key(key_where, public, algorithms, jwk_alg=jwk_alg)
        if kid is not None:
            if kid in by_kid:
                raise ConfigError(f"{key_where}: the kid is used twice")
            by_kid[kid] = key
        keys.append(key)
    if not keys:
        raise ConfigError(
            f'{where}: "{file}" has no signing key for any of the algorithms ({", ".join(sorted(algorithms))})'
        )
    return (keys[0] if len(keys) == 1 else None), by_kid


# --- slowing down repeated failures ---------------------------------------------------------------------
