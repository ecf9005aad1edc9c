"""Send windows on channel steps: a message due outside its step's windows is made `queued`, held out of the
in-app feed until its delivery job delivers it when the window opens, while the run goes on at once; the
recipient's timezone decides (a push device's first), falling back to UTC.

The clock is the real one: each test picks a timezone in which it is now a chosen hour (fixed-offset
`Etc/GMT±N` zones cover every hour of the day), so that windows from 09:00 to 17:00 are open or closed
with hours to spare, and `run_workflow_jobs(..., with_scheduled=True)` stands for the window opening.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from clarion.engine.message_delivery import DELIVERY_JOB
from clarion.engine.workflow_files import WorkflowFilesError
from clarion.jobs.job import JobState
from clarion.store.clock import utcnow
from clarion.store.tables import jobs
from tests.conftest import (
    EnvFixture,
    assert_error,
    feed_channel_id,
    push_workflow,
    run_workflow_jobs,
)

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
OFFICE_HOURS = [{"day": day, "type": "send", "from": "09:00:00", "until": "17:00:00"} for day in DAYS]
NIGHT, NOON = 3, 12
"""Local hours outside and inside `OFFICE_HOURS`, hours away from their edges."""


def zone_at(hour: int, now: datetime | None = None) -> str:
    """A timezone in which it is `hour` o'clock now (`Etc/GMT+N` is N hours behind UTC)."""
    offset = (hour - (now or datetime.now(UTC)).hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def nine_today(zone: str) -> datetime:
    """09:00 today in `zone`, where it is night: when `OFFICE_HOURS` open next."""
    return datetime.now(ZoneInfo(zone)).replace(hour=9, minute=0, second=0, microsecond=0)


def feed_step(**extra: Any) -> dict[str, Any]:
    return {
        "ref": "feed",
        "type": "channel",
        "channel_key": "in-app-feed",
        "template": {"markdown_body": "Hello {{ recipient.id }}"},
        **extra,
    }


def push_step(**extra: Any) -> dict[str, Any]:
    return {
        "ref": "push",
        "type": "channel",
        "channel_key": "push-fcm",
        "template": {"text_body": "Hello"},
        **extra,
    }


async def identify(env: EnvFixture, user_id: str, **properties: Any) -> None:
    response = await env.put(f"/v1/users/{user_id}", json=properties)
    assert response.status_code == 200, response.text


async def trigger(env: EnvFixture, key: str, recipients: list[str]) -> None:
    response = await env.post(f"/v1/workflows/{key}/trigger", json={"recipients": recipients})
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime, with_scheduled=False)


async def messages_of(env: EnvFixture, user_id: str) -> list[dict[str, Any]]:
    response = await env.get("/v1/messages")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = [m for m in response.json()["items"] if m["recipient"] == user_id]
    return found


async def only_message(env: EnvFixture, user_id: str) -> dict[str, Any]:
    [message] = await messages_of(env, user_id)
    return message


async def feed(env: EnvFixture, user_id: str) -> tuple[list[str], dict[str, int]]:
    """The bodies in the user's feed and its badge counts."""
    response = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
    assert response.status_code == 200, response.text
    body = response.json()
    meta = {name: body["meta"][name] for name in ("total_count", "unread_count", "unseen_count")}
    return [entry["blocks"][0]["content"] for entry in body["entries"]], meta


async def message_events(env: EnvFixture, message_id: str) -> list[str]:
    response = await env.get(f"/v1/messages/{message_id}/events")
    assert response.status_code == 200, response.text
    return sorted(event["type"] for event in response.json()["items"])


async def run_of(env: EnvFixture, user_id: str) -> dict[str, Any]:
    """The user's one run, in detail (its events)."""
    response = await env.get("/v1/workflow_recipient_runs", params={"recipient": user_id})
    [run] = response.json()["items"]
    detail = await env.get(f"/v1/workflow_recipient_runs/{run['id']}")
    assert detail.status_code == 200, detail.text
    found: dict[str, Any] = detail.json()
    return found


def message_created(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [event["data"] for event in run["events"] if event["event"] == "message_created"]


async def delivery_jobs(env: EnvFixture) -> list[tuple[int, list[str], datetime]]:
    """The environment's delivery jobs: id, messages, when due."""
    async with env.runtime.database.reader.connect() as connection:
        rows = await connection.execute(
            sa.select(jobs.c.id, jobs.c.args, jobs.c.scheduled_at).where(jobs.c.kind == DELIVERY_JOB)
        )
        return [
            (row.id, row.args["message_ids"], row.scheduled_at)
            for row in rows
            if row.args["environment_id"] == env.id
        ]


async def message(env: EnvFixture, message_id: str) -> dict[str, Any]:
    response = await env.get(f"/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def held_event(zone: str, message_id: str, opening: datetime) -> dict[str, Any]:
    """What the run's `message_created` event says of a message held until `opening`."""
    return {"message_id": message_id, "send_window": {"held_until": timestamp(opening), "timezone": zone}}


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_a_message_outside_its_window_waits_out_of_the_feed_while_the_run_goes_on(
    env: EnvFixture, tmp_path: Path
) -> None:
    zone = zone_at(NIGHT)
    await identify(env, "ada", timezone=zone)
    steps = [feed_step(send_windows=OFFICE_HOURS), {**feed_step(), "ref": "feed_now"}]
    await push_workflow(env, tmp_path, "greeting", {"steps": steps})
    await trigger(env, "greeting", ["ada"])

    sent, held = await messages_of(env, "ada")  # newest first
    assert (held["source"]["step_ref"], sent["source"]["step_ref"]) == ("feed", "feed_now")
    assert (held["status"], held["scheduled_at"]) == ("queued", timestamp(nine_today(zone)))
    assert (sent["status"], sent["scheduled_at"]) == ("delivered", None)
    assert await message_events(env, held["id"]) == ["message.created", "message.queued"]
    # The run did not wait for the window: its next step made its message at once, and it is over.
    run = await run_of(env, "ada")
    assert run["status"] == "completed"
    assert message_created(run) == [
        held_event(zone, held["id"], nine_today(zone)),
        {"message_id": sent["id"]},
    ]
    unread = {"total_count": 1, "unread_count": 1, "unseen_count": 1}
    assert await feed(env, "ada") == (["Hello ada"], unread)
    [(_, message_ids, due)] = await delivery_jobs(env)
    assert (message_ids, due) == ([held["id"]], nine_today(zone))

    await run_workflow_jobs(env.runtime)  # the window opens
    assert (await message(env, held["id"]))["status"] == "delivered"
    assert await message_events(env, held["id"]) == ["message.created", "message.delivered", "message.queued"]
    both = {"total_count": 2, "unread_count": 2, "unseen_count": 2}
    assert await feed(env, "ada") == (["Hello ada", "Hello ada"], both)


async def test_a_message_inside_its_window_is_delivered_at_once(env: EnvFixture, tmp_path: Path) -> None:
    await identify(env, "ada", timezone=zone_at(NOON))
    await push_workflow(env, tmp_path, "greeting", {"steps": [feed_step(send_windows=OFFICE_HOURS)]})
    await trigger(env, "greeting", ["ada"])
    sent = await only_message(env, "ada")
    assert (sent["status"], sent["scheduled_at"]) == ("delivered", None)
    assert message_created(await run_of(env, "ada")) == [{"message_id": sent["id"]}]
    assert await feed(env, "ada") == (["Hello ada"], {"total_count": 1, "unread_count": 1, "unseen_count": 1})
    assert await delivery_jobs(env) == []


async def test_each_recipients_timezone_decides(env: EnvFixture, tmp_path: Path) -> None:
    night = zone_at(NIGHT)
    await identify(env, "ada", timezone=night)
    await identify(env, "bob", timezone=zone_at(NOON))
    await push_workflow(env, tmp_path, "greeting", {"steps": [feed_step(send_windows=OFFICE_HOURS)]})
    await trigger(env, "greeting", ["ada", "bob"])
    ada, bob = await only_message(env, "ada"), await only_message(env, "bob")
    assert (ada["status"], ada["scheduled_at"]) == ("queued", timestamp(nine_today(night)))
    assert (bob["status"], bob["scheduled_at"]) == ("delivered", None)
    assert (await feed(env, "ada"))[0] == []
    assert (await feed(env, "bob"))[0] == ["Hello bob"]


def closed_in_utc_now() -> tuple[list[dict[str, Any]], datetime]:
    """Windows closed now in UTC, an hour a day two hours from now, and when they open next."""
    now = datetime.now(UTC)
    opening = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    # An hour-long window, "until" left out at 23:00 (the day's end); never the current hour.
    window = {"type": "send", "from": f"{opening.hour:02d}:00"}
    if opening.hour < 23:
        window["until"] = f"{opening.hour + 1:02d}:00"
    return [{"day": day, **window} for day in DAYS], opening


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "", None])
async def test_without_a_valid_timezone_the_window_is_read_in_utc(
    env: EnvFixture, tmp_path: Path, timezone: str | None
) -> None:
    await identify(env, "ada", **({} if timezone is None else {"timezone": timezone}))
    windows, opening = closed_in_utc_now()
    await push_workflow(env, tmp_path, "greeting", {"steps": [feed_step(send_windows=windows)]})
    await trigger(env, "greeting", ["ada"])
    held = await only_message(env, "ada")
    assert (held["status"], held["scheduled_at"]) == ("queued", timestamp(opening))
    assert message_created(await run_of(env, "ada")) == [held_event("Etc/UTC", held["id"], opening)]


async def test_a_push_device_timezone_comes_before_the_recipients(env: EnvFixture, tmp_path: Path) -> None:
    night, noon = zone_at(NIGHT), zone_at(NOON)
    await identify(env, "ada", timezone=noon)  # her device is where it is night
    await identify(env, "bob", timezone=night)  # his device is where it is noon
    await identify(env, "cy", timezone=night)  # his device says nothing of its timezone
    push_channel = env.runtime.channels.by_key("push-fcm")
    assert push_channel is not None
    for user_id, device in [
        ("ada", {"token": "a1", "timezone": night}),
        ("bob", {"token": "b1", "timezone": noon}),
        ("cy", {"token": "c1"}),
    ]:
        path = f"/v1/users/{user_id}/channel_data/{push_channel.id}"
        response = await env.put(path, json={"data": {"devices": [device, {"token": "x", "timezone": noon}]}})
        assert response.status_code == 200, response.text
    await push_workflow(env, tmp_path, "buzz", {"steps": [push_step(send_windows=OFFICE_HOURS)]})
    await trigger(env, "buzz", ["ada", "bob", "cy"])
    ada, bob, cy = [await only_message(env, user_id) for user_id in ("ada", "bob", "cy")]
    assert (ada["scheduled_at"], bob["scheduled_at"], cy["scheduled_at"]) == (
        timestamp(nine_today(night)),
        None,
        timestamp(nine_today(night)),
    )
    assert message_created(await run_of(env, "ada")) == [held_event(night, ada["id"], nine_today(night))]
    assert message_created(await run_of(env, "bob")) == [{"message_id": bob["id"]}]
    # Push messages stay queued until providers deliver them: nothing pretends to at the opening.
    assert await delivery_jobs(env) == []
    await run_workflow_jobs(env.runtime)
    assert [(await message(env, m["id"]))["status"] for m in (ada, bob, cy)] == ["queued"] * 3
    assert await message_events(env, ada["id"]) == ["message.created", "message.queued"]


async def test_messages_held_until_the_same_moment_share_a_delivery_job(
    env: EnvFixture, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    night, later_night = zone_at(NIGHT, now), zone_at(NIGHT + 1, now)
    for user_id in ("ada", "bob", "cy"):
        await identify(env, user_id, timezone=night)
    await identify(env, "dee", timezone=later_night)
    await push_workflow(env, tmp_path, "greeting", {"steps": [feed_step(send_windows=OFFICE_HOURS)]})
    await trigger(env, "greeting", ["ada", "bob", "cy", "dee"])
    held = {user_id: (await only_message(env, user_id))["id"] for user_id in ("ada", "bob", "cy", "dee")}
    due = {moment: sorted(message_ids) for _, message_ids, moment in await delivery_jobs(env)}
    assert due == {
        nine_today(night): sorted([held["ada"], held["bob"], held["cy"]]),
        nine_today(later_night): [held["dee"]],
    }
    await run_workflow_jobs(env.runtime)
    for user_id in held:
        assert (await feed(env, user_id))[0] == [f"Hello {user_id}"]


async def test_a_step_reached_after_a_delay_holds_its_message_too(env: EnvFixture, tmp_path: Path) -> None:
    zone = zone_at(NIGHT)
    await identify(env, "ada", timezone=zone)
    delay = {"ref": "wait", "type": "delay", "settings": {"delay_for": {"unit": "minutes", "value": 5}}}
    await push_workflow(env, tmp_path, "later", {"steps": [delay, feed_step(send_windows=OFFICE_HOURS)]})
    await trigger(env, "later", ["ada"])
    assert await messages_of(env, "ada") == []
    await run_workflow_jobs(env.runtime)  # the delay ends, then the window opens
    held = await only_message(env, "ada")
    assert (held["status"], held["scheduled_at"]) == ("delivered", timestamp(nine_today(zone)))
    assert await message_events(env, held["id"]) == ["message.created", "message.delivered", "message.queued"]
    assert message_created(await run_of(env, "ada")) == [held_event(zone, held["id"], nine_today(zone))]


async def test_a_delivery_job_run_twice_delivers_once(env: EnvFixture, tmp_path: Path) -> None:
    await identify(env, "ada", timezone=zone_at(NIGHT))
    await push_workflow(env, tmp_path, "greeting", {"steps": [feed_step(send_windows=OFFICE_HOURS)]})
    await trigger(env, "greeting", ["ada"])
    await run_workflow_jobs(env.runtime)
    [(job_id, [message_id], _)] = await delivery_jobs(env)
    # As if its worker died after the delivery committed: the job runs again.
    async with env.runtime.database.writer.begin() as connection:
        await connection.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(state=JobState.AVAILABLE.value, scheduled_at=utcnow())
        )
    await run_workflow_jobs(env.runtime)
    stored = await env.runtime.queue.get(job_id)
    assert stored is not None and stored.state is JobState.COMPLETED
    assert await message_events(env, message_id) == ["message.created", "message.delivered", "message.queued"]
    assert (await feed(env, "ada"))[0] == ["Hello ada"]


@pytest.mark.parametrize(
    ("send_windows", "field"),
    [
        ("weekdays", "steps.0.send_windows"),
        (OFFICE_HOURS[:6], "steps.0.send_windows"),
        ([*OFFICE_HOURS[:6], {"day": "sunday", "type": "send", "from": "18:00"}], None),
        (
            [*OFFICE_HOURS[:6], {"day": "sunday", "type": "send", "until": "25:00"}],
            "steps.0.send_windows.6.until",
        ),
        ([*OFFICE_HOURS[:6], {"day": "sunday", "type": "maybe"}], "steps.0.send_windows.6.type"),
    ],
)
async def test_bad_send_windows_are_refused_at_push(
    env: EnvFixture, tmp_path: Path, send_windows: Any, field: str | None
) -> None:
    document = {"steps": [feed_step(send_windows=send_windows)]}
    if field is None:  # a valid week, for contrast
        await push_workflow(env, tmp_path, "greeting", document)
        return
    with pytest.raises(WorkflowFilesError, match=field.replace(".", r"\.")):
        await push_workflow(env, tmp_path, "greeting", document)
    assert_error(await env.post("/v1/workflows/greeting/trigger", json={"recipients": ["ada"]}), 404)
