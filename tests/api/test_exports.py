"""The public names of the bare-ASGI API modules are pinned (STYLE.md: httpx's test_exported_members)."""

from __future__ import annotations

import pytest

from edgetwin.api import auth, http, jwt_auth, things


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            http,
            [
                "ClientDisconnected",
                "Headers",
                "Receive",
                "Request",
                "Response",
                "Scope",
                "Send",
                "error_response",
                "json_response",
                "new_correlation_id",
                "send_response",
            ],
        ),
        (
            auth,
            [
                "PRE_AUTHENTICATED_HEADER",
                "USER_SUBJECT_PREFIX",
                "Authenticator",
                "FailureSlowdown",
                "TokenIdentity",
                "TokenVerifier",
                "topic_filters_from_claims",
            ],
        ),
        (jwt_auth, ["JwtVerifier"]),
        (things, ["MAX_THING_BYTES", "RequestAuthenticator", "ThingsApi", "ThingsService", "handles"]),
    ],
)
def test_public_names_are_pinned(module: object, names: list[str]) -> None:
    assert sorted(module.__all__) == sorted(names)  # type: ignore[attr-defined]
    for name in names:
        assert hasattr(module, name), name
