"""KSUIDs, the ids Knock gives messages, activities and run events: 27 base-62 characters of a 4-byte
timestamp (seconds since 2014-05-13) and 16 random bytes, so that they sort by creation second."""

from __future__ import annotations

import secrets
import time

_EPOCH = 1_400_000_000
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_ksuid() -> str:
    value = int.from_bytes((int(time.time()) - _EPOCH).to_bytes(4, "big") + secrets.token_bytes(16), "big")
    digits = []
    for _ in range(27):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))
