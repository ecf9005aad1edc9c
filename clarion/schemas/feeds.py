"""The in-app feed on the wire: `FeedItem`s built from in-app messages, and the feed's response.

`rich` mode (the API's default) carries every activity and actor; `compact` mode (what Knock's browser
client asks for) drops `activities` and `total_activities`, keeps one actor and only the scalar values of
`data`. The entities an item shows (actors, the recipient of each activity) are serialised from records
loaded once per page. `exclude` removes fields by dotted path (`entries.archived_at`), at most three
levels deep, as Knock's `exclude` parameter does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from clarion.schemas.base import format_timestamp
from clarion.store.batch_activities import BatchActivity
from clarion.store.ids import stable_ksuid
from clarion.store.messages import FeedCounts, MessageRecord
from clarion.store.recipient_resolution import RecipientKey

Serialise = Callable[[RecipientKey], dict[str, Any] | None]
MAX_EXCLUDE_DEPTH = 3


def _stamp(value: Any) -> str | None:
    return None if value is None else format_timestamp(value)


def _key(reference: str | dict[str, str] | None) -> RecipientKey | None:
    return None if reference is None else RecipientKey.from_reference(reference)


def referenced_keys(records: Sequence[MessageRecord]) -> set[RecipientKey]:
    """Every recipient and actor the items of `records` show."""
    keys: set[RecipientKey] = set()
    for record in records:
        keys.add(record.recipient)
        keys.update(key for key in map(_key, record.actors) if key is not None)
        keys.update(key for key in (_key(a.get("actor")) for a in record.activities) if key is not None)
    return keys


def feed_item(record: MessageRecord, cursor: str, serialise: Serialise, *, compact: bool) -> dict[str, Any]:
    actors = [entity for entity in (serialise(k) for k in map(_key, record.actors) if k) if entity]
    item: dict[str, Any] = {
        "__typename": "FeedItem",
        "__cursor": cursor,
        "id": record.id,
        "actors": actors[:1] if compact else actors,
        "blocks": record.content.get("blocks", []),
        "data": {k: v for k, v in record.data.items() if not isinstance(v, dict | list)}
        if compact
        else record.data,
        "source": {
            "__typename": "NotificationSource",
            "key": record.source["key"],
            "version_id": record.source["version_id"],
            "categories": record.source.get("categories", []),
        },
        "tenant": record.tenant,
        "total_actors": record.total_actors if record.batch_id else len(actors),
        "seen_at": _stamp(record.seen_at),
        "read_at": _stamp(record.read_at),
        "interacted_at": _stamp(record.interacted_at),
        "link_clicked_at": _stamp(record.link_clicked_at),
        "clicked_at": _stamp(record.link_clicked_at),
        "archived_at": _stamp(record.archived_at),
        "inserted_at": format_timestamp(record.inserted_at),
        "updated_at": format_timestamp(record.updated_at),
    }
    if not compact:
        recipient = serialise(record.recipient)
        item["activities"] = activities(record, recipient, serialise)
        item["total_activities"] = record.total_activities
    return item


def activities(
    record: MessageRecord, recipient: dict[str, Any] | None, serialise: Serialise
) -> list[dict[str, Any]]:
    """Knock's `Activity` of each trigger behind a message, its actor and recipient serialised in full.
    An activity's id is derived from the message and its place there, as a message's events' are, unless
    it was stored with one (before activities were stored without)."""
    return [
        {
            "__typename": "Activity",
            "id": stored.get("id")
            or stable_ksuid(datetime.fromisoformat(stored["inserted_at"]), f"{record.id}:activity:{index}"),
            "actor": _actor(stored, serialise),
            "recipient": recipient,
            "data": stored.get("data"),
            "inserted_at": stored["inserted_at"],
            "updated_at": stored["inserted_at"],
        }
        for index, stored in enumerate(record.activities)
    ]


def batch_activity(
    activity: BatchActivity, recipient: dict[str, Any] | None, serialise: Serialise
) -> dict[str, Any]:
    """Knock's `Activity` of one run's trigger in a batch, its actor and recipient serialised in full."""
    inserted_at = format_timestamp(activity.inserted_at)
    return {
        "__typename": "Activity",
        "id": activity.id,
        "actor": None if activity.actor is None else serialise(activity.actor),
        "recipient": recipient,
        "data": activity.data,
        "inserted_at": inserted_at,
        "updated_at": inserted_at,
    }


def _actor(stored: Mapping[str, Any], serialise: Serialise) -> dict[str, Any] | None:
    actor = _key(stored.get("actor"))
    return None if actor is None else serialise(actor)


def _remove(value: Any, path: Sequence[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _remove(item, path)
    elif isinstance(value, dict) and path:
        if len(path) == 1:
            value.pop(path[0], None)
        elif path[0] in value:
            _remove(value[path[0]], path[1:])


def feed_response(
    entries: list[dict[str, Any]],
    counts: FeedCounts,
    page_info: Mapping[str, Any],
    exclude: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "entries": entries,
        "meta": {
            "__typename": "FeedMetadata",
            "total_count": counts.total,
            "unread_count": counts.unread,
            "unseen_count": counts.unseen,
        },
        "page_info": dict(page_info),
        "vars": {},
    }
    for path in exclude:
        _remove(response, path)
    return response
