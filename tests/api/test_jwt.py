"""Bearer JWTs: real tokens made with PyJWT (HS256 secret, RS256 PEM and certificate, ES256 from a JWK Set with
two kids), every way a token can be wrong (expired, not yet valid, foreign issuer or audience, ``alg: none``,
algorithm confusion, truncated, tampered, fuzzed), key loading errors, the verified-token cache, and DSH
claims turned into MQTT topic filters.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.api import auth as auth_module
from edgetwin.api.auth import Authenticator, TokenIdentity, topic_filters_from_claims
from edgetwin.api.http import Request, error_response
from edgetwin.api.jwt_auth import JwtVerifier
from edgetwin.config import AuthSettings, JwtIssuer, User
from edgetwin.errors import ConfigError, Unauthenticated

SECRET = "an HS256 secret of at least thirty-two bytes"
HS_ISS = "https://hs.example"
RS_ISS = "https://rs.example"
ES_ISS = "https://es.example"
CERT_ISS = "cert.example"  # no scheme: also matches https://cert.example, as in Ditto

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY_1 = ec.generate_private_key(ec.SECP256R1())
EC_KEY_2 = ec.generate_private_key(ec.SECP256R1())
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)

CLAIMS = [
    {
        "action": "subscribe",
        "resource": {"type": "topic", "prefix": "/tt", "stream": "weather", "topic": "z/+/+/+/#"},
    },
    {"action": "publish", "resource": {"type": "topic", "prefix": "/tt", "stream": "water", "topic": "drip"}},
    {"action": "subscribe", "resource": {"type": "topic", "prefix": "/tt", "stream": "water", "topic": "#"}},
]


def _pem(key: Any) -> bytes:
    data: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _jwk(key: Any, kid: str, **extra: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return data | {"kid": kid, "use": "sig"} | extra


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    files = {
        "rsa.pem": RSA_PUBLIC_PEM,
        "cert.pem": _certificate(OTHER_RSA_KEY),
        "jwks.json": json.dumps(
            {
                "keys": [
                    _jwk(EC_KEY_1, "k1"),
                    _jwk(EC_KEY_2, "k2", alg="ES256"),
                    # skipped: for encryption, and for an algorithm not configured
                    _jwk(EC_KEY_2, "enc", use="enc"),
                    _jwk(EC_KEY_2, "es384", alg="ES384"),
                ]
            }
        ).encode(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def _issuers(files: dict[str, Path]) -> tuple[JwtIssuer, ...]:
    return (
        JwtIssuer(prefix="hs", issuer=HS_ISS, secret=SECRET, algorithms=("HS256",)),
        JwtIssuer(
            prefix="rs", issuer=RS_ISS, public_key_file=str(files["rsa.pem"]), algorithms=("RS256", "ES256")
        ),
        JwtIssuer(prefix="es", issuer=ES_ISS, jwks_file=str(files["jwks.json"]), algorithms=("ES256",)),
        JwtIssuer(
            prefix="cert",
            issuer=CERT_ISS,
            public_key_file=str(files["cert.pem"]),
            algorithms=("PS256",),
            audience="edgetwin",
            leeway_s=0,
        ),
    )


@pytest.fixture(scope="module")
def verifier(key_files: dict[str, Path]) -> JwtVerifier:
    return JwtVerifier(_issuers(key_files))


def token(
    *,
    iss: str | None = HS_ISS,
    sub: Any = "alice",
    exp: Any = "in an hour",
    key: Any = SECRET,
    alg: str = "HS256",
    headers: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {
        "iss": iss,
        "sub": sub,
        "exp": time.time() + 3600 if exp == "in an hour" else exp,
    }
    payload |= claims
    for name in drop:
        payload.pop(name, None)
    if iss is None:
        payload.pop("iss")
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_signed(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """A token signed with HMAC-SHA256 by hand (PyJWT refuses to use a PEM key as an HMAC secret)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def failure(verifier: JwtVerifier, value: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify_token(value)
    assert info.value.status == 401
    return info.value


# --- good tokens ----------------------------------------------------------------------------------------


def test_hs256_secret(verifier: JwtVerifier) -> None:
    identity = verifier.verify_token(token(claims=CLAIMS))
    assert identity.subjects == ("hs:alice",)
    assert identity.publish == ("/tt/water/drip",)
    assert identity.subscribe == ("/tt/weather/z/+/+/+/#", "/tt/water/#")
    assert identity.expires_at > time.time()


def test_rs256_public_key_file(verifier: JwtVerifier) -> None:
    identity = verifier.verify_token(token(iss=RS_ISS, key=RSA_KEY, alg="RS256", sub="device-7"))
    assert identity == TokenIdentity(("rs:device-7",), (), (), identity.expires_at)


def test_ps256_certificate_file_with_audience(verifier: JwtVerifier) -> None:
    good = token(iss=CERT_ISS, key=OTHER_RSA_KEY, alg="PS256", aud="edgetwin")
    assert verifier.verify_token(good).subjects == ("cert:alice",)
    # Ditto's issuer rule: a configured issuer without a scheme also matches https://<issuer>
    https = token(iss=f"https://{CERT_ISS}", key=OTHER_RSA_KEY, alg="PS256", aud=["other", "edgetwin"])
    assert verifier.verify_token(https).subjects == ("cert:alice",)


@pytest.mark.parametrize(("kid", "key"), [("k1", EC_KEY_1), ("k2", EC_KEY_2)])
def test_es256_from_jwks_by_kid(verifier: JwtVerifier, kid: str, key: Any) -> None:
    identity = verifier.verify_token(token(iss=ES_ISS, key=key, alg="ES256", headers={"kid": kid}))
    assert identity.subjects == ("es:alice",)


def test_leeway_and_audience_not_configured(verifier: JwtVerifier) -> None:
    now = time.time()
    # within the default 30 s leeway
    assert verifier.verify_token(token(exp=now - 10, nbf=now + 10)).subjects == ("hs:alice",)
    # an aud claim is ignored when the issuer configures no audience (as in Ditto)
    assert verifier.verify_token(token(aud="someone-else")).subjects == ("hs:alice",)
    # iat is not checked, a float exp is fine
    assert verifier.verify_token(token(iat="yesterday", exp=now + 60.5)).subjects == ("hs:alice",)


async def test_async_seam(verifier: JwtVerifier) -> None:
    assert (await verifier.verify(token())).subjects == ("hs:alice",)


# --- bad tokens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"exp": time.time() - 31}, "expired"),
        ({"nbf": time.time() + 60}, "not valid yet"),
        ({"drop": ("exp",)}, "exp"),
        ({"exp": "tomorrow"}, "exp"),
        ({"exp": True}, "exp"),
        ({"exp": float("inf")}, "exp"),  # not JSON, but Python's json writes and reads Infinity
        ({"drop": ("sub",)}, "sub"),
        ({"sub": ""}, "sub"),
        ({"sub": 7}, "ubject"),
        ({"key": "a different secret of thirty-two bytes or more"}, "Signature verification failed"),
        ({"iss": None}, "iss"),
        ({"nbf": "soon"}, "nbf"),
    ],
)
def test_invalid_hs256_tokens(verifier: JwtVerifier, kwargs: dict[str, Any], needle: str) -> None:
    err = failure(verifier, token(**kwargs))
    assert err.error_code == "gateway:authentication.failed"
    assert err.message == "The JWT could not be verified."
    assert needle in (err.description or "")


def test_huge_integer_exp(verifier: JwtVerifier) -> None:
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"iss": HS_ISS, "sub": "alice", "exp": 10**400}  # beyond a float
    assert "exp" in (failure(verifier, _hand_signed(header, payload, SECRET.encode())).description or "")


def test_foreign_issuer(verifier: JwtVerifier) -> None:
    err = failure(verifier, token(iss="https://evil.example"))
    assert err.error_code == "gateway:jwt.issuer.notsupported"
    assert err.message == "The JWT issuer 'https://evil.example' is not supported."
    # only issuers without a scheme get the https:// alias
    assert failure(verifier, token(iss="hs.example")).error_code == "gateway:jwt.issuer.notsupported"


@pytest.mark.parametrize("aud", [None, "other", ["other", "another"], 42])
def test_wrong_audience(verifier: JwtVerifier, aud: Any) -> None:
    claims = {} if aud is None else {"aud": aud}
    failure(verifier, token(iss=CERT_ISS, key=OTHER_RSA_KEY, alg="PS256", **claims))


def test_leeway_zero_is_exact(verifier: JwtVerifier) -> None:
    expired = token(iss=CERT_ISS, key=OTHER_RSA_KEY, alg="PS256", aud="edgetwin", exp=time.time() - 1)
    assert "expired" in (failure(verifier, expired).description or "")


def test_alg_none(verifier: JwtVerifier) -> None:
    unsigned = jwt.encode({"iss": HS_ISS, "sub": "alice", "exp": time.time() + 60}, "", algorithm="none")
    assert "'none' is not accepted" in (failure(verifier, unsigned).description or "")
    # ... also with an empty or bogus signature appended
    failure(verifier, unsigned + "AAAA")
    header = _b64(json.dumps({"alg": "none"}).encode())
    payload = _b64(json.dumps({"iss": RS_ISS, "sub": "x", "exp": time.time() + 60}).encode())
    failure(verifier, f"{header}.{payload}.")


def test_algorithm_confusion_hs256_with_the_rsa_public_key(verifier: JwtVerifier) -> None:
    payload = {"iss": RS_ISS, "sub": "mallory", "exp": time.time() + 60}
    forged = _hand_signed({"alg": "HS256", "typ": "JWT"}, payload, RSA_PUBLIC_PEM)
    assert "'HS256' is not accepted" in (failure(verifier, forged).description or "")


def test_algorithm_listed_but_not_matching_the_key(verifier: JwtVerifier) -> None:
    # The RS issuer lists ES256 too, but its key is RSA: an ES256 token is never checked against it.
    forged = token(iss=RS_ISS, key=EC_KEY_1, alg="ES256")
    assert "'ES256' is not accepted" in (failure(verifier, forged).description or "")


def test_rs256_signed_by_another_key(verifier: JwtVerifier) -> None:
    failure(verifier, token(iss=RS_ISS, key=OTHER_RSA_KEY, alg="RS256"))


@pytest.mark.parametrize(
    ("headers", "key", "needle"),
    [
        ({"kid": "nope"}, EC_KEY_1, "with key ID <nope> not found"),
        ({}, EC_KEY_1, "no 'kid'"),
        ({"kid": "k2"}, EC_KEY_1, "Signature verification failed"),  # kid of one key, signed by the other
        ({"kid": "enc"}, EC_KEY_2, "not found"),  # an encryption key is never used
        ({"kid": "es384"}, EC_KEY_2, "not found"),  # nor one for an algorithm not configured
    ],
)
def test_jwks_key_selection(verifier: JwtVerifier, headers: dict[str, Any], key: Any, needle: str) -> None:
    err = failure(verifier, token(iss=ES_ISS, key=key, alg="ES256", headers=headers))
    assert needle in (err.description or "")


def test_truncated_tokens(verifier: JwtVerifier) -> None:
    for good in (
        token(claims=CLAIMS),
        token(iss=RS_ISS, key=RSA_KEY, alg="RS256"),
        token(iss=ES_ISS, key=EC_KEY_1, alg="ES256", headers={"kid": "k1"}),
    ):
        verifier.verify_token(good)
        for end in range(len(good)):
            failure(verifier, good[:end])


_GOOD_TOKENS = [
    token(claims=CLAIMS),
    token(iss=RS_ISS, key=RSA_KEY, alg="RS256"),
    token(iss=ES_ISS, key=EC_KEY_2, alg="ES256", headers={"kid": "k2"}),
]
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_GOOD_TOKENS), st.data())
def test_tampered_tokens(verifier: JwtVerifier, good: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(good) - 1))
    replacement = data.draw(st.sampled_from(_B64URL).filter(lambda c: c != good[position]))
    failure(verifier, good[:position] + replacement + good[position + 1 :])


def _segment(value: Any) -> str:
    return _b64(json.dumps(value).encode()) if not isinstance(value, bytes) else _b64(value)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "RS256", "ES256", "PS256", "none", "EdDSA", ""]) | _json,
        "kid": st.sampled_from(["k1", "k2", "enc"]) | _json,
        "typ": _json,
        "crit": _json,
        "b64": st.booleans(),
    },
)
_payloads = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([HS_ISS, RS_ISS, ES_ISS, CERT_ISS]) | _json,
        "sub": _json,
        "exp": st.integers() | st.floats() | _json,
        "nbf": _json,
        "aud": _json,
        "claims": _json,
    },
)
_structured = st.tuples(_headers, _payloads | _json, st.binary(max_size=80)).map(
    lambda parts: ".".join(_segment(part) for part in parts)
)
_fuzz = (
    st.text(max_size=200)
    | st.text(alphabet=_B64URL, max_size=200)
    | st.lists(st.binary(max_size=60), min_size=1, max_size=5).map(lambda ps: ".".join(map(_b64, ps)))
    | _structured
)


@settings(max_examples=800, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_fuzz)
def test_fuzzed_tokens_are_401_never_500(verifier: JwtVerifier, value: str) -> None:
    failure(verifier, value)


def test_overlong_token(verifier: JwtVerifier) -> None:
    assert "longer than" in (failure(verifier, token(padding="x" * 9000)).description or "")


# --- the cache ------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _counting(verifier: JwtVerifier, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = verifier._verify_uncached

    def counting(value: str, now: float) -> tuple[TokenIdentity, float]:
        calls.append(value)
        return real(value, now)

    monkeypatch.setattr(verifier, "_verify_uncached", counting)
    return calls


def test_verified_tokens_are_cached_until_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    verifier = JwtVerifier((JwtIssuer(prefix="hs", issuer=HS_ISS, secret=SECRET, leeway_s=5),), clock=clock)
    calls = _counting(verifier, monkeypatch)
    good = token(exp=int(clock.now) + 60)
    for _ in range(3):
        assert verifier.verify_token(good).subjects == ("hs:alice",)
    assert calls == [good]
    clock.now = int(clock.now) + 64.9  # exp + leeway not reached yet
    verifier.verify_token(good)
    assert calls == [good]
    clock.now = int(clock.now) + 65.1  # past exp + leeway: verified again, and refused
    with pytest.raises(Unauthenticated):
        verifier.verify_token(good)
    assert calls == [good, good]
    assert good not in verifier._cache
    # failures are never cached
    with pytest.raises(Unauthenticated):
        verifier.verify_token(good)
    assert calls == [good, good, good]


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = JwtVerifier((JwtIssuer(prefix="hs", issuer=HS_ISS, secret=SECRET),), cache_size=2)
    calls = _counting(verifier, monkeypatch)
    t1, t2, t3 = (token(sub=name) for name in ("a", "b", "c"))
    for value in (t1, t2, t3, t3, t1):
        verifier.verify_token(value)
    assert calls == [t1, t2, t3, t1]  # t1 was evicted by t3
    assert len(verifier._cache) == 2


# --- configuration --------------------------------------------------------------------------------------


def _config_error(tmp_path: Path, **issuer: Any) -> str:
    with pytest.raises(ConfigError) as info:
        JwtVerifier((JwtIssuer(prefix="p", issuer="https://i.example", **issuer),))
    return info.value.message


def test_key_file_errors_name_the_key(tmp_path: Path, key_files: dict[str, Path]) -> None:
    missing = str(tmp_path / "missing.pem")
    assert _config_error(tmp_path, public_key_file=missing, algorithms=("RS256",)).startswith(
        "auth.jwt[0].public_key_file: cannot read"
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    message = _config_error(tmp_path, public_key_file=str(garbage), algorithms=("RS256",))
    assert message.startswith("auth.jwt[0].public_key_file:")
    assert "not a PEM public key" in message
    private = tmp_path / "private.pem"
    private.write_bytes(
        RSA_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert "not a PEM public key" in _config_error(
        tmp_path, public_key_file=str(private), algorithms=("RS256",)
    )
    message = _config_error(tmp_path, public_key_file=str(key_files["rsa.pem"]), algorithms=("ES256",))
    assert message == (
        "auth.jwt[0].public_key_file: an RSA key (2048 bits) cannot verify any of the configured algorithms"
        " (ES256)"
    )
    weak = tmp_path / "weak.pem"
    weak.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()))
    assert "2048" in _config_error(tmp_path, public_key_file=str(weak), algorithms=("RS256",))
    ed = tmp_path / "ed.pem"
    ed.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    JwtVerifier(
        (JwtIssuer(prefix="p", issuer="https://i.example", public_key_file=str(ed), algorithms=("EdDSA",)),)
    )


def test_short_secret_is_a_config_error(tmp_path: Path) -> None:
    message = _config_error(tmp_path, secret="short", algorithms=("HS256",))
    assert message.startswith("auth.jwt[0].secret: ")
    # long enough for HS256 is not long enough for HS512
    assert _config_error(tmp_path, secret=SECRET, algorithms=("HS256", "HS512")).startswith(
        "auth.jwt[0].secret:"
    )


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{", "is not JSON"),
        (b"[]", "not a JWK Set"),
        (b'{"keys": [1]}', "keys[0] is not an object"),
        (b'{"keys": [{"kty": "EC", "kid": "x"}]}', 'key "x": not a usable JWK'),
        (b'{"keys": []}', "has no signing key"),
    ],
)
def test_jwks_file_errors(tmp_path: Path, content: bytes, needle: str) -> None:
    file = tmp_path / "jwks.json"
    file.write_bytes(content)
    message = _config_error(tmp_path, jwks_file=str(file), algorithms=("ES256",))
    assert message.startswith("auth.jwt[0].jwks_file: ")
    assert needle in message


def test_jwks_duplicate_kid_and_unusable_keys(tmp_path: Path) -> None:
    file = tmp_path / "jwks.json"
    file.write_text(json.dumps({"keys": [_jwk(EC_KEY_1, "a"), _jwk(EC_KEY_2, "a")]}))
    assert "used twice" in _config_error(tmp_path, jwks_file=str(file), algorithms=("ES256",))
    # only keys for other algorithms: nothing to verify with
    assert "has no signing key" in _config_error(tmp_path, jwks_file=str(file), algorithms=("RS256",))


def test_jwks_single_key_without_kid(tmp_path: Path) -> None:
    file = tmp_path / "jwks.json"
    only = _jwk(EC_KEY_1, "x")
    del only["kid"]
    file.write_text(json.dumps({"keys": [only]}))
    verifier = JwtVerifier(
        (JwtIssuer(prefix="p", issuer=ES_ISS, jwks_file=str(file), algorithms=("ES256",)),)
    )
    assert verifier.verify_token(token(iss=ES_ISS, key=EC_KEY_1, alg="ES256")).subjects == ("p:alice",)
    # a kid the set does not have is still unknown
    failure(verifier, token(iss=ES_ISS, key=EC_KEY_1, alg="ES256", headers={"kid": "x"}))


def test_duplicate_issuer_is_a_config_error() -> None:
    one = JwtIssuer(prefix="a", issuer="idp.example", secret=SECRET)
    two = JwtIssuer(prefix="b", issuer="https://idp.example", secret=SECRET)
    with pytest.raises(ConfigError, match=r"^auth\.jwt\[1\]\.issuer: "):
        JwtVerifier((one, two))


# --- DSH claims -----------------------------------------------------------------------------------------


def _claim(action: Any = "publish", **resource: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "topic", "prefix": "/tt", "stream": "weather", "topic": "a/+"}
    return {"action": action, "resource": base | resource}


def test_claims_to_filters() -> None:
    claims = [
        _claim(),
        _claim("subscribe", topic="#"),
        _claim(topic="a/+"),  # duplicate
        _claim("subscribe", stream="water", topic="drip/drip/drip"),
    ]
    assert topic_filters_from_claims(claims) == (
        ("/tt/weather/a/+",),
        ("/tt/weather/#", "/tt/water/drip/drip/drip"),
    )


@pytest.mark.parametrize(
    "claim",
    [
        _claim("read"),
        _claim(type="stream"),
        _claim(stream="a/b"),
        _claim(stream="+"),
        _claim(stream=""),
        _claim(prefix="/#"),
        _claim(prefix=""),
        _claim(topic=""),
        _claim(topic="a/#/b"),
        _claim(topic="a+"),
        _claim(topic=5),
        _claim(topic="a\x00"),
        {"action": "publish"},
        {"action": "publish", "resource": "topic"},
        "publish",
        None,
    ],
)
def test_malformed_claims_grant_nothing(claim: Any) -> None:
    assert topic_filters_from_claims([claim, _claim("subscribe")]) == ((), ("/tt/weather/a/+",))


@pytest.mark.parametrize("claims", [None, {}, {"datastreams/v0/mqtt/token": {}}, "claims", 3])
def test_no_claims_list_means_no_filters(claims: Any) -> None:
    assert topic_filters_from_claims(claims) == ((), ())


# --- through the Authenticator --------------------------------------------------------------------------


def request(headers: dict[str, str], client: str = "127.0.0.1") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/api/2/things",
        "raw_path": b"/api/2/things",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 1234),
    }

    async def receive() -> dict[str, Any]:
        raise AssertionError

    return Request(scope, receive)


def _auth_settings(files: dict[str, Path]) -> AuthSettings:
    user = User("ditto", password="ditto", publish=("/tt/weather/#",), subscribe=("#",))
    return AuthSettings(users=(user,), jwt=_issuers(files))


async def test_bearer_header(key_files: dict[str, Path]) -> None:
    authenticator = Authenticator(_auth_settings(key_files))
    ctx = await authenticator.authenticate(
        request({"Authorization": f"Bearer {token(claims=CLAIMS)}", "x-correlation-id": "c-1"})
    )
    assert ctx.subjects == ("hs:alice",)
    assert ctx.publish == ("/tt/water/drip",)
    assert ctx.subscribe == ("/tt/weather/z/+/+/+/#", "/tt/water/#")
    assert ctx.correlation_id == "c-1"
    # the scheme is case-insensitive
    ctx = await authenticator.authenticate(request({"Authorization": f"bEaReR {token()}"}))
    assert ctx.subjects == ("hs:alice",)


async def test_raw_token_for_the_websocket(key_files: dict[str, Path]) -> None:
    authenticator = Authenticator(_auth_settings(key_files))
    ctx = await authenticator.authenticate_token(token(), client_host="10.0.0.1", correlation_id="ws")
    assert (ctx.subjects, ctx.correlation_id) == (("hs:alice",), "ws")
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate_token("nope")
    with pytest.raises(Unauthenticated):
        await Authenticator(AuthSettings()).authenticate_token(token())


async def test_built_in_users_carry_their_filters(key_files: dict[str, Path]) -> None:
    basic = "Basic " + base64.b64encode(b"ditto:ditto").decode()
    ctx = await Authenticator(_auth_settings(key_files)).authenticate(request({"Authorization": basic}))
    assert (ctx.subjects, ctx.publish, ctx.subscribe) == (("nginx:ditto",), ("/tt/weather/#",), ("#",))


def test_invalid_user_filter_is_a_config_error() -> None:
    settings = AuthSettings(users=(User("u", password="p", subscribe=("a", "a/#/b")),))
    with pytest.raises(ConfigError, match=r"^auth\.users\[0\]\.subscribe\[1\]: .*MQTT-4\.7\.1-2"):
        Authenticator(settings)


async def test_challenges(key_files: dict[str, Path]) -> None:
    authenticator = Authenticator(_auth_settings(key_files))
    with pytest.raises(Unauthenticated) as info:
        await authenticator.authenticate(request({"Authorization": "Bearer x.y.z"}))
    response = error_response(info.value)
    assert response.status == 401
    assert (b"www-authenticate", b'Bearer realm="edgetwin", error="invalid_token"') in response.headers
    assert json.loads(response.body)["error"] == "gateway:authentication.failed"
    with pytest.raises(Unauthenticated) as info:
        await authenticator.authenticate(request({}))
    assert (b"www-authenticate", b'Basic realm="edgetwin", Bearer realm="edgetwin"') in error_response(
        info.value
    ).headers
    # without issuers, only Basic is offered, and a bearer token is an unsupported scheme
    with pytest.raises(Unauthenticated) as info:
        await Authenticator(AuthSettings()).authenticate(request({"Authorization": f"Bearer {token()}"}))
    assert (b"www-authenticate", b'Basic realm="edgetwin"') in error_response(info.value).headers


async def test_foreign_issuer_through_the_authenticator(key_files: dict[str, Path]) -> None:
    with pytest.raises(Unauthenticated) as info:
        await Authenticator(_auth_settings(key_files)).authenticate(
            request({"Authorization": f"Bearer {token(iss='https://evil.example')}"})
        )
    assert info.value.error_code == "gateway:jwt.issuer.notsupported"
    assert info.value.headers["www-authenticate"].startswith("Bearer ")


def test_module_constants() -> None:
    assert auth_module.MAX_TOKEN_CHARS >= 4096
    assert auth_module.TOKEN_CACHE_SIZE > 0
