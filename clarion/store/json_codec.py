"""JSON to and from the store: fast with orjson, exact for every document JSON allows.

orjson refuses integers beyond 64 bits when encoding and silently turns them into floats when decoding;
JSON (and Knock) keep them. Documents that may hold such numbers (a run of 16 or more digits) go through
the standard `json` module instead, so values round-trip exactly at the cost of a little speed.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_NUMBER = re.compile(r"\d{16}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{16}")


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    long_number = _LONG_NUMBER.search(text) if isinstance(text, str) else _LONG_NUMBER_BYTES.search(text)
    if long_number:
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # Numbers beyond a double's range, which the standard module reads as infinity instead of failing.
        return json.loads(text)
