"""scrypt password hashes."""

from __future__ import annotations

from edgetwin.core.passwords import hash_password, verify_password


def test_round_trip_and_salt() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b  # random salt
    assert a.startswith("scrypt$14$8$1$")
    assert verify_password("pw", a)
    assert verify_password("pw", b)
    assert not verify_password("pW", a)


def test_malformed_hashes_never_verify() -> None:
    for bad in ("", "scrypt$", "md5$14$8$1$AA==$AA==", "scrypt$x$8$1$AA==$AA==", "scrypt$14$8$1$!!$AA=="):
        assert not verify_password("pw", bad)
