"""The dependency rule between rooms (STYLE.md §2), and the pinned public names."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import edgetwin
from edgetwin import errors

PACKAGE = Path(edgetwin.__file__).parent
IO = {"trio", "lmdb", "quart", "quart_trio", "hypercorn", "httpx", "socket", "trio_websocket", "orjson"}
PURE = [
    "twin",
    "rql",
    "mqtt/codec",
    "mqtt/session.py",
    "mqtt/topics.py",
    "mqtt/trie.py",
    "core/commands.py",
    "core/events.py",
    "protocol",
]


def _modules(relative: str) -> list[Path]:
    path = PACKAGE / relative
    if path.suffix == ".py":
        return [path] if path.exists() else []
    return sorted(path.rglob("*.py")) if path.exists() else []


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_pure_rooms_do_no_io() -> None:
    checked = 0
    for room in PURE:
        for module in _modules(room):
            checked += 1
            assert not _top(_imports(module)) & IO, module
    assert checked > 0


def test_only_the_store_imports_lmdb() -> None:
    for module in PACKAGE.rglob("*.py"):
        if "lmdb" in _top(_imports(module)):
            assert module.parent.name == "store", module


def test_nothing_imports_app_and_adapters_never_touch_the_store() -> None:
    for module in PACKAGE.rglob("*.py"):
        imported = _imports(module)
        assert "edgetwin.app" not in imported, module
        room = module.relative_to(PACKAGE).parts[0]
        if room in ("api", "mqtt", "connectors"):
            assert not any(n.startswith("edgetwin.store") for n in imported), module


def test_rql_uses_the_standard_library_only() -> None:
    for module in _modules("rql"):
        for name in _imports(module):
            assert (
                name.startswith(("edgetwin.rql", "edgetwin.errors", "__future__"))
                or name.split(".")[0] in _stdlib()
            ), (module, name)


def _stdlib() -> set[str]:
    import sys

    return set(sys.stdlib_module_names)


def test_every_module_has_a_contract_docstring() -> None:
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="edgetwin."):
        path = PACKAGE.joinpath(*info.name.split(".")[1:])
        file = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
        assert ast.get_docstring(ast.parse(file.read_text())), info.name


def test_errors_public_names_are_pinned() -> None:
    assert sorted(errors.__all__) == [
        "ConfigError",
        "Conflict",
        "EdgeTwinError",
        "InvalidInput",
        "MethodNotAllowed",
        "NotFound",
        "NotModified",
        "PayloadTooLarge",
        "PolicyDenied",
        "PreconditionFailed",
        "RequestTimeout",
        "RqlSyntaxError",
        "StoreError",
        "StoreFull",
        "StoreVersionError",
        "Unauthenticated",
        "Unavailable",
        "UnsupportedMediaType",
    ]
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.EdgeTwinError)


def test_systemd_unit_is_a_hardened_notify_service() -> None:
    unit = (PACKAGE.parent / "systemd" / "edgetwin.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=edgetwin",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "DynamicUser=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "MemoryMax=",
    ):
        assert line in unit, line


def test_jwt_libraries_are_loaded_only_when_issuers_are_configured() -> None:
    """PyJWT and cryptography cost ~9 MB resident; an appliance without [[auth.jwt]] must not load them."""
    import subprocess
    import sys

    code = (
        "import sys; from edgetwin import app; from edgetwin.api.auth import Authenticator;"
        "from edgetwin.config import AuthSettings; Authenticator(AuthSettings());"
        "print('jwt' in sys.modules, 'cryptography' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
