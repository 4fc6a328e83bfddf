"""Shared fixtures: settings on free ports in a temp dir, and the real app running in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from edgetwin import app
from edgetwin.config import Settings, settings_from_mapping

SettingsFactory = Callable[..., Settings]


def make_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings with the store under ``tmp_path`` and every port 0, overridden per section."""
    data: dict[str, Any] = {
        "storage": {"path": str(tmp_path / "data"), "map_size_mb": 16},
        "http": {"bind": "127.0.0.1:0"},
        "mqtt": {"bind": "127.0.0.1:0"},
        "logging": {"level": "warning"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return settings_from_mapping(data)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


class RunningApp:
    """The real appliance, started with ``app.serve`` in the test's nursery."""

    def __init__(self, ports: app.Ports, stop: trio.Event, settings: Settings) -> None:
        self.ports = ports
        self.stop = stop
        self.settings = settings

    @property
    def base_url(self) -> str:
        return f"http://{self.ports.http[0]}"

    @property
    def http_address(self) -> tuple[str, int]:
        host, port = self.ports.http[0].rsplit(":", 1)
        return host, int(port)


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[RunningApp]:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: app.serve(
                settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        yield RunningApp(ports, stop, settings)
        stop.set()
