"""Bulk operations through the official Knock SDK: every bulk endpoint, polled until completed."""

from __future__ import annotations

from collections.abc import Callable

import knockapi
import pytest
from knockapi import Knock
from knockapi.types import BulkOperation

UNKNOWN_OPERATION_ID = "00000000-0000-4000-8000-000000000000"


def test_bulk_identify_reports_progress_and_writes_every_user(
    knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    queued = knock.users.bulk.identify(
        users=[{"id": f"u{i}", "name": f"User {i}", "plan": "pro"} for i in range(25)]  # type: ignore[typeddict-unknown-key]
    )
    assert queued.api_typename == "BulkOperation"
    assert queued.status in ("queued", "processing", "completed")
    assert queued.estimated_total_rows == 25
    assert queued.name

    done = run_bulk(queued)
    assert done.id == queued.id
    assert done.status == "completed"
    assert (done.processed_rows, done.success_count, done.error_count) == (25, 25, 0)
    assert done.error_items == []
    assert done.completed_at is not None
    assert done.failed_at is None
    assert done.inserted_at <= done.updated_at

    users = {u.id: u for u in knock.users.list()}
    assert sorted(users) == sorted(f"u{i}" for i in range(25))
    assert users["u7"].name == "User 7"
    assert users["u7"].model_extra == {"plan": "pro"}


def test_bulk_identify_deep_merges_like_identify(
    knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    knock.users.update("ann", name="Ann", extra_body={"plan": {"tier": "free", "seats": 2}})
    run_bulk(knock.users.bulk.identify(users=[{"id": "ann", "plan": {"tier": "pro"}}]))  # type: ignore[typeddict-unknown-key]
    ann = knock.users.get("ann")
    assert ann.name == "Ann"
    assert ann.model_extra == {"plan": {"tier": "pro", "seats": 2}}


def test_bulk_delete_users(knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]) -> None:
    for user_id in ("a", "b", "c"):
        knock.users.update(user_id, name=user_id)
    done = run_bulk(knock.users.bulk.delete(user_ids=["a", "c"]))
    assert done.status == "completed"
    assert done.estimated_total_rows == 2
    assert [u.id for u in knock.users.list()] == ["b"]


def test_get_returns_the_same_operation(
    knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    done = run_bulk(knock.users.bulk.identify(users=[{"id": "ann"}]))
    again = knock.bulk_operations.get(done.id)
    assert again == done


def test_unknown_operation_is_404(knock: Knock) -> None:
    with pytest.raises(knockapi.NotFoundError):
        knock.bulk_operations.get(UNKNOWN_OPERATION_ID)


def test_more_than_a_thousand_users_is_422(knock: Knock) -> None:
    with pytest.raises(knockapi.UnprocessableEntityError) as raised:
        knock.users.bulk.identify(users=[{"id": f"u{i}"} for i in range(1001)])
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "invalid_params"
    assert knock.users.list().entries == []


def test_operations_are_isolated_by_environment(
    knock: Knock, other_knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    done = run_bulk(knock.users.bulk.identify(users=[{"id": "ann"}]))
    with pytest.raises(knockapi.NotFoundError):
        other_knock.bulk_operations.get(done.id)
    assert other_knock.users.list().entries == []


def test_objects_bulk_set_and_delete(
    knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    queued = knock.objects.bulk.set(
        "projects",
        objects=[{"id": f"b{i}", "name": f"Bulk {i}", "rank": i} for i in range(3)],  # type: ignore[typeddict-unknown-key]
    )
    assert queued.estimated_total_rows == 3
    done = run_bulk(queued)
    assert done.status == "completed"
    assert (done.processed_rows, done.success_count, done.error_count) == (3, 3, 0)
    assert {o.id: o.properties for o in knock.objects.list("projects")} == {
        f"b{i}": {"name": f"Bulk {i}", "rank": i} for i in range(3)
    }

    deleted = run_bulk(knock.objects.bulk.delete("projects", object_ids=["b0", "b2"]))
    assert deleted.status == "completed"
    assert deleted.success_count == 2
    assert [o.id for o in knock.objects.list("projects")] == ["b1"]


def test_tenants_bulk_set_and_delete(
    knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    done = run_bulk(knock.tenants.bulk.set(tenants=["plain", {"id": "named", "name": "Named"}]))
    assert done.status == "completed"
    assert (done.estimated_total_rows, done.processed_rows, done.success_count) == (2, 2, 2)
    assert {t.id: t.name for t in knock.tenants.list()} == {"plain": None, "named": "Named"}

    deleted = run_bulk(knock.tenants.bulk.delete(tenant_ids=["plain"]))
    assert deleted.status == "completed"
    assert deleted.success_count == 1
    assert [t.id for t in knock.tenants.list()] == ["named"]


def test_users_bulk_set_preferences_overwrites_each_users_set(
    knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    for user_id in ("ann", "bob"):
        knock.users.update(user_id, name=user_id)
    knock.users.set_preferences("ann", "default", channel_types={"email": False})

    done = run_bulk(
        knock.users.bulk.set_preferences(
            user_ids=["ann", "bob"], preferences={"workflows": {"digest": False}}
        )
    )
    assert done.status == "completed"
    assert (done.estimated_total_rows, done.success_count) == (2, 2)
    for user_id in ("ann", "bob"):
        preference_set = knock.users.get_preferences(user_id, "default")
        assert preference_set.workflows == {"digest": False}
        assert preference_set.channel_types is None


def test_subscriptions_bulk_add_and_delete(
    knock: Knock, run_bulk: Callable[[BulkOperation], BulkOperation]
) -> None:
    knock.users.update("ann", name="Ann")
    knock.objects.set("projects", "p1", name="Apollo")
    knock.objects.set("projects", "p2", name="Gemini")
    done = run_bulk(
        knock.objects.bulk.add_subscriptions(
            "projects",
            subscriptions=[
                {"id": "p1", "recipients": ["ann", {"id": "bob"}], "properties": {"via": "bulk"}},
                {"id": "p2", "recipients": ["ann"]},
            ],
        )
    )
    assert done.status == "completed"
    assert done.error_count == 0
    p1 = {s.recipient.id: s.properties for s in knock.objects.list_subscriptions("projects", "p1")}
    assert p1 == {"ann": {"via": "bulk"}, "bob": {"via": "bulk"}}
    assert sorted(s.object.id for s in knock.users.list_subscriptions("ann")) == ["p1", "p2"]

    deleted = run_bulk(
        knock.objects.bulk.delete_subscriptions(
            "projects", subscriptions=[{"id": "p1", "recipients": ["ann"]}]
        )
    )
    assert deleted.status == "completed"
    assert [s.recipient.id for s in knock.objects.list_subscriptions("projects", "p1")] == ["bob"]
    assert [s.object.id for s in knock.users.list_subscriptions("ann")] == ["p2"]
