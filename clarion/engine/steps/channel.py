"""The channel step: decide whether this recipient gets a message on the step's channel, and make it.

In Knock's order, each stage able to skip the step (the run goes on either way, the reason recorded),
after the step's conditions, which the run executor checks for every kind of step:

1. the channel is configured;
2. the recipient has the data the channel needs (an email address, a phone number, push tokens, chat
   connections; in-app feeds and webhooks need none);
3. the recipient's preferences, merged across the environment, tenant and recipient layers
   (`clarion.engine.preference_evaluation`), unless the workflow overrides them;
4. the step's send windows (`clarion.engine.send_windows`), in the recipient's timezone (for push, the
   first device's when it has one): outside them the message is made all the same, held until the next
   opening;
5. render the template for the channel type, then make the message.

A template that fails to render raises: the step's job retries it, and its last failure halts the run
(`clarion.engine.run_executor`). An in-app message is delivered by being stored (status `delivered`);
messages of other channels are stored `queued`, for delivery by their provider. Sandbox mode stores every
message as `not_sent`. A held message is stored `queued` with its `scheduled_at`, and the run goes on at
once, as in Knock; a held in-app message gets a job that delivers it at the opening
(`clarion.engine.message_delivery`), while the others wait for their providers like every message of theirs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.channels import Channel
from clarion.engine.conditions import ConditionScope, conditions_hold, parse_condition_list
from clarion.engine.frozen import FrozenDict, FrozenList, freeze
from clarion.engine.message_delivery import DeliveryJobs
from clarion.engine.preference_evaluation import (
    PreferenceLayers,
    SendContext,
    effective_preferences,
    evaluate_preferences,
)
from clarion.engine.run_scope import RunContext
from clarion.engine.send_windows import SendWindows, next_opening, parse_send_windows, recipient_timezone
from clarion.engine.step_definition import (
    DefinitionError,
    DefinitionParser,
    StepDefinition,
    condition_group,
    text_field,
)
from clarion.engine.step_protocol import Outcomes, RunAtStep, StepOutcome, StepServices, StepType
from clarion.engine.templates import SharedRenders, TemplateError, render_markdown
from clarion.schemas.base import format_timestamp
from clarion.store.channel_data import read_channel_data
from clarion.store.ids import new_ksuid
from clarion.store.messages import NewMessage
from clarion.store.preferences import DEFAULT_SET_ID, read_sets
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.tables import TENANTS_COLLECTION
from clarion.store.workflow_runs import RunEvent, RunRecord

CHANNEL_TYPES = ("email", "in_app_feed", "sms", "push", "chat", "http")

TEMPLATE_FIELDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "in_app_feed": (("markdown_body",), ("action_url",)),
    "email": (("subject",), ("html_body", "text_body")),
    "sms": (("text_body",), ()),
    "push": (("text_body",), ("title",)),
    "chat": (("markdown_body",), ("summary", "json_body")),
    "http": (("url",), ("method", "body")),
}
"""Per channel type, the template's required and optional Liquid text fields."""

CHANNEL_DATA_KEYS: Mapping[str, tuple[str, ...]] = {
    "push": ("tokens", "devices", "target_arns", "player_ids"),
    "chat": ("connections",),
}
"""Channel types whose messages need channel data, and the keys of which one must be non-empty."""


@dataclass(frozen=True, kw_only=True)
class ChannelStep(StepDefinition):
    type: ClassVar[str] = "channel"

    channel_type: str
    channel_key: str
    template: Mapping[str, Any]
    send_windows: SendWindows | None = None
    """When the step may send, in the recipient's timezone; None: always."""

    @cached_property
    def texts(self) -> tuple[tuple[str, str, str], ...]:
        """The template's Liquid text fields that it has: (field, source, the name errors give it)."""
        required, optional = TEMPLATE_FIELDS[self.channel_type]
        return tuple(
            (name, source, f"{self.ref}.{name}")
            for name in (*required, *optional)
            if isinstance(source := self.template.get(name), str)
        )


def parse_channel_step(parser: DefinitionParser, data: dict[str, Any], ref: str, field: str) -> ChannelStep:
    if data.get("channel_group_key") is not None:
        raise DefinitionError(f"{field}.channel_group_key", "channel groups are not supported by Clarion yet")
    channel_key = text_field(data, "channel_key", field, required=True)
    assert channel_key is not None
    channel_type = _channel_type(parser, data, channel_key, field)
    template = data.get("template")
    if not isinstance(template, dict):
        raise DefinitionError(f"{field}.template", "must be a template object")
    required, optional = TEMPLATE_FIELDS[channel_type]
    for name in (*required, *optional):
        source = text_field(template, name, f"{field}.template", required=name in required)
        if source is not None:
            parser.liquid(source, f"{field}.template.{name}")
    if channel_type == "in_app_feed":
        _check_action_buttons(parser, template.get("action_buttons"), f"{field}.template.action_buttons")
    return ChannelStep(
        ref=ref,
        conditions=condition_group(data, field),
        channel_type=channel_type,
        channel_key=channel_key,
        template=template,
        send_windows=parse_send_windows(data.get("send_windows"), f"{field}.send_windows"),
    )


def _channel_type(parser: DefinitionParser, data: dict[str, Any], channel_key: str, field: str) -> str:
    """The step's channel type; a push writes it into the step when the file leaves it out, so the stored
    version holds it even if the channel later leaves the configuration."""
    declared = data.get("channel_type")
    if parser.channels is None:
        if declared not in CHANNEL_TYPES:
            raise DefinitionError(f"{field}.channel_type", f"must be one of {', '.join(CHANNEL_TYPES)}")
        return str(declared)
    channel = parser.channels.by_key(channel_key)
    if channel is None:
        raise DefinitionError(f"{field}.channel_key", f"no channel with key {channel_key!r} is configured")
    if declared is not None and declared != channel.type:
        raise DefinitionError(
            f"{field}.channel_type",
            f"is {declared!r} but channel {channel_key!r} is a {channel.type} channel",
        )
    data["channel_type"] = str(channel.type)
    return str(channel.type)


def _check_action_buttons(parser: DefinitionParser, buttons: Any, field: str) -> None:
    if buttons is None:
        return
    if not isinstance(buttons, list) or len(buttons) > 2:
        raise DefinitionError(field, "must be a list of at most two buttons")
    for index, button in enumerate(buttons):
        if not isinstance(button, dict):
            raise DefinitionError(f"{field}.{index}", "must be a button object with `label` and `action`")
        for name in ("label", "action"):
            source = text_field(button, name, f"{field}.{index}", required=True)
            assert source is not None
            parser.liquid(source, f"{field}.{index}.{name}")


def _has_required_data(
    channel_type: str, properties: Mapping[str, Any], data: Mapping[str, Any] | None
) -> bool:
    """Whether a recipient with `properties` and channel `data` can be sent to on the channel."""
    if channel_type == "email":
        return bool(properties.get("email"))
    if channel_type == "sms":
        return bool(properties.get("phone_number"))
    keys = CHANNEL_DATA_KEYS.get(channel_type)
    if keys is None:
        return True
    return data is not None and any(data.get(key) for key in keys)


async def _preference_layers(
    connection: AsyncConnection, environment_id: str, runs: Sequence[RunRecord]
) -> dict[tuple[RecipientKey, str | None], PreferenceLayers]:
    """The preference layers of each (recipient, tenant) of `runs`: one query per kind of set, for all."""
    ids_by_collection: dict[str, list[str]] = defaultdict(list)
    tenant_sets: dict[tuple[str, str], list[str]] = defaultdict(list)
    for run in runs:
        ids_by_collection[run.recipient.collection].append(run.recipient.id)
        if run.tenant is not None:
            tenant_sets[run.recipient.collection, run.tenant].append(run.recipient.id)
    defaults = {
        collection: await read_sets(connection, environment_id, collection, ids, DEFAULT_SET_ID)
        for collection, ids in ids_by_collection.items()
    }
    tenant_ids = sorted({run.tenant for run in runs if run.tenant is not None})
    tenant_defaults = (
        await read_sets(connection, environment_id, TENANTS_COLLECTION, tenant_ids, DEFAULT_SET_ID)
        if tenant_ids
        else {}
    )
    per_tenant = {
        (collection, tenant): await read_sets(connection, environment_id, collection, ids, tenant)
        for (collection, tenant), ids in tenant_sets.items()
    }
    return {
        (run.recipient, run.tenant): PreferenceLayers(
            environment_default={},
            recipient_default=defaults[run.recipient.collection].get(run.recipient.id, {}),
            tenant_default=None if run.tenant is None else tenant_defaults.get(run.tenant),
            recipient_tenant=None
            if run.tenant is None
            else per_tenant[run.recipient.collection, run.tenant].get(run.recipient.id),
        )
        for run in runs
    }


def _json_object(text: str, name: str) -> dict[str, Any]:
    """A rendered `json_body`: it must be a JSON object, or the step fails like any template error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"the rendered JSON is not valid: {exc}", name=name) from None
    if not isinstance(value, dict):
        raise TemplateError("the rendered JSON must be an object", name=name)
    return value


def _markdown_block(body: str) -> dict[str, Any]:
    return {"name": "body", "type": "markdown", "content": body, "rendered": render_markdown(body)}


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def render_content(
    renderer: SharedRenders,
    step: ChannelStep,
    channel: Channel,
    scope: Mapping[str, Any],
    channel_data: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The message's rendered template, shaped per channel type as Knock's message content API returns
    it (`MessageEmailContent`, `MessageInAppFeedContent`, …)."""
    text = {name: renderer.render(source, scope, name=label) for name, source, label in step.texts}
    data = channel_data or {}
    if step.channel_type == "in_app_feed":
        return {"__typename": "MessageInAppFeedContent", "blocks": _feed_blocks(renderer, step, scope, text)}
    if step.channel_type == "email":
        settings = channel.settings
        sender = settings.get("from_address") or ""
        name = settings.get("from_name")
        return {
            "__typename": "MessageEmailContent",
            "from": f"{name} <{sender}>" if name else sender,
            "to": (scope.get("recipient") or {}).get("email") or "",
            "subject_line": text["subject"],
            "html_body": text.get("html_body", ""),
            "text_body": text.get("text_body", ""),
            "cc": None,
            "bcc": None,
            "reply_to": None,
        }
    if step.channel_type == "sms":
        return {
            "__typename": "MessageSmsContent",
            "to": (scope.get("recipient") or {}).get("phone_number") or "",
            "body": text["text_body"],
        }
    if step.channel_type == "push":
        device = _first(data.get("devices"))
        token = _first(data.get("tokens")) or (device.get("token") if isinstance(device, dict) else None)
        return {
            "__typename": "MessagePushContent",
            "title": text.get("title", ""),
            "body": text["text_body"],
            "token": token or "",
            "data": None,
        }
    if step.channel_type == "chat":
        body = text["markdown_body"]
        json_body = text.get("json_body")
        return {
            "__typename": "MessageChatContent",
            "connection": _first(data.get("connections")) or {},
            "template": {
                "summary": text.get("summary"),
                "json_content": _json_object(json_body, f"{step.ref}.json_body") if json_body else None,
                "blocks": [
                    {"name": "body", "type": "markdown", "content": body, "rendered": render_markdown(body)}
                ],
            },
            "metadata": None,
        }
    return {"__typename": "MessageWebhookContent", **text}


def _feed_blocks(
    renderer: SharedRenders, step: ChannelStep, scope: Mapping[str, Any], text: Mapping[str, str]
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [_markdown_block(text["markdown_body"])]
    if "action_url" in text:
        url = text["action_url"]
        blocks.append({"name": "action_url", "type": "text", "content": url, "rendered": url})
    buttons = step.template.get("action_buttons") or []
    if buttons:
        field = f"{step.ref}.action_buttons"
        blocks.append(
            {
                "name": "actions",
                "type": "button_set",
                "buttons": [
                    {
                        "name": "primary" if index == 0 else "secondary",
                        "label": renderer.render(button["label"], scope, name=f"{field}.{index}.label"),
                        "action": renderer.render(button["action"], scope, name=f"{field}.{index}.action"),
                    }
                    for index, button in enumerate(buttons)
                ],
            }
        )
    return blocks


async def execute_channel_steps(
    services: StepServices, step: ChannelStep, pending: Sequence[RunAtStep]
) -> Outcomes:
    """The step for each of `pending` (runs of one environment, each with the condition scope that its
    preference conditions are evaluated in too), reading what they need in one query per kind for all.
    A run whose rendering fails gets its exception in its place, and the others their outcomes."""
    channel = services.channels.by_key(step.channel_key)
    if channel is None or channel.type != step.channel_type:
        return [
            StepOutcome.skipped(step.ref, "channel", "channel_not_configured", channel_key=step.channel_key)
            for _ in pending
        ]
    if not pending:
        return []
    connection = services.connection
    runs = [context.run for context, _ in pending]
    environment_id = runs[0].environment_id
    channel_data: dict[RecipientKey, dict[str, Any]] = {}
    if channel.type in CHANNEL_DATA_KEYS:
        channel_data = await read_channel_data(
            connection, environment_id, channel.id, [run.recipient for run in runs]
        )
    layers = await _preference_layers(connection, environment_id, runs)
    definition = pending[0][0].definition
    sending = _Sending(
        step,
        channel,
        services.now,
        DeliveryJobs(environment_id),
        SendContext(
            workflow_key=definition.key,
            categories=definition.categories,
            channel_type=channel.type,
            channel_id=channel.id,
            commercial=definition.is_commercial,
            override_preferences=definition.override_preferences,
        ),
        SharedRenders(services.renderer),
    )
    results: list[StepOutcome | Exception] = []
    for context, scope in pending:
        run = context.run
        data, run_layers = channel_data.get(run.recipient), layers[run.recipient, run.tenant]
        try:
            results.append(await _channel_step(sending, context, scope, data, run_layers))
        except Exception as exc:
            results.append(exc)
    return results


@dataclass(frozen=True)
class _Sending:
    """What is the same for every run at one channel step."""

    step: ChannelStep
    channel: Channel
    now: datetime
    deliveries: DeliveryJobs
    """The jobs that deliver the in-app messages held for the step's send windows."""
    send: SendContext
    renders: SharedRenders
    triggers: dict[tuple[RecipientKey | None, int, datetime], _Trigger] = field(default_factory=dict)
    """The trigger behind the messages, per actor, data and moment: one for all the runs of a trigger."""
    openings: dict[ZoneInfo, datetime | None] = field(default_factory=dict)
    """When the step's send windows next open, per timezone: the recipients of a fan-out share a few."""

    def trigger(self, run: RunRecord, now: datetime) -> _Trigger:
        key = (run.actor, id(run.data), now)
        trigger = self.triggers.get(key)
        if trigger is None:
            actor = None if run.actor is None else freeze(run.actor.reference())
            activity = FrozenDict({"actor": actor, "data": run.data, "inserted_at": format_timestamp(now)})
            actors = FrozenList([] if actor is None else [actor])
            trigger = self.triggers[key] = _Trigger(run.data, actors, FrozenList([activity]))
        return trigger


@dataclass(frozen=True)
class _Trigger:
    """A message's actors and activities, one list of each for all the messages of a trigger's runs, which
    their insert encodes once (`clarion.store.bulk_insert`); frozen, as the messages share them."""

    data: dict[str, Any]
    """The trigger's data, kept alive with the entry that its identity keys: frozen when the runs share
    it (`clarion.engine.frozen`), so that its identity stands for its content."""
    actors: list[Any]
    activities: list[dict[str, Any]]


async def _channel_step(
    sending: _Sending,
    context: RunContext,
    scope: ConditionScope,
    data: Mapping[str, Any] | None,
    layers: PreferenceLayers,
) -> StepOutcome:
    step, channel = sending.step, sending.channel
    properties = {} if context.recipient is None else context.recipient.properties
    if not _has_required_data(channel.type, properties, data):
        return StepOutcome.skipped(step.ref, "channel", "missing_channel_data", channel_id=channel.id)
    preferences = effective_preferences(layers)
    if preferences:  # most recipients of a fan-out have set nothing, which allows every send
        decision = await evaluate_preferences(
            preferences,
            sending.send,
            lambda conditions: conditions_hold(parse_condition_list(list(conditions)), scope),
        )
        if not decision.allowed:
            return StepOutcome.skipped(step.ref, "channel", "preferences", preference=decision.reason)
    sandbox = bool(context.run.settings.get("sandbox_mode"))
    hold = None if sandbox or step.send_windows is None else _hold(sending, step.send_windows, context, data)
    message = _message(sending, context, data, sandbox=sandbox, held_until=None if hold is None else hold[0])
    event_data: dict[str, Any] = {"message_id": message.id}
    jobs = []
    if hold is not None:
        opening, zone = hold
        event_data["send_window"] = {"held_until": format_timestamp(opening), "timezone": zone.key}
        if channel.type == "in_app_feed":
            jobs.append(sending.deliveries.deliver(message.id, opening))
    return StepOutcome(
        events=[RunEvent("message_created", step_ref=step.ref, step_type="channel", data=event_data)],
        messages=[message],
        step_result={"message_ids": [message.id]},
        jobs=jobs,
    )


def _hold(
    sending: _Sending, windows: SendWindows, context: RunContext, channel_data: Mapping[str, Any] | None
) -> tuple[datetime, ZoneInfo] | None:
    """When the message may go, if not now, and the timezone that decided it: the recipient's, or for
    push the first device's (Knock's device metadata) when it names one."""
    device = _first((channel_data or {}).get("devices")) if sending.channel.type == "push" else None
    zone = recipient_timezone(
        context.serialised_recipient or {},
        device_timezone=device.get("timezone") if isinstance(device, dict) else None,
    )
    if zone not in sending.openings:
        sending.openings[zone] = next_opening(windows, sending.now, zone)
    opening = sending.openings[zone]
    return None if opening is None else (opening, zone)


def _message(
    sending: _Sending,
    context: RunContext,
    channel_data: Mapping[str, Any] | None,
    *,
    sandbox: bool,
    held_until: datetime | None,
) -> NewMessage:
    run, step, channel = context.run, sending.step, sending.channel
    message_id = new_ksuid()
    scope = context.template_scope({"current_message": {"id": message_id}})
    content = render_content(sending.renders, step, channel, scope, channel_data)
    if sandbox:
        status = "not_sent"
    elif channel.type == "in_app_feed" and held_until is None:
        status = "delivered"
    else:
        status = "queued"
    batch = context.batch
    if batch is None:
        trigger = sending.trigger(run, context.now)
        actors, activities, batch_id = trigger.actors, trigger.activities, None
    else:
        actors, activities, batch_id = _batch_people(batch), _batch_activities(batch), batch["batch_id"]
    return NewMessage(
        id=message_id,
        channel_id=channel.id,
        recipient=run.recipient,
        workflow_key=run.workflow_key,
        run_id=run.id,
        workflow_run_id=run.workflow_run_id,
        step_ref=step.ref,
        source={
            "key": run.workflow_key,
            "version_id": run.version_id,
            "categories": list(context.definition.categories),
            "step_ref": step.ref,
            "type": "workflow",
            "workflow_run_id": run.workflow_run_id,
            "workflow_recipient_run_id": run.id,
        },
        tenant=run.tenant,
        actors=actors,
        activities=activities,
        batch_id=batch_id,
        total_activities=None if batch is None else batch["total_activities"],
        total_actors=None if batch is None else batch["total_actors"],
        data=run.data,
        content=content,
        status=status,
        events=("message.created", f"message.{status}"),
        scheduled_at=held_until,
    )


def _reference(wire: Mapping[str, Any]) -> str | dict[str, str]:
    """The recipient reference of a serialised user or object."""
    if wire.get("__typename") == "User":
        return str(wire["id"])
    return {"collection": str(wire["collection"]), "id": str(wire["id"])}


def _batch_people(batch: Mapping[str, Any]) -> list[Any]:
    return [_reference(actor) for actor in batch["actors"]]


def _batch_activities(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A batched message's rendered activities, in the shape a message keeps them."""
    return [
        {
            "actor": None if activity["actor"] is None else _reference(activity["actor"]),
            "data": activity["data"],
            "inserted_at": activity["inserted_at"],
        }
        for activity in batch["activities"]
    ]


STEP_TYPE = StepType("channel", parse_channel_step, execute_channel_steps)
