"""The ``edgetwin`` command: ``serve``, ``check-config``, ``hash-password``, ``--version``.

Errors reach the operator as one line on stderr, never a traceback: exit status 2 for a bad
configuration or command line, 1 for a failure at run time (store unusable, port in use).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from functools import partial
from typing import TYPE_CHECKING

import trio

from edgetwin import __version__
from edgetwin.config import load
from edgetwin.core.passwords import hash_password
from edgetwin.errors import ConfigError, EdgeTwinError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

logger = logging.getLogger("edgetwin")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgetwin",
        description="A digital-twin appliance for the edge: Ditto-compatible twins and an MQTT broker.",
    )
    parser.add_argument("--version", action="version", version=f"edgetwin {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser("serve", help="run the appliance (embedded defaults without --config)")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file", metavar="FILE")
    commands.add_parser(
        "hash-password", help="read a password (twice on a terminal) and print a password_hash for it"
    )
    return parser


def _fail(message: str, status: int) -> int:
    print(f"edgetwin: {message}", file=sys.stderr)  # noqa: T201 - the CLI's one line for the operator
    return status


def _serve(config: str | None) -> int:
    from edgetwin import app, logfmt  # the server's imports are only paid for when serving

    try:
        settings = load(config)
    except ConfigError as err:
        return _fail(err.message, EXIT_USAGE)
    logfmt.configure(settings.logging)
    for user in settings.auth.users:
        if user.password:
            logger.warning(
                "auth.users: user %s has a plain-text password; use password_hash (edgetwin hash-password)",
                user.name,
            )
    try:
        trio.run(partial(app.serve, settings))
    except (EdgeTwinError, BaseExceptionGroup) as err:
        # A service that fails to start raises inside the root nursery, so it may arrive in a group.
        first: BaseException = err
        while isinstance(first, BaseExceptionGroup) and len(first.exceptions) == 1:
            first = first.exceptions[0]
        if not isinstance(first, EdgeTwinError):
            raise
        return _fail(first.message, EXIT_FAILED)
    return EXIT_OK


def _check_config(file: str) -> int:
    from edgetwin.api.auth import Authenticator  # loads key files and checks topic filters, as serve does

    try:
        Authenticator(load(file, environ={}).auth)
    except ConfigError as err:
        return _fail(err.message, EXIT_USAGE)
    print(f"{file}: OK")  # noqa: T201
    return EXIT_OK


def _hash_password() -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            return _fail("the passwords differ", EXIT_USAGE)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        return _fail("the password is empty", EXIT_USAGE)
    print(hash_password(password))  # noqa: T201
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args.config)
        if args.command == "check-config":
            return _check_config(args.file)
        return _hash_password()
    except KeyboardInterrupt:
        return 130
