"""The batching shared by group commits and coalesced reads: every submission is done exactly once, in
batches that follow the load, one batch at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from clarion.store.pending_batches import PendingBatches


class Doubling(PendingBatches[int, int]):
    """Doubles numbers, a batch at a time; each batch waits for `release` before it finishes."""

    def __init__(self) -> None:
        super().__init__(max_batch=100)
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        self.release.set()

    async def flush(self, batch: list[tuple[int, asyncio.Future[int]]]) -> None:
        self.batches.append([item for item, _ in batch])
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        for item, future in batch:
            future.set_result(item * 2)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_submissions_one_after_another_are_each_done() -> None:
    # Each submission arrives just as the flusher of the one before finishes.
    batches = Doubling()
    for n in range(50):
        assert await asyncio.wait_for(batches.submit(n), timeout=1) == n * 2
    assert batches.batches == [[n] for n in range(50)]


async def test_submissions_made_during_a_batch_form_the_next_one() -> None:
    batches = Doubling()
    batches.release.clear()
    first = asyncio.create_task(batches.submit(1))
    await until(lambda: batches.batches == [[1]])
    later = [asyncio.create_task(batches.submit(n)) for n in (2, 3, 4)]
    await until(lambda: len(batches._pending) == 3)
    batches.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, *later), timeout=1) == [2, 4, 6, 8]
    assert batches.batches == [[1], [2, 3, 4]]
    assert batches.most_in_flight == 1
