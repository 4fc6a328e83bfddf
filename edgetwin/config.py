"""The settings tree: one frozen, typed value, loaded once at the edge and passed down.

Sources, later ones winning: the embedded defaults below, the TOML file given with ``--config``, then
``EDGETWIN_<SECTION>__<KEY>`` environment variables (``EDGETWIN_HTTP__BIND=0.0.0.0:8080``; the value is
read as a TOML value when it parses as one, else as a string). Only :func:`load` reads files and the
environment; every other module receives the ``Settings`` it needs.

Validation is strict because a typo in an unattended box's config should stop it at start-up, not
silently fall back to a default: an unknown key, a wrong type or an out-of-range value raises
:class:`~edgetwin.errors.ConfigError` whose message starts with the key path, e.g.
``storage.map_size_mb: expected an integer, got "lots"``. The key names are a contract (DESIGN.md); new
keys are added here and to ``config.toml.example``, never renamed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

from edgetwin.errors import ConfigError

__all__ = [
    "AuthSettings",
    "HttpSettings",
    "JournalSettings",
    "JwtIssuer",
    "LiveSettings",
    "LoggingSettings",
    "MessagingSettings",
    "MqttSettings",
    "PreAuthenticatedSettings",
    "Settings",
    "SseSettings",
    "StorageSettings",
    "User",
    "load",
    "parse_bind",
    "settings_from_mapping",
]

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
JWT_ALGORITHMS: Final = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
ENV_PREFIX: Final = "EDGETWIN_"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """``[storage]``: the LMDB environment."""

    path: str = "./edgetwin-data"
    map_size_mb: int = 1024
    # The map grows by doubling when full, up to this; past it a write fails with 507 and nothing is lost.
    max_map_size_mb: int = 8192
    # Pending writes queued for the single writer; submitters wait (backpressure) when it is full.
    write_queue: int = 4096
    # The most writes committed together in one transaction (one fsync).
    max_batch: int = 512


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """``[http]``: the Hypercorn server for the Things, messaging and devops APIs."""

    bind: str = "127.0.0.1:8080"
    connection_setup_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 5.0
    # In-flight requests get this long to finish on shutdown; the process exits within a few seconds.
    shutdown_grace_s: float = 3.0
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # WebSocket pings are sent this often, so a dead peer (half-open socket) is noticed; 0 = no pings.
    websocket_ping_interval_s: float = 20.0
    # A send that makes no progress for this long means the peer stopped reading: the connection is closed.
    send_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """``[journal]``: the event journal's retention (SSE resume, connectors' store-and-forward)."""

    # The most events kept; older ones are pruned a few per write, never in one giant delete.
    max_events: int = 100_000
    # Events older than this are pruned (7 days).
    max_age_s: float = 604_800.0
    # The most megabytes of journaled events kept (whichever bound is reached first wins).
    max_mb: int = 64


@dataclass(frozen=True, slots=True)
class SseSettings:
    """``[sse]``: Server-Sent Event streams of thing changes."""

    # An SSE comment is sent after this long without an event, so proxies and clients see a live stream.
    heartbeat_s: float = 15.0
    # Events a stream may have pending; a stream that falls further behind is told why and closed.
    subscriber_buffer: int = 1024
    # A client that does not take an event (or heartbeat) within this long is disconnected.
    send_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """``[mqtt]``: the embedded broker."""

    bind: str = "127.0.0.1:1883"
    websocket_bind: str = ""
    # MQTT over TLS on its own port (e.g. "0.0.0.0:8883"); needs both files.
    tls_bind: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    allow_anonymous: bool = False
    anonymous_publish: tuple[str, ...] = ()
    anonymous_subscribe: tuple[str, ...] = ()
    # Limits; a client that hits one is told why (a v5 reason code) and, if need be, disconnected.
    max_connections: int = 1000
    max_packet_size: int = 1_048_576
    max_inflight: int = 20
    max_queued: int = 1000
    # A client's keep alive above this is lowered to it (v5 Server Keep Alive); 0 is allowed (no keep alive).
    max_keep_alive_s: int = 65535
    # $SYS/broker/... statistics are published this often; 0 = off.
    sys_interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """``[live]``: live commands and messages."""

    default_timeout_s: float = 10.0
    max_timeout_s: float = 60.0
    # Live requests waiting for an answer at once; more are 429 (each costs a sleeping task).
    max_pending: int = 10_000
    # Ditto's UpdateTwinWithLiveResponse: write a successful live retrieve's value into the twin.
    update_twin_with_live_response: bool = False


@dataclass(frozen=True, slots=True)
class User:
    """``[[auth.users]]``: a built-in user, policy subject ``nginx:<name>``."""

    name: str
    password: str = ""
    password_hash: str = ""
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JwtIssuer:
    """``[[auth.jwt]]``: an accepted token issuer, policy subject ``<prefix>:<sub>``."""

    prefix: str
    issuer: str
    secret: str = ""
    public_key_file: str = ""
    jwks_file: str = ""
    algorithms: tuple[str, ...] = ("HS256",)
    audience: str = ""
    leeway_s: float = 30.0


@dataclass(frozen=True, slots=True)
class PreAuthenticatedSettings:
    """``[auth.pre_authenticated]``: reverse proxies allowed to send ``x-ditto-pre-authenticated``."""

    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``[auth]``."""

    users: tuple[User, ...] = ()
    jwt: tuple[JwtIssuer, ...] = ()
    pre_authenticated: PreAuthenticatedSettings = field(default_factory=PreAuthenticatedSettings)


@dataclass(frozen=True, slots=True)
class MessagingSettings:
    """``[messaging]``: the DSH-compatible messaging API; topics are ``/tt/<stream>/...``."""

    streams: tuple[str, ...] = ()
    # The largest payload POST /data/v0/single (and a multi request's publication) accepts; larger is 413.
    max_payload_kb: int = 128


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """``[logging]``: structured lines on stderr (journald picks them up)."""

    level: str = "info"
    format: Literal["logfmt", "json"] = "logfmt"


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration."""

    storage: StorageSettings = field(default_factory=StorageSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    messaging: MessagingSettings = field(default_factory=MessagingSettings)
    journal: JournalSettings = field(default_factory=JournalSettings)
    sse: SseSettings = field(default_factory=SseSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


def load(path: str | os.PathLike[str] | None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the settings.

    Args:
        path: a TOML file, or ``None`` for the embedded defaults.
        environ: the environment to overlay (``EDGETWIN_*``); ``None`` means ``os.environ``.

    Raises:
        ConfigError: the file cannot be read or parsed, or a key is unknown, mistyped or out of range.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config file: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
    _overlay_environment(data, os.environ if environ is None else environ)
    return settings_from_mapping(data)


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    """Build and validate settings from an already parsed TOML mapping (tests use this directly)."""
    settings: Settings = _build(Settings, data, "")
    _check(settings)
    return settings


def parse_bind(value: str, *, key: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8080`` for IPv6); port 0 means "any free port".

    Raises:
        ConfigError: naming ``key`` when the value is not a usable address.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f'{key}: expected "host:port", got "{value}"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f'{key}: expected a port number after ":", got "{port_text}"') from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} is out of range (0-65535)")
    return host, port


def _overlay_environment(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts)}: set by {name}, but {part} is not a table")
            node = child
        node[parts[-1]] = value


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


_EXPECTED: Final = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _build(cls: type[Any], data: object, path: str) -> Any:
    """Turn a TOML table into the dataclass ``cls``, naming the key path in every error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or '<root>'}: expected a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"{where}: unknown key (allowed here: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        where = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required key is missing")
    return cls(**kwargs)


def _convert(tp: Any, value: object, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(typing.cast("type[Any]", tp), value, where)
    if origin is tuple:
        item_tp = get_args(tp)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array, got {_describe(value)}")
        return tuple(_convert(item_tp, item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            choices = ", ".join(f'"{a}"' for a in allowed)
            raise ConfigError(f"{where}: expected one of {choices}, got {_describe(value)}")
        return value
    if origin in (types.UnionType, typing.Union):  # pragma: no cover - no optional keys yet
        raise TypeError(where)
    if tp is float:
        # TOML writes whole numbers without a point; 10 is a fine number of seconds.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_EXPECTED[tp]}, got {_describe(value)}")


def _positive(value: float, where: str) -> None:
    if value <= 0:
        raise ConfigError(f"{where}: must be greater than 0, got {value:g}")


def _check(s: Settings) -> None:
    """Cross-field and range rules that types alone cannot say."""
    if not s.storage.path:
        raise ConfigError("storage.path: must not be empty")
    _positive(s.storage.map_size_mb, "storage.map_size_mb")
    if s.storage.max_map_size_mb < s.storage.map_size_mb:
        raise ConfigError(
            f"storage.max_map_size_mb: must be at least storage.map_size_mb ({s.storage.map_size_mb}),"
            f" got {s.storage.max_map_size_mb}"
        )
    _positive(s.storage.write_queue, "storage.write_queue")
    _positive(s.storage.max_batch, "storage.max_batch")

    parse_bind(s.http.bind, key="http.bind")
    _positive(s.http.connection_setup_timeout_s, "http.connection_setup_timeout_s")
    _positive(s.http.keep_alive_timeout_s, "http.keep_alive_timeout_s")
    _positive(s.http.send_timeout_s, "http.send_timeout_s")
    if s.http.shutdown_grace_s < 0:
        raise ConfigError(f"http.shutdown_grace_s: must not be negative, got {s.http.shutdown_grace_s:g}")
    if s.http.websocket_ping_interval_s < 0:
        raise ConfigError(
            f"http.websocket_ping_interval_s: must not be negative, got {s.http.websocket_ping_interval_s:g}"
        )
    if bool(s.http.tls_cert_file) != bool(s.http.tls_key_file):
        missing = "http.tls_key_file" if s.http.tls_cert_file else "http.tls_cert_file"
        raise ConfigError(f"{missing}: required when the other TLS file is set")
    for key in ("tls_cert_file", "tls_key_file"):
        file = getattr(s.http, key)
        if file and not Path(file).is_file():
            raise ConfigError(f'http.{key}: no such file "{file}"')

    parse_bind(s.mqtt.bind, key="mqtt.bind")
    if s.mqtt.websocket_bind:
        parse_bind(s.mqtt.websocket_bind, key="mqtt.websocket_bind")
    if s.mqtt.tls_bind:
        parse_bind(s.mqtt.tls_bind, key="mqtt.tls_bind")
        for key in ("tls_cert_file", "tls_key_file"):
            file = getattr(s.mqtt, key)
            if not file:
                raise ConfigError(f"mqtt.{key}: required when mqtt.tls_bind is set")
            if not Path(file).is_file():
                raise ConfigError(f'mqtt.{key}: no such file "{file}"')
    _positive(s.mqtt.max_connections, "mqtt.max_connections")
    if not 64 <= s.mqtt.max_packet_size <= 268_435_455:
        raise ConfigError(
            f"mqtt.max_packet_size: must be 64 to 268435455 bytes, got {s.mqtt.max_packet_size}"
        )
    if not 1 <= s.mqtt.max_inflight <= 65535:
        raise ConfigError(f"mqtt.max_inflight: must be 1 to 65535, got {s.mqtt.max_inflight}")
    _positive(s.mqtt.max_queued, "mqtt.max_queued")
    if not 0 <= s.mqtt.max_keep_alive_s <= 65535:
        raise ConfigError(f"mqtt.max_keep_alive_s: must be 0 to 65535, got {s.mqtt.max_keep_alive_s}")
    if s.mqtt.sys_interval_s < 0:
        raise ConfigError(f"mqtt.sys_interval_s: must not be negative, got {s.mqtt.sys_interval_s:g}")

    _positive(s.live.default_timeout_s, "live.default_timeout_s")
    _positive(s.live.max_timeout_s, "live.max_timeout_s")
    if s.live.default_timeout_s > s.live.max_timeout_s:
        raise ConfigError(
            f"live.default_timeout_s: must not exceed live.max_timeout_s ({s.live.max_timeout_s:g}),"
            f" got {s.live.default_timeout_s:g}"
        )
    _positive(s.live.max_pending, "live.max_pending")

    seen: set[str] = set()
    for i, user in enumerate(s.auth.users):
        where = f"auth.users[{i}]"
        if not user.name or ":" in user.name:
            raise ConfigError(f'{where}.name: must be non-empty and contain no ":", got "{user.name}"')
        if user.name in seen:
            raise ConfigError(f'{where}.name: duplicate user "{user.name}"')
        seen.add(user.name)
        if bool(user.password) == bool(user.password_hash):
            raise ConfigError(f"{where}: set exactly one of password or password_hash")
        if user.password_hash and not user.password_hash.startswith("scrypt$"):
            raise ConfigError(f"{where}.password_hash: not a hash made by `edgetwin hash-password`")

    for i, jwt in enumerate(s.auth.jwt):
        where = f"auth.jwt[{i}]"
        if not jwt.prefix or ":" in jwt.prefix:
            raise ConfigError(f'{where}.prefix: must be non-empty and contain no ":", got "{jwt.prefix}"')
        if not jwt.issuer:
            raise ConfigError(f"{where}.issuer: must not be empty")
        keys = [k for k in ("secret", "public_key_file", "jwks_file") if getattr(jwt, k)]
        if len(keys) != 1:
            raise ConfigError(f"{where}: set exactly one of secret, public_key_file or jwks_file")
        if not jwt.algorithms:
            raise ConfigError(f"{where}.algorithms: must list at least one algorithm")
        for j, alg in enumerate(jwt.algorithms):
            if alg not in JWT_ALGORITHMS:
                raise ConfigError(
                    f'{where}.algorithms[{j}]: "{alg}" is not allowed (one of {", ".join(JWT_ALGORITHMS)})'
                )
        symmetric = all(a.startswith("HS") for a in jwt.algorithms)
        if jwt.secret and not symmetric:
            raise ConfigError(f"{where}.algorithms: a secret only verifies HS256/HS384/HS512")
        if not jwt.secret and any(a.startswith("HS") for a in jwt.algorithms):
            raise ConfigError(f"{where}.algorithms: HS* algorithms need a secret")
        for key in ("public_key_file", "jwks_file"):
            file = getattr(jwt, key)
            if file and not Path(file).is_file():
                raise ConfigError(f'{where}.{key}: no such file "{file}"')
        if jwt.leeway_s < 0:
            raise ConfigError(f"{where}.leeway_s: must not be negative, got {jwt.leeway_s:g}")

    for i, proxy in enumerate(s.auth.pre_authenticated.trusted_proxies):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f'auth.pre_authenticated.trusted_proxies[{i}]: not an IP address or network: "{proxy}"'
            ) from None

    for i, stream in enumerate(s.messaging.streams):
        if not stream or any(c in stream for c in "/+#"):
            raise ConfigError(f'messaging.streams[{i}]: not a valid stream name: "{stream}"')
    _positive(s.messaging.max_payload_kb, "messaging.max_payload_kb")

    _positive(s.journal.max_events, "journal.max_events")
    _positive(s.journal.max_age_s, "journal.max_age_s")
    _positive(s.journal.max_mb, "journal.max_mb")
    _positive(s.sse.heartbeat_s, "sse.heartbeat_s")
    _positive(s.sse.subscriber_buffer, "sse.subscriber_buffer")
    _positive(s.sse.send_timeout_s, "sse.send_timeout_s")

    if s.logging.level not in LOG_LEVELS:
        raise ConfigError(
            f"logging.level: expected one of {', '.join(LOG_LEVELS)}, got {_describe(s.logging.level)}"
        )


def hypercorn_config(http: HttpSettings) -> Any:
    """The ``hypercorn.config.Config`` for ``[http]`` (the only translation into Hypercorn's settings)."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [http.bind]
    config.keep_alive_timeout = http.keep_alive_timeout_s
    config.graceful_timeout = http.shutdown_grace_s
    config.accesslog = None
    config.errorlog = None  # our own logging carries server errors
    # Hypercorn's own limits on request heads; the set-up deadline is enforced in api.server.
    config.h11_max_incomplete_size = 16 * 1024
    # Pings on every WebSocket: a peer that vanished without a FIN is noticed when the ping cannot be sent.
    config.websocket_ping_interval = http.websocket_ping_interval_s or None
    if http.tls_cert_file:
        config.certfile = http.tls_cert_file
        config.keyfile = http.tls_key_file
    return config


def quart_config() -> dict[str, Any]:
    """Quart's settings (the only translation into Quart's config)."""
    return {
        "JSON_SORT_KEYS": False,
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        "BODY_TIMEOUT": 60,
        "RESPONSE_TIMEOUT": 60,
        "BACKGROUND_TASK_SHUTDOWN_TIMEOUT": 3,
    }
