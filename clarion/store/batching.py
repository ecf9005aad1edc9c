"""How a write of many rows is cut into statements: how many rows one statement carries, the one order
rows are written in, and how items that repeat a key are spread over rounds.

Order: PostgreSQL locks the rows of a multi-row INSERT … ON CONFLICT in the order the VALUES name them, so
two transactions writing overlapping rows in opposite orders could each hold a row the other waits for, and
PostgreSQL would break that deadlock by failing one of them. Every multi-row write of the store therefore
names its rows sorted by key (`ordered_chunks`), in code-point order, the order Python sorts strings in; a
locking read that must match it sorts with `clarion.store.dialect.code_point_order`. Written in one order,
the later of two overlapping transactions simply waits for the earlier one. A DELETE meets its rows in the
order its plan reads them; sorting its key list keeps its chunks, at least, in the one order.

Rounds: one INSERT … ON CONFLICT DO UPDATE may touch a row only once. Items that repeat a key are split
into rounds, the k-th occurrence of every key in round k (`rounds`). Applied round after round, they give
exactly the outcome of applying the items one by one in their given order, since items with distinct keys
touch distinct rows, and each item's outcome can be read right after its own round.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

ROWS_PER_STATEMENT = 1000
"""Rows (or keys of an IN list) per statement. The widest table Clarion writes many rows of at once, `jobs`,
has 18 columns: 18,000 bound parameters, well under SQLite's default limit of 32,766 (since 3.32) and
PostgreSQL's 65,535, while keeping each statement short enough for SQLite, whose statements run inline
on the event loop (`clarion.store.sqlite_driver`)."""


def chunks(items: Sequence[T], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`, in the order given."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ordered_chunks(
    items: Iterable[T], key: Callable[[T], tuple[str, ...]], size: int = ROWS_PER_STATEMENT
) -> Iterator[Sequence[T]]:
    """`items` sorted by `key` (the canonical write order) in slices of at most `size`: one per statement."""
    return chunks(sorted(items, key=key), size)


def rounds(keys: Sequence[Hashable]) -> list[list[int]]:
    """The positions of `keys` in rounds: round k holds the k-th occurrence of each key, in the order given.
    Without repeats there is one round holding every position."""
    grouped: list[list[int]] = []
    seen: dict[Hashable, int] = {}
    for position, key in enumerate(keys):
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        if occurrence == len(grouped):
            grouped.append([])
        grouped[occurrence].append(position)
    return grouped
