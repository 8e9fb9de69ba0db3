"""Backup codes: readable `xxxxx-xxxxx`, 50 bits each, stored salted and keyed-hashed.

The alphabet is Crockford's base32 (no i, l, o, u); on input the look-alikes are read as the
digits they resemble, and case, spaces and hyphens do not matter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
LENGTH = 10  # 32**10 = 2**50
COUNT = 10
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1", "-": None, " ": None})


def generate() -> list[str]:
    codes = []
    for _ in range(COUNT):
        raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalise(code: str) -> str | None:
    cleaned = code.lower().translate(_LOOKALIKES)
    if len(cleaned) == LENGTH and all(c in ALPHABET for c in cleaned):
        return cleaned
    return None


def digest(pepper: bytes, salt: str, normalised: str) -> str:
    return hmac.new(pepper, f"{salt}:{normalised}".encode(), hashlib.sha256).hexdigest()


def new_salt() -> str:
    return secrets.token_hex(16)
