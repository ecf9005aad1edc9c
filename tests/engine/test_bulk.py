"""The pure parts of `clarion.engine.bulk`: the registry, how a chunk's refused rows are found, and the
parsing of stored rows. Running whole operations through the worker is tested with the routes
(`tests/api/routes/test_bulk_operations.py`)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from clarion.engine.bulk import (
    BULK_DISCARD_HOOKS,
    BULK_HANDLERS,
    BULK_OPERATION_JOB,
    BulkKind,
    BulkOperationJob,
    ChunkResult,
    bulk_operation_discarded,
    error_item,
)
from clarion.engine.bulk import _parse as parse_rows
from clarion.errors import NotFoundError
from clarion.runtime import Runtime
from clarion.schemas.users import InlineIdentifyUserRequest
from clarion.store.bulk_operations import BulkErrorItem
from clarion.store.errors import DataRefusedError

NO_RUNTIME = cast(Runtime, object())
"""The handlers below never look at the runtime."""


def test_every_bulk_kind_has_exactly_one_handler() -> None:
    assert set(BULK_HANDLERS) == set(BulkKind)


def test_the_bulk_job_reacts_to_being_discarded() -> None:
    assert set(BULK_DISCARD_HOOKS) == {BULK_OPERATION_JOB}
    assert BULK_DISCARD_HOOKS[BULK_OPERATION_JOB] is bulk_operation_discarded


def test_error_items_name_the_row_entity_and_its_collection() -> None:
    assert error_item("u1", {}) == BulkErrorItem("u1")
    assert error_item({"id": "p1", "name": "x"}, {"collection": "projects"}) == BulkErrorItem(
        "p1", "projects"
    )


def test_chunk_results_add_up() -> None:
    total = ChunkResult(2, [BulkErrorItem("a")]) + ChunkResult(3, [BulkErrorItem("b")])
    assert total == ChunkResult(5, [BulkErrorItem("a"), BulkErrorItem("b")])


def test_stored_rows_parse_with_integers_beyond_64_bits() -> None:
    big = 123456789012345678901234567890
    (user,) = parse_rows(InlineIdentifyUserRequest, [{"id": "u1", "n": big}])
    assert user.properties()["n"] == big


async def test_a_refused_chunk_is_retried_row_by_row() -> None:
    calls: list[list[str]] = []

    async def refuses_bad_rows(
        runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
    ) -> ChunkResult:
        calls.append(list(rows))
        if any(row.startswith("bad") for row in rows):
            raise DataRefusedError(f"refused {rows}")
        return ChunkResult(len(rows))

    job = BulkOperationJob(NO_RUNTIME, {})
    result = await job._process(refuses_bad_rows, "env", {"collection": "things"}, ["a", "bad", "b"])
    assert result == ChunkResult(2, [BulkErrorItem("bad", "things")])
    assert calls == [["a", "bad", "b"], ["a"], ["bad"], ["b"]]


async def test_clarion_errors_are_row_errors_and_other_errors_fail_the_chunk() -> None:
    async def missing(
        runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
    ) -> ChunkResult:
        raise NotFoundError("no such thing")

    async def unreachable(
        runtime: Runtime, environment_id: str, params: dict[str, Any], rows: list[Any]
    ) -> ChunkResult:
        raise ConnectionError("the store went away")

    job = BulkOperationJob(NO_RUNTIME, {})
    assert await job._process(missing, "env", {}, ["x", "y"]) == ChunkResult(
        0, [BulkErrorItem("x"), BulkErrorItem("y")]
    )
    with pytest.raises(ConnectionError):
        await job._process(unreachable, "env", {}, ["x", "y"])
