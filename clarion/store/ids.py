"""The random ids of what the engine makes in numbers: KSUIDs, the ids Knock gives messages, activities and
run events (27 base-62 characters of a 4-byte timestamp, seconds since 2014-05-13, and 16 random bytes, so
that they sort by creation second), and UUIDs for triggers and runs. A run's events get theirs when read,
from the run and their place in it (`stable_ksuid`), which spares a fan-out three ids per run.

A trigger makes one and a fan-out several per recipient, so both are cheap: the random bytes come from the
operating system's generator a page at a time rather than a system call each (as `uuid.uuid4` and
`secrets` make), and a KSUID's base-62 digits come from GMP (`gmpy2.digits`, whose digits above 36 are
KSUID's alphabet), a seventh of the time Python's integer divisions took."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import datetime

import gmpy2

EPOCH = 1_400_000_000
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LENGTH = 27


def encode(value: int) -> str:
    """`value` (below 62**27) as 27 base-62 digits of `ALPHABET`, most significant first."""
    return str(gmpy2.digits(value, 62)).zfill(LENGTH)


class _RandomBytes:
    """Cryptographically random bytes, read from `os.urandom` 4 KiB at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def forget(self) -> None:
        """Drop what is left: a forked process must not hand out the bytes its parent does."""
        self._lock = threading.Lock()
        self._buffer, self._offset = b"", 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._buffer):
                self._buffer, self._offset = os.urandom(4096), 0
            taken = self._buffer[self._offset : self._offset + count]
            self._offset += count
            return taken


_random = _RandomBytes()
os.register_at_fork(after_in_child=_random.forget)


def new_ksuid() -> str:
    return encode((int(time.time()) - EPOCH) << 128 | int.from_bytes(_random.take(16), "big"))


def new_uuid() -> str:
    """A random (version 4) UUID, as text: formatted here, since `uuid.UUID` costs more."""
    raw = bytearray(_random.take(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def stable_ksuid(at: datetime, name: str) -> str:
    """The KSUID of something that stores no id of its own (a run's event): the same for the same moment
    and name every time, its random part the first 16 bytes of the name's BLAKE2b digest."""
    digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
    return encode((int(at.timestamp()) - EPOCH) << 128 | int.from_bytes(digest, "big"))
