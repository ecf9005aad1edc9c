"""Keyset pagination over a table's insertion-ordered surrogate key (`pk`).

Pages are stable under concurrent inserts: a cursor names a row position, not an offset, so rows inserted
while a client pages appear at the end and never shift or repeat the rows it has seen. Turning positions
into Knock's opaque cursor strings happens at the API edge (`clarion.api.pagination`). A short list kept in
one row (a message's events) is paged the same way by its items' places (`page_of_list`), which only grow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class PageRequest:
    page_size: int = 50
    after: int | None = None
    before: int | None = None


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    """The page's rows, or items of a list (`page_of_list`)."""
    after: int | None
    before: int | None


async def fetch_page(
    connection: AsyncConnection,
    query: sa.Select[Any],
    key: sa.ColumnElement[int],
    request: PageRequest,
    *,
    newest_first: bool = False,
) -> Page:
    """Run `query` (already filtered to its environment) for one page ordered by `key`: oldest first, or
    newest first where Knock lists that way. `after` always moves on in the list's own order."""
    forward, backward = (key.desc(), key.asc()) if newest_first else (key.asc(), key.desc())

    def beyond(cursor: int) -> sa.ColumnElement[bool]:
        return key < cursor if newest_first else key > cursor

    def behind(cursor: int) -> sa.ColumnElement[bool]:
        return key > cursor if newest_first else key < cursor

    limit = request.page_size + 1
    if request.before is not None:
        result = await connection.execute(query.where(behind(request.before)).order_by(backward).limit(limit))
        rows = list(result)
        has_more = len(rows) > request.page_size
        rows = rows[: request.page_size][::-1]
        if not rows:
            return Page(rows=[], after=None, before=None)
        return Page(rows=rows, after=_key(rows[-1]), before=_key(rows[0]) if has_more else None)
    if request.after is not None:
        query = query.where(beyond(request.after))
    result = await connection.execute(query.order_by(forward).limit(limit))
    rows = list(result)
    has_more = len(rows) > request.page_size
    rows = rows[: request.page_size]
    if not rows:
        return Page(rows=[], after=None, before=None)
    return Page(
        rows=rows,
        after=_key(rows[-1]) if has_more else None,
        before=_key(rows[0]) if request.after is not None else None,
    )


def _key(row: sa.Row[Any]) -> int:
    return int(row._mapping["pk"])


def page_of_list(items: Sequence[Any], request: PageRequest, *, newest_first: bool = False) -> Page:
    """One page of `items` (a short list kept in one row, oldest first), paged as `fetch_page` pages a
    table: item `i` stands where a row with key `i + 1` would."""
    keyed = list(enumerate(items, start=1))
    if newest_first:
        keyed.reverse()

    def beyond(key: int, cursor: int) -> bool:
        return key < cursor if newest_first else key > cursor

    size = request.page_size
    if request.before is not None:
        behind = [pair for pair in keyed if beyond(request.before, pair[0])]
        taken = behind[-size:] if size else []
        if not taken:
            return Page(rows=[], after=None, before=None)
        has_more = len(behind) > size
        return Page([item for _, item in taken], after=taken[-1][0], before=taken[0][0] if has_more else None)
    after = request.after
    rest = [pair for pair in keyed if after is None or beyond(pair[0], after)]
    taken = rest[:size]
    if not taken:
        return Page(rows=[], after=None, before=None)
    return Page(
        [item for _, item in taken],
        after=taken[-1][0] if len(rest) > size else None,
        before=taken[0][0] if after is not None else None,
    )
