from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from clarion.errors import NotFoundError
from clarion.runtime import Runtime
from clarion.store.db import Database
from clarion.store.group_commit import GroupCommitter
from clarion.store.membership_rules import NO_RULES
from clarion.store.recipients import InlineRecipientData, RecipientRecord
from clarion.store.users import IdentifyItem, identify_batch
from tests.conftest import EnvFixture


class RecordingIdentifies:
    """The identify batch handler, remembering each batch and failing, with nothing written, any batch
    that holds a `boom`."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.batches: list[list[str]] = []

    async def __call__(self, items: Sequence[IdentifyItem]) -> list[RecipientRecord]:
        self.batches.append([user_id for _, user_id, _, _ in items])
        if any("boom" in properties for _, _, properties, _ in items):
            raise ValueError("boom")
        return await identify_batch(self.database, NO_RULES, items)


def identify(
    committer: GroupCommitter[IdentifyItem, RecipientRecord], env: EnvFixture, user_id: str, **properties: Any
) -> asyncio.Task[RecipientRecord]:
    return asyncio.create_task(committer.submit((env.id, user_id, properties, InlineRecipientData())))


async def test_a_burst_waits_one_loop_turn_for_the_requests_read_alongside_it(runtime: Runtime) -> None:
    batches: list[list[int]] = []

    async def handler(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    committer = GroupCommitter(handler)
    first = asyncio.create_task(committer.submit(1))
    await asyncio.sleep(0)  # the first submission is in; the next ones arrive a turn later
    later = [asyncio.create_task(committer.submit(item)) for item in (2, 3)]
    assert await asyncio.gather(first, *later) == [10, 20, 30]
    assert batches == [[1, 2, 3]]


async def test_a_committer_told_not_to_gather_writes_the_first_submission_at_once(runtime: Runtime) -> None:
    batches: list[list[int]] = []

    async def handler(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    committer = GroupCommitter(handler, gathers_one_turn=False)
    first = asyncio.create_task(committer.submit(1))
    await asyncio.sleep(0)
    later = [asyncio.create_task(committer.submit(item)) for item in (2, 3)]
    assert await asyncio.gather(first, *later) == [10, 20, 30]
    assert batches == [[1], [2, 3]]


async def test_submissions_during_a_write_form_the_next_batch(runtime: Runtime) -> None:
    batches: list[list[int]] = []
    writing = asyncio.Event()
    release = asyncio.Event()

    async def handler(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        writing.set()
        await release.wait()
        return [item * 10 for item in items]

    committer = GroupCommitter(handler)
    first = asyncio.create_task(committer.submit(1))
    await writing.wait()
    later = [asyncio.create_task(committer.submit(item)) for item in (2, 3, 4)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert batches == [[1], [2, 3, 4]]


async def test_a_failing_item_fails_alone_and_the_others_land(runtime: Runtime, env: EnvFixture) -> None:
    handler = RecordingIdentifies(runtime.database)
    committer = GroupCommitter(handler)
    ok, bad, other = (
        identify(committer, env, "ok", n=1),
        identify(committer, env, "bad", boom=True),
        identify(committer, env, "other", n=2),
    )
    assert (await ok).properties == {"n": 1}
    with pytest.raises(ValueError, match="boom"):
        await bad
    assert (await other).properties == {"n": 2}
    assert handler.batches == [["ok", "bad", "other"], ["ok"], ["bad"], ["other"]]
    assert (await runtime.users.get(env.id, "ok")).properties == {"n": 1}
    assert (await runtime.users.get(env.id, "other")).properties == {"n": 2}
    with pytest.raises(NotFoundError):
        await runtime.users.get(env.id, "bad")


async def test_a_batch_has_the_outcome_of_its_items_one_by_one(runtime: Runtime, env: EnvFixture) -> None:
    handler = RecordingIdentifies(runtime.database)
    committer = GroupCommitter(handler)
    await identify(committer, env, "m", x={"b": 2})
    # Serially, {"x": 5} then {"x": {"a": 1}} leaves {"a": 1}; merging the two first would keep "b".
    replaced, merged, added = (
        identify(committer, env, "m", x=5),
        identify(committer, env, "m", x={"a": 1}),
        identify(committer, env, "m", y=1),
    )
    assert (await replaced).properties == {"x": 5}
    assert (await merged).properties == {"x": {"a": 1}}
    assert (await added).properties == {"x": {"a": 1}, "y": 1}
    assert handler.batches == [["m"], ["m", "m", "m"]]
    assert (await runtime.users.get(env.id, "m")).properties == {"x": {"a": 1}, "y": 1}


async def test_a_batch_keeps_environments_apart(
    runtime: Runtime, env: EnvFixture, other_env: EnvFixture
) -> None:
    handler = RecordingIdentifies(runtime.database)
    committer = GroupCommitter(handler)
    mine, theirs, mine_again = (
        identify(committer, env, "u", side="env"),
        identify(committer, other_env, "u", side="other"),
        identify(committer, env, "u", n=1),
    )
    assert (await mine).properties == {"side": "env"}
    assert (await theirs).properties == {"side": "other"}
    assert (await mine_again).properties == {"side": "env", "n": 1}
    assert handler.batches == [["u", "u", "u"]]
    assert (await runtime.users.get(other_env.id, "u")).properties == {"side": "other"}
