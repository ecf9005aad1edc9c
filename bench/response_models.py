"""What `ResponseModel.trusted` saves over Pydantic's public `model_construct`, in CPU time per response
model built from a store record and encoded, as the API builds them: a user (`GET /v1/users/{id}`) and a
message (each item of `GET /v1/messages`, 50 to a page).

Run from the repository root:

    .venv/bin/python -m bench.response_models [--rounds 20]

Each round times both ways, alternated, by the process's CPU clock (other processes on the machine do not
count); the best round of each is printed. `model_construct` is called the cheapest way it can be
(`fields` and `extra` passed as they are), so the difference printed is the least `trusted` saves.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from clarion.api.responses import encode_json
from clarion.channels import Channel, ChannelType, Provider
from clarion.schemas.base import ResponseModel
from clarion.schemas.messages import Message
from clarion.schemas.users import User
from clarion.store.messages import MessageRecord
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.recipients import RecipientRecord

NOW = datetime.now(UTC)
USER = RecipientRecord(
    collection="$users",
    id="bench-1",
    properties={"name": "Bench User", "email": "bench@example.com", "plan": {"tier": "pro", "n": 1}},
    inserted_at=NOW,
    updated_at=NOW,
)
MESSAGE = MessageRecord(
    pk=1,
    id="2Pm1xAdWk3bQJ9rZqJtQkq4EfLm",
    environment_id="env",
    channel_id="feed",
    recipient=RecipientKey("$users", "bench-1"),
    workflow_key="bench",
    run_id="run",
    step_ref="in_app_feed_1",
    batch_id=None,
    total_activities=1,
    total_actors=1,
    source={"key": "bench", "version_id": "v", "categories": [], "step_ref": "in_app_feed_1"},
    tenant=None,
    actors=[],
    activities=[],
    data={"actor_name": "Ann", "text": "Looks good"},
    content={},
    status="delivered",
    seen_at=None,
    read_at=None,
    interacted_at=None,
    link_clicked_at=None,
    archived_at=None,
    metadata=None,
    scheduled_at=None,
    inserted_at=NOW,
    updated_at=NOW,
)
CHANNEL = Channel(
    id="feed",
    key="in-app-feed",
    type=ChannelType.IN_APP_FEED,
    provider=Provider.IN_APP_FEED_KNOCK,
    name="Feed",
)
CASES: dict[str, Callable[[], bytes]] = {
    "user (GET /v1/users/{id})": lambda: encode_json(User.from_record(USER)),
    "message (an item of GET /v1/messages)": lambda: encode_json(Message.from_record(MESSAGE, CHANNEL)),
}


def constructed(cls: type[ResponseModel], fields: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
    return cls.model_construct(**(extra or {}), **fields)


def cpu_per_call(case: Callable[[], bytes], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        case()
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=5000, help="calls timed per round and way")
    arguments = parser.parse_args()
    trusted = ResponseModel.__dict__["trusted"]
    ways = {"trusted": trusted, "model_construct": classmethod(constructed)}
    best = {(case, way): float("inf") for case in CASES for way in ways}
    try:
        for _ in range(arguments.rounds):
            for case, build in CASES.items():
                for way, method in ways.items():
                    ResponseModel.trusted = method  # type: ignore[method-assign]
                    best[case, way] = min(best[case, way], cpu_per_call(build, arguments.calls))
    finally:
        ResponseModel.trusted = trusted  # type: ignore[method-assign]
    for case in CASES:
        fast, public = best[case, "trusted"], best[case, "model_construct"]
        print(
            f"{case:40} trusted {fast:6.1f} µs  model_construct {public:6.1f} µs  "
            f"(+{public - fast:.1f} µs, +{(public - fast) / fast:.0%})"
        )


if __name__ == "__main__":
    main()
