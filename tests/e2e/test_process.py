"""The installed command as an operator runs it: start, serve, SIGTERM, and one-line failures."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import lmdb
import pytest

from edgetwin.core.passwords import verify_password

pytestmark = pytest.mark.e2e

READY = re.compile(r"ready: http on (\S+), mqtt on (\S+)")


def write_config(tmp_path: Path, extra: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "edgetwin.toml"
    cfg.write_text(
        f'[storage]\npath = "{tmp_path / "data"}"\nmap_size_mb = 16\n'
        '[http]\nbind = "127.0.0.1:0"\n[mqtt]\nbind = "127.0.0.1:0"\n' + extra
    )
    return cfg


def start(cfg: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetwin", "serve", "--config", str(cfg)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if match := READY.search(line):
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    with proc:
        raise AssertionError(f"edgetwin did not become ready: {proc.stderr.read()}")


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetwin", *args], input=stdin, capture_output=True, text=True, timeout=30
    )


def test_serve_then_sigterm_exits_zero_promptly(tmp_path: Path) -> None:
    proc, http = start(write_config(tmp_path))
    with proc:
        r = httpx.get(f"http://{http}/health")
        assert r.status_code == 200
        assert r.json()["status"] == "UP"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - sent < 5
        assert proc.stderr is not None
        assert "edgetwin stopped" in proc.stderr.read()


def test_sigint_also_shuts_down_cleanly(tmp_path: Path) -> None:
    proc, _ = start(write_config(tmp_path))
    with proc:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    proc, http = start(write_config(tmp_path / "a"))
    with proc:
        cfg = write_config(tmp_path / "b")
        cfg.write_text(cfg.read_text().replace('bind = "127.0.0.1:0"\n[mqtt]', f'bind = "{http}"\n[mqtt]'))
        result = run("serve", "--config", str(cfg))
        assert result.returncode == 1
        assert f"edgetwin: http.bind: cannot listen on {http}" in result.stderr
        assert "Traceback" not in result.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def test_store_from_newer_version_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = lmdb.open(str(data), max_dbs=10)
    with env.begin(write=True, db=env.open_db(b"meta")) as txn:
        txn.put(b"schema_version", b"99")
    env.close()
    result = run("serve", "--config", str(write_config(tmp_path)))
    assert result.returncode == 1
    assert "schema version 99, written by a newer edgetwin" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unusable_store_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[storage]\npath = "{tmp_path / "file" / "data"}"\n[http]\nbind = "127.0.0.1:0"\n'
        '[mqtt]\nbind = "127.0.0.1:0"\n'
    )
    result = run("serve", "--config", str(cfg))
    assert result.returncode == 1
    assert result.stderr.startswith("edgetwin: storage.path: cannot create")
    assert "Traceback" not in result.stderr


def test_bad_config_is_refused_by_key_with_status_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[logging]\nlevel = "loud"\n')
    for args in (("serve", "--config", str(cfg)), ("check-config", str(cfg))):
        result = run(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("edgetwin: logging.level: expected one of")
        assert "Traceback" not in result.stderr


def test_version_help_and_hash_password() -> None:
    assert re.fullmatch(r"edgetwin \d+\.\d+\.\d+\n", run("--version").stdout)
    helped = run("--help").stdout
    for command in ("serve", "check-config", "hash-password"):
        assert command in helped
    result = run("hash-password", stdin="s3cret\n")
    assert result.returncode == 0
    hashed = result.stdout.strip()
    assert verify_password("s3cret", hashed)
    assert not verify_password("other", hashed)
    assert run("hash-password", stdin="\n").returncode == 2
    assert run("nosuchcommand").returncode == 2


def test_embedded_defaults_serve_in_the_working_directory(tmp_path: Path) -> None:
    """`edgetwin serve` with no config: store in ./edgetwin-data (ports via the environment overlay)."""
    env = dict(os.environ, EDGETWIN_HTTP__BIND="127.0.0.1:0", EDGETWIN_MQTT__BIND="127.0.0.1:0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetwin", "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    with proc:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert READY.search(line), line
        assert (tmp_path / "edgetwin-data" / "data.mdb").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
