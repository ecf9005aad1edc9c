"""Audience-entry benchmark on SQLite and PostgreSQL, printed as a ratio measured in the same run:

- audience entry: 10,000 users (identified beforehand) added to a static audience in 10 requests of 1,000
  (`POST /v1/audiences/{key}/members`, one after another), whose entry workflow sends each new member one
  in-app feed message; the time from the first request until all 10,000 messages are readable, as
  messages/s.
- over the object fan-out: one trigger to an object whose 10,000 subscribers (the same users) each get the
  same feed message, timed the same way: the same number of runs and messages, all started by one
  trigger job.

Both run on an in-process runtime with its worker, through the ASGI app, alternated (an object fan-out,
an audience entry, and again; the members are removed between rounds, untimed, so that every add enters);
the best of each counts. Goal >= 50%. Run from the repository root:

    .venv/bin/python -m bench.audiences [--rounds 3] [--stores sqlite,postgres]
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import sqlalchemy as sa

from bench.harness import benchmark_arguments, each_store
from bench.workflows import FEED_WORKFLOW, InProcess, in_process
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.recipients import InlineRecipientData
from clarion.store.subscriptions import SubscriptionEntry
from clarion.store.tables import messages

AUDIENCE_KEY = "bench-members"
MEMBERS = 10_000
PER_REQUEST = 1_000
"""Members per add request, the most Knock's API takes."""
ROUNDS = 3
SUBSCRIBED = ("projects", "bench")
"""The object whose subscribers the reference fans out to."""
WORKFLOWS: dict[str, dict[str, Any]] = {
    "bench": FEED_WORKFLOW,
    "entered": {**FEED_WORKFLOW, "trigger": {"type": "audience", "audience_key": AUDIENCE_KEY}},
}
DATA = {"actor_name": "Ann", "text": "hello"}
POLL_RESOLUTION = 0.01
"""The poll for messages sleeps this share of the time elapsed (at least a millisecond): the time measured
is rounded up by at most as much, and the counts, read in this process, take little of its CPU."""


def member_ids() -> list[str]:
    return [f"member-{n}" for n in range(MEMBERS)]


async def _last_message(bench: InProcess) -> int:
    async with bench.runtime.database.reader.connect() as connection:
        last = await connection.scalar(
            sa.select(sa.func.max(messages.c.pk)).where(messages.c.environment_id == bench.environment_id)
        )
    return int(last or 0)


async def _until_messages(bench: InProcess, after: int, started: float) -> float:
    """Seconds since `started` once the environment has `MEMBERS` messages newer than `after`."""
    made = sa.select(sa.func.count()).where(
        messages.c.environment_id == bench.environment_id, messages.c.pk > after
    )
    while True:
        async with bench.runtime.database.reader.connect() as connection:
            if (await connection.execute(made)).scalar_one() >= MEMBERS:
                return time.perf_counter() - started
        await asyncio.sleep(max(0.001, (time.perf_counter() - started) * POLL_RESOLUTION))


async def _one_object_fan_out(bench: InProcess) -> float:
    after = await _last_message(bench)
    collection, object_id = SUBSCRIBED
    body = {"recipients": [{"collection": collection, "id": object_id}], "data": DATA}
    started = time.perf_counter()
    response = await bench.client.post("/v1/workflows/bench/trigger", json=body)
    assert response.status_code == 200, response.text
    return await _until_messages(bench, after, started)


async def _one_audience_entry(bench: InProcess, requests: list[list[dict[str, Any]]]) -> float:
    after = await _last_message(bench)
    started = time.perf_counter()
    for members in requests:
        response = await bench.client.post(f"/v1/audiences/{AUDIENCE_KEY}/members", json={"members": members})
        assert response.status_code == 204, response.text
    elapsed = await _until_messages(bench, after, started)
    for members in requests:  # so that the next round's adds are new memberships again
        response = await bench.client.request(
            "DELETE", f"/v1/audiences/{AUDIENCE_KEY}/members", json={"members": members}
        )
        assert response.status_code == 204, response.text
    return elapsed


async def audience_entry(database_url: str, rounds: int) -> tuple[float, float]:
    """Messages/s of the audience entry and of the object fan-out, each its best of `rounds`."""
    async with in_process(database_url, WORKFLOWS) as bench:
        runtime, environment_id = bench.runtime, bench.environment_id
        ids = member_ids()
        for at in range(0, MEMBERS, PER_REQUEST):
            await runtime.users.identify_many(
                environment_id,
                [
                    (user_id, {"name": user_id}, InlineRecipientData())
                    for user_id in ids[at : at + PER_REQUEST]
                ],
            )
        collection, object_id = SUBSCRIBED
        await runtime.objects.set(environment_id, collection, object_id, {"name": "Bench"})
        await runtime.subscriptions.add_many(
            environment_id, collection, [SubscriptionEntry(object_id, list(map(RecipientKey.user, ids)))]
        )
        await runtime.audiences.add_members(environment_id, AUDIENCE_KEY, [], create_audience=True)
        requests = [
            [{"user": {"id": user_id}} for user_id in ids[at : at + PER_REQUEST]]
            for at in range(0, MEMBERS, PER_REQUEST)
        ]
        # Alternated, so that both see the machine and the database as they are in the same minutes.
        object_times, audience_times = [], []
        for _ in range(rounds):
            object_times.append(await _one_object_fan_out(bench))
            audience_times.append(await _one_audience_entry(bench, requests))
    return MEMBERS / min(audience_times), MEMBERS / min(object_times)


def main() -> None:
    parser = benchmark_arguments(__doc__, seconds=None)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    for store, (audience, fanned) in each_store(
        args.stores.split(","), args.postgres, lambda url: asyncio.run(audience_entry(url, args.rounds))
    ):
        ratio = f"{audience / fanned:6.1%} of object fan-out (goal 50%)"
        print(f"{store:9} audience entry 10 x 1,000 {audience:8,.0f} messages/s = {ratio}")
        print(f"{store:9}   object fan-out to 10,000  {fanned:8,.0f} messages/s")


if __name__ == "__main__":
    main()
