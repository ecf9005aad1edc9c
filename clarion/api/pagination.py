"""Knock's cursor pagination on the wire: `after`, `before`, `page_size` in, `page_info` out.

Cursors are opaque strings wrapping a row position of `clarion.store.pagination`.
"""

from __future__ import annotations

import base64
import binascii
import re

from starlette.requests import Request

from clarion.errors import InvalidInputError
from clarion.schemas.base import PageInfo
from clarion.store.pagination import Page, PageRequest

DEFAULT_PAGE_SIZE = 50
MAX_POSITION = 2**62
"""Row positions are 64-bit integers in both stores; a cursor naming anything larger is not one of ours."""

_DIGITS = re.compile(r"[0-9]{1,19}")


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p:{position}".encode()).decode().rstrip("=")


def decode_cursor(field: str, cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, position = text.partition(":")
        if prefix != "p" or not _DIGITS.fullmatch(position) or int(position) > MAX_POSITION:
            raise ValueError(text)
        return int(position)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInputError.field(field, "is not a valid cursor") from None


def page_request(request: Request, *, max_page_size: int = 50) -> PageRequest:
    query = request.query_params
    raw_size = query.get("page_size")
    page_size = DEFAULT_PAGE_SIZE if max_page_size >= DEFAULT_PAGE_SIZE else max_page_size
    if raw_size is not None:
        if not _DIGITS.fullmatch(raw_size) or not 1 <= int(raw_size) <= max_page_size:
            raise InvalidInputError.field("page_size", f"must be an integer between 1 and {max_page_size}")
        page_size = int(raw_size)
    after = query.get("after")
    before = query.get("before")
    return PageRequest(
        page_size=page_size,
        after=decode_cursor("after", after) if after else None,
        before=decode_cursor("before", before) if before else None,
    )


def page_info(page: Page, request: PageRequest) -> PageInfo:
    return PageInfo(
        after=encode_cursor(page.after) if page.after is not None else None,
        before=encode_cursor(page.before) if page.before is not None else None,
        page_size=request.page_size,
    )
