"""scrypt password hashes for built-in users (``password_hash`` in ``[[auth.users]]``).

Format: ``scrypt$<log2 n>$<r>$<p>$<salt, base64>$<key, base64>``, made by ``edgetwin hash-password``.
Pure (hashlib only); verification compares in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Final

__all__ = ["hash_password", "verify_password"]

# 2**14 x 8 x 128 bytes = 16 MiB per verification: affordable on a Raspberry Pi, costly to brute-force.
LOG2_N: Final = 14
R: Final = 8
P: Final = 1
KEY_BYTES: Final = 32
_MAXMEM: Final = 64 * 1024 * 1024


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A new scrypt hash of ``password`` with a random (or given) 16-byte salt."""
    salt = os.urandom(16) if salt is None else salt
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**LOG2_N, r=R, p=P, maxmem=_MAXMEM, dklen=KEY_BYTES)
    b64 = base64.b64encode
    return f"scrypt${LOG2_N}${R}${P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """``True`` when ``password`` matches ``encoded``; ``False`` also for a malformed hash."""
    try:
        scheme, log2_n, r, p, salt_b64, key_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(key_b64, validate=True)
        key = hashlib.scrypt(
            password.encode(),
            salt=salt,
            n=2 ** int(log2_n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key, expected)
