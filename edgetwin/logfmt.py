"""Structured log lines on stderr, for journald: logfmt (``key=value``) or one JSON object per line."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Final

import orjson

if TYPE_CHECKING:
    from edgetwin.config import LoggingSettings

__all__ = ["LogfmtFormatter", "configure"]

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' ="\\\n\t') and value.isprintable():
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class LogfmtFormatter(logging.Formatter):
    """``time=... level=info logger=edgetwin.app msg="..."`` with ``error=`` for exceptions."""

    def format(self, record: logging.LogRecord) -> str:
        fields = [
            f"time={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_quote(record.getMessage())}",
        ]
        if record.exc_info:
            fields.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure(settings: LoggingSettings) -> None:
    """Send every log record at ``settings.level`` or above to stderr in ``settings.format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[settings.level])
    # Libraries are quiet unless we debug.
    for name in ("hypercorn", "quart", "trio-websocket"):
        logging.getLogger(name).setLevel(max(logging.WARNING, _LEVELS[settings.level]))
