"""Repeated authentication failures are slowed down per client address, on trio's clock (``autojump_clock``):
the delays, the reset on success, the bounded table, and that one client's delay never holds up another.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import pytest
import trio

from edgetwin.api.auth import FIRST_DELAY_S, FREE_FAILURES, MAX_DELAY_S, Authenticator, FailureSlowdown
from edgetwin.api.http import Request
from edgetwin.config import AuthSettings, JwtIssuer, User
from edgetwin.errors import Unauthenticated

SECRET = "an HS256 secret of at least thirty-two bytes"
SETTINGS = AuthSettings(
    users=(User("ditto", password="ditto"),),
    jwt=(JwtIssuer(prefix="idp", issuer="https://idp.example", secret=SECRET),),
)


def request(headers: dict[str, str], client: str | None = "10.0.0.1") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/api/2/things",
        "raw_path": b"/api/2/things",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (client, 1234) if client else None,
    }

    async def receive() -> dict[str, Any]:
        raise AssertionError

    return Request(scope, receive)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BAD = basic("ditto", "wrong")
GOOD = basic("ditto", "ditto")

EXPECTED_DELAYS = [0.0] * FREE_FAILURES + [0.125, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_delays_double_up_to_the_cap_and_reset_on_success() -> None:
    slowdown = FailureSlowdown()
    assert [slowdown.failed("10.0.0.1") for _ in EXPECTED_DELAYS] == EXPECTED_DELAYS
    assert FIRST_DELAY_S == 0.125
    assert MAX_DELAY_S == 2.0
    assert slowdown.failed("10.0.0.2") == 0.0  # other addresses have their own count
    slowdown.succeeded("10.0.0.1")
    assert slowdown.failed("10.0.0.1") == 0.0
    assert len(slowdown) == 2


def test_many_failures_do_not_overflow() -> None:
    slowdown = FailureSlowdown()
    for _ in range(2000):
        delay = slowdown.failed("10.0.0.1")
    assert delay == MAX_DELAY_S


def test_table_is_a_bounded_lru() -> None:
    slowdown = FailureSlowdown(max_clients=3, free_failures=1)
    for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        slowdown.failed(host)
    slowdown.failed("10.0.0.1")  # most recently failed now
    slowdown.failed("10.0.0.4")  # evicts 10.0.0.2
    assert len(slowdown) == 3
    assert slowdown.failed("10.0.0.2") == 0.0  # forgotten: its count starts again
    assert slowdown.failed("10.0.0.1") > 0.0


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9"),  # one /64
        ("::ffff:10.0.0.1", "10.0.0.1"),  # an IPv4-mapped address is its IPv4 address
        ("fe80::1%eth0", "fe80::2"),
    ],
)
def test_addresses_that_count_together(first: str, second: str) -> None:
    slowdown = FailureSlowdown(free_failures=1)
    slowdown.failed(first)
    assert slowdown.failed(second) > 0.0


def test_addresses_that_count_apart() -> None:
    slowdown = FailureSlowdown(free_failures=1)
    slowdown.failed("2001:db8:1:2::1")
    assert slowdown.failed("2001:db8:1:3::1") == 0.0


async def _attempt(authenticator: Authenticator, headers: dict[str, str], client: str = "10.0.0.1") -> float:
    """Authenticate once; return how long the answer took on trio's clock."""
    start = trio.current_time()
    with contextlib.suppress(Unauthenticated):
        await authenticator.authenticate(request(headers, client))
    return trio.current_time() - start


async def test_401s_are_delayed_after_a_few_failures(autojump_clock: trio.testing.MockClock) -> None:
    authenticator = Authenticator(SETTINGS)
    took = [await _attempt(authenticator, BAD) for _ in EXPECTED_DELAYS]
    assert took == pytest.approx(EXPECTED_DELAYS)
    # a success is not delayed, and resets the count
    assert await _attempt(authenticator, GOOD) == 0.0
    assert await _attempt(authenticator, BAD) == 0.0


async def test_bearer_failures_count_too(autojump_clock: trio.testing.MockClock) -> None:
    authenticator = Authenticator(SETTINGS)
    took = [
        await _attempt(authenticator, {"Authorization": "Bearer not.a.token"})
        for _ in range(FREE_FAILURES + 2)
    ]
    assert took == pytest.approx([0.0] * FREE_FAILURES + [0.125, 0.25])
    with pytest.raises(Unauthenticated) as info:
        await authenticator.authenticate_token("nope", client_host="10.0.0.1")
    assert info.value.headers["www-authenticate"].startswith("Bearer ")
    assert trio.current_time() == pytest.approx(0.125 + 0.25 + 0.5)


async def test_requests_without_credentials_do_not_count(autojump_clock: trio.testing.MockClock) -> None:
    authenticator = Authenticator(SETTINGS)
    for headers in ({}, {"Authorization": "Digest x"}):
        took = [await _attempt(authenticator, headers) for _ in range(10)]
        assert took == [0.0] * 10
    assert await _attempt(authenticator, BAD) == 0.0


async def test_a_delayed_client_does_not_hold_up_others(autojump_clock: trio.testing.MockClock) -> None:
    authenticator = Authenticator(SETTINGS)
    for _ in range(10):
        await _attempt(authenticator, BAD, client="10.6.6.6")  # now every failure waits MAX_DELAY_S
    start = trio.current_time()
    finished: dict[str, float] = {}

    async def attacker() -> None:
        await _attempt(authenticator, BAD, client="10.6.6.6")
        finished["attacker"] = trio.current_time() - start

    async def others() -> None:
        await trio.testing.wait_all_tasks_blocked()  # the attacker is sleeping now
        assert await _attempt(authenticator, GOOD, client="10.0.0.2") == 0.0
        assert await _attempt(authenticator, BAD, client="10.0.0.3") == 0.0
        finished["others"] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attacker)
        nursery.start_soon(others)
    assert finished == {"others": 0.0, "attacker": MAX_DELAY_S}


async def test_cancelling_a_delayed_answer(autojump_clock: trio.testing.MockClock) -> None:
    authenticator = Authenticator(SETTINGS)
    for _ in range(10):
        await _attempt(authenticator, BAD)
    with trio.move_on_after(0.5) as scope:
        await authenticator.authenticate(request(BAD))
    assert scope.cancelled_caught  # the client went away: nothing is left waiting
