"""Shared by the benchmark scripts: start an edgetwin process, read its RSS, run wrk."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY = re.compile(r"ready: http on (\S+), mqtt on (\S+)")


def start_edgetwin(extra_config: str = "") -> tuple[subprocess.Popen[str], str, float, Path]:
    """Start ``edgetwin serve`` on free ports; returns (process, http address, seconds to ready, data dir)."""
    data = Path(tempfile.mkdtemp(prefix="edgetwin-bench-"))
    cfg = data / "config.toml"
    cfg.write_text(
        f'[storage]\npath = "{data / "store"}"\n[http]\nbind = "127.0.0.1:0"\n[mqtt]\nbind = "127.0.0.1:0"\n'
        f'[logging]\nlevel = "info"\n{extra_config}'
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetwin", "serve", "--config", str(cfg)], stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if match := READY.search(line):
            return proc, match.group(1), time.monotonic() - started, data
    raise SystemExit(f"edgetwin did not start (exit {proc.wait()})")


def stop(proc: subprocess.Popen[str], data: Path | None = None) -> None:
    """SIGTERM and wait; remove the data directory."""
    proc.terminate()
    proc.wait(timeout=10)
    if proc.stderr:
        proc.stderr.close()
    if data is not None:
        shutil.rmtree(data, ignore_errors=True)


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wrk(
    url: str,
    *,
    connections: int = 32,
    threads: int = 2,
    seconds: int = 10,
    script: str | None = None,
    headers: tuple[str, ...] = (),
) -> float:
    """Requests per second that ``wrk`` measured (Debian package ``wrk``)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    args = ["wrk", f"-c{connections}", f"-t{threads}", f"-d{seconds}s"]
    if script:
        args += ["-s", script]
    for header in headers:
        args += ["-H", header]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match is None:
        raise RuntimeError(out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} non-2xx responses:\n{out}")
    return float(match.group(1))
