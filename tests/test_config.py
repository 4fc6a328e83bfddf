"""Configuration: defaults, the example file, and every refusal naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetwin import cli
from edgetwin.config import Settings, load, settings_from_mapping
from edgetwin.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_embedded_defaults_match_design() -> None:
    s = load(None, environ={})
    assert s == Settings()
    assert s.storage.path == "./edgetwin-data"
    assert s.http.bind == "127.0.0.1:8080"
    assert s.http.connection_setup_timeout_s == 10
    assert s.mqtt.bind == "127.0.0.1:1883"
    assert s.mqtt.allow_anonymous is False
    assert s.live.default_timeout_s == 10
    assert s.live.max_timeout_s == 60


def test_example_config_is_valid_and_documents_every_key() -> None:
    example = ROOT / "config.toml.example"
    s = load(example, environ={})
    assert s.auth.users[0].name == "ditto"
    text = example.read_text()
    for section, fields in {
        "storage": ["path", "map_size_mb", "max_map_size_mb", "write_queue", "max_batch"],
        "http": [
            "bind",
            "connection_setup_timeout_s",
            "keep_alive_timeout_s",
            "shutdown_grace_s",
            "tls_cert_file",
            "tls_key_file",
            "websocket_ping_interval_s",
            "send_timeout_s",
        ],
        "mqtt": ["bind", "websocket_bind", "allow_anonymous", "anonymous_publish", "anonymous_subscribe"],
        "live": ["default_timeout_s", "max_timeout_s"],
        "messaging": ["streams"],
        "journal": ["max_events", "max_age_s"],
        "sse": ["heartbeat_s", "subscriber_buffer", "send_timeout_s"],
        "logging": ["level", "format"],
    }.items():
        assert f"[{section}]" in text
        for name in fields:
            assert f"{name} =" in text, f"{section}.{name} undocumented"
    for name in [
        "password_hash",
        "publish",
        "subscribe",
        "prefix",
        "issuer",
        "public_key_file",
        "jwks_file",
        "algorithms",
        "audience",
        "leeway_s",
        "trusted_proxies",
    ]:
        assert f"{name} =" in text, name


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"storage": {"map_size_mb": "lots"}}, 'storage.map_size_mb: expected an integer, got "lots"'),
        ({"storage": {"map_size_mb": 1.5}}, "storage.map_size_mb: expected an integer, got 1.5"),
        ({"storage": {"map_size_mb": True}}, "storage.map_size_mb: expected an integer, got true"),
        ({"storage": {"pathh": "x"}}, "storage.pathh: unknown key"),
        ({"nosuch": {}}, "nosuch: unknown key"),
        ({"storage": "x"}, 'storage: expected a table, got "x"'),
        ({"storage": {"map_size_mb": 0}}, "storage.map_size_mb: must be greater than 0"),
        (
            {"storage": {"map_size_mb": 64, "max_map_size_mb": 32}},
            "storage.max_map_size_mb: must be at least",
        ),
        ({"http": {"bind": "8080"}}, 'http.bind: expected "host:port", got "8080"'),
        ({"http": {"bind": "localhost:http"}}, "http.bind: expected a port number"),
        ({"http": {"bind": "localhost:70000"}}, "http.bind: port 70000 is out of range"),
        (
            {"http": {"connection_setup_timeout_s": "10"}},
            "http.connection_setup_timeout_s: expected a number",
        ),
        ({"http": {"connection_setup_timeout_s": -1}}, "http.connection_setup_timeout_s: must be greater"),
        ({"http": {"tls_cert_file": "/nonexistent.pem"}}, "http.tls_key_file: required"),
        ({"mqtt": {"allow_anonymous": "yes"}}, 'mqtt.allow_anonymous: expected a boolean, got "yes"'),
        ({"mqtt": {"anonymous_publish": "#"}}, 'mqtt.anonymous_publish: expected an array, got "#"'),
        ({"mqtt": {"anonymous_publish": [1]}}, "mqtt.anonymous_publish[0]: expected a string, got 1"),
        ({"live": {"default_timeout_s": 90}}, "live.default_timeout_s: must not exceed live.max_timeout_s"),
        ({"auth": {"users": [{"password": "x"}]}}, "auth.users[0].name: required key is missing"),
        ({"auth": {"users": [{"name": "a"}]}}, "auth.users[0]: set exactly one of password or password_hash"),
        (
            {"auth": {"users": [{"name": "a", "password_hash": "md5$x"}]}},
            "auth.users[0].password_hash: not a hash",
        ),
        (
            {"auth": {"users": [{"name": "a", "password": "x"}, {"name": "a", "password": "y"}]}},
            'auth.users[1].name: duplicate user "a"',
        ),
        ({"auth": {"users": {"name": "a"}}}, "auth.users: expected an array, got a table"),
        ({"auth": {"jwt": [{"prefix": "idp", "issuer": "i"}]}}, "auth.jwt[0]: set exactly one of secret"),
        (
            {"auth": {"jwt": [{"prefix": "idp", "issuer": "i", "secret": "s", "algorithms": ["none"]}]}},
            'auth.jwt[0].algorithms[0]: "none" is not allowed',
        ),
        (
            {"auth": {"jwt": [{"prefix": "idp", "issuer": "i", "secret": "s", "algorithms": ["RS256"]}]}},
            "auth.jwt[0].algorithms: a secret only verifies HS256",
        ),
        (
            {"auth": {"pre_authenticated": {"trusted_proxies": ["not-an-ip"]}}},
            'auth.pre_authenticated.trusted_proxies[0]: not an IP address or network: "not-an-ip"',
        ),
        ({"messaging": {"streams": ["a/b"]}}, 'messaging.streams[0]: not a valid stream name: "a/b"'),
        ({"journal": {"max_events": 0}}, "journal.max_events: must be greater than 0"),
        ({"journal": {"max_age_s": "1w"}}, 'journal.max_age_s: expected a number, got "1w"'),
        ({"sse": {"heartbeat_s": 0}}, "sse.heartbeat_s: must be greater than 0"),
        ({"sse": {"subscriber_buffer": 0}}, "sse.subscriber_buffer: must be greater than 0"),
        (
            {"logging": {"level": "loud"}},
            'logging.level: expected one of debug, info, warning, error, got "loud"',
        ),
        ({"logging": {"format": "xml"}}, 'logging.format: expected one of "logfmt", "json", got "xml"'),
    ],
)
def test_bad_values_are_refused_by_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data)
    assert info.value.message.startswith(message), info.value.message


def test_whole_numbers_are_accepted_for_seconds() -> None:
    s = settings_from_mapping({"http": {"connection_setup_timeout_s": 3}, "live": {"max_timeout_s": 30}})
    assert s.http.connection_setup_timeout_s == 3.0
    assert isinstance(s.http.connection_setup_timeout_s, float)


def test_environment_overlay_wins_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[http]\nbind = "127.0.0.1:9000"\n')
    s = load(
        cfg,
        environ={
            "EDGETWIN_HTTP__BIND": "0.0.0.0:9001",
            "EDGETWIN_MQTT__ALLOW_ANONYMOUS": "true",
            "OTHER": "x",
        },
    )
    assert s.http.bind == "0.0.0.0:9001"
    assert s.mqtt.allow_anonymous is True


def test_environment_overlay_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^storage\.map_size_mb: expected an integer"):
        load(None, environ={"EDGETWIN_STORAGE__MAP_SIZE_MB": "big"})


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage\npath=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad, environ={})


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(ROOT / "config.toml.example")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[storage]\nmap_size_mb = "lots"\n')
    assert cli.main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == 'edgetwin: storage.map_size_mb: expected an integer, got "lots"\n'
