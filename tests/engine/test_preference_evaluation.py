"""`clarion.engine.preference_evaluation`: the cases of Knock's preference docs, each row naming the page and
section it comes from (`overview` is `preferences/overview.mdx`, `per-tenant` is
`multi-tenancy/per-tenant-preferences.mdx`)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from clarion.engine.preference_evaluation import (
    PreferenceDecision,
    PreferenceLayers,
    SendContext,
    effective_preferences,
    evaluate_preferences,
)

# Channel ids from the docs' examples.
EMAIL_CHANNEL = "550e8400-e29b-41d4-a716-446655440000"
OTHER_EMAIL_CHANNEL = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
THIRD_CHANNEL = "f47ac10b-58cc-4372-a567-0e02b2c3d479"

FACTS = {"recipient.country_code": "US"}
IN_US = {"variable": "recipient.country_code", "operator": "equal_to", "argument": "US"}
IN_CANADA = {"variable": "recipient.country_code", "operator": "equal_to", "argument": "CA"}

STEP = SendContext(
    workflow_key="new-comment",
    categories=("collaboration",),
    channel_type="email",
    channel_id=EMAIL_CHANNEL,
    commercial=False,
    override_preferences=False,
)


def step(**changes: Any) -> SendContext:
    return dataclasses.replace(STEP, **changes)


class RecordingConditions:
    """Holds when each `equal_to` condition's variable has its argument in `FACTS`; records every list it is
    given."""

    def __init__(self) -> None:
        self.given: list[list[Mapping[str, Any]]] = []

    async def __call__(self, conditions: Sequence[Mapping[str, Any]]) -> bool:
        self.given.append(list(conditions))
        return all(
            condition["operator"] == "equal_to" and FACTS.get(condition["variable"]) == condition["argument"]
            for condition in conditions
        )


EVALUATION_CASES = [
    # overview, "Preference evaluation rules" > general: an unset preference defaults to true.
    pytest.param({}, STEP, True, None, id="empty-set-opts-in"),
    pytest.param(
        {"categories": {}, "workflows": {}, "channel_types": {}, "channels": {}},
        STEP,
        True,
        None,
        id="empty-sections-opt-in",
    ),
    # overview, "How preferences work": unsubscribe from email notifications.
    pytest.param(
        {"channel_types": {"email": False}}, STEP, False, "channel_type:email", id="channel-type-off"
    ),
    pytest.param(
        {"channel_types": {"email": False}},
        step(channel_type="sms", channel_id=THIRD_CHANNEL),
        True,
        None,
        id="channel-type-off-leaves-other-types",
    ),
    # overview, "How preferences work": unsubscribe from a specific email channel.
    pytest.param(
        {"channels": {EMAIL_CHANNEL: False}}, STEP, False, f"channel:{EMAIL_CHANNEL}", id="channel-off"
    ),
    pytest.param(
        {"channels": {EMAIL_CHANNEL: False}},
        step(channel_id=OTHER_EMAIL_CHANNEL),
        True,
        None,
        id="channel-off-leaves-other-channels",
    ),
    # overview, "How preferences work": unsubscribe from admin category notifications.
    pytest.param(
        {"categories": {"admin": False}},
        step(categories=["admin"]),
        False,
        "category:admin",
        id="category-off",
    ),
    pytest.param(
        {"categories": {"admin": False}}, STEP, True, None, id="category-off-leaves-other-categories"
    ),
    # overview, "How preferences work": unsubscribe from at-mention notifications.
    pytest.param(
        {"workflows": {"mention": False}},
        step(workflow_key="mention"),
        False,
        "workflow:mention",
        id="workflow-off",
    ),
    pytest.param({"workflows": {"mention": False}}, STEP, True, None, id="workflow-off-leaves-others"),
    # overview, "Resolving preference conflicts": one false category of several blocks.
    pytest.param(
        {"categories": {"collaboration": True, "reminders": False}},
        step(categories=["collaboration", "reminders"]),
        False,
        "category:reminders",
        id="one-category-of-several-off",
    ),
    # overview, "Resolving preference conflicts": a false category blocks a channel or channel type set true.
    pytest.param(
        {
            "categories": {"collaboration": False},
            "channel_types": {"email": True},
            "channels": {EMAIL_CHANNEL: True},
            "workflows": {
                "new-comment": {"channel_types": {"email": True}, "channels": {EMAIL_CHANNEL: True}}
            },
        },
        STEP,
        False,
        "category:collaboration",
        id="category-off-beats-channel-on",
    ),
    # overview, "Resolving preference conflicts" and FAQ "channel preferences and channel type preferences":
    # a channel set true sends although its channel type is false; other channels of the type do not.
    pytest.param(
        {"channel_types": {"email": False}, "channels": {EMAIL_CHANNEL: True}},
        STEP,
        True,
        None,
        id="channel-on-beats-channel-type-off",
    ),
    pytest.param(
        {"channel_types": {"email": False}, "channels": {EMAIL_CHANNEL: True}},
        step(channel_id=OTHER_EMAIL_CHANNEL),
        False,
        "channel_type:email",
        id="channel-on-leaves-type-off-for-other-channels",
    ),
    # overview, "Resolving preference conflicts": the channel preference is evaluated first and wins.
    pytest.param(
        {"channel_types": {"email": True}, "channels": {EMAIL_CHANNEL: False}},
        STEP,
        False,
        f"channel:{EMAIL_CHANNEL}",
        id="channel-off-beats-channel-type-on",
    ),
    # per-tenant, "Create a per-tenant default PreferenceSet": channel types nested under one workflow.
    pytest.param(
        {"workflows": {"new-comment": {"channel_types": {"email": False, "sms": True, "chat": False}}}},
        STEP,
        False,
        "workflow:new-comment/channel_type:email",
        id="nested-workflow-channel-type-off",
    ),
    pytest.param(
        {"workflows": {"new-comment": {"channel_types": {"email": False, "sms": True, "chat": False}}}},
        step(channel_type="sms", channel_id=THIRD_CHANNEL),
        True,
        None,
        id="nested-workflow-channel-type-on",
    ),
    pytest.param(
        {"workflows": {"new-comment": {"channel_types": {"email": False}}}},
        step(workflow_key="mention"),
        True,
        None,
        id="nested-workflow-channel-type-leaves-other-workflows",
    ),
    # overview, "Channels vs. channel types": the preference grid, channels nested under a workflow and a
    # category taking priority over the channel types beside them.
    pytest.param(
        {
            "workflows": {
                "invoice-issued": {
                    "channel_types": {"email": True},
                    "channels": {OTHER_EMAIL_CHANNEL: True, THIRD_CHANNEL: False},
                }
            }
        },
        step(workflow_key="invoice-issued", channel_id=THIRD_CHANNEL),
        False,
        f"workflow:invoice-issued/channel:{THIRD_CHANNEL}",
        id="grid-workflow-channel-off",
    ),
    pytest.param(
        {
            "categories": {
                "collaboration": {
                    "channel_types": {"email": True, "in_app_feed": True},
                    "channels": {EMAIL_CHANNEL: False, OTHER_EMAIL_CHANNEL: True},
                },
                "project-updates": {"channel_types": {"email": False, "in_app_feed": True}},
            }
        },
        STEP,
        False,
        f"category:collaboration/channel:{EMAIL_CHANNEL}",
        id="grid-category-channel-off",
    ),
    pytest.param(
        {"categories": {"project-updates": {"channel_types": {"email": False, "in_app_feed": True}}}},
        step(categories=["project-updates"]),
        False,
        "category:project-updates/channel_type:email",
        id="grid-category-channel-type-off",
    ),
    pytest.param(
        {"categories": {"project-updates": {"channel_types": {"email": False, "in_app_feed": True}}}},
        step(categories=["project-updates"], channel_type="in_app_feed", channel_id=THIRD_CHANNEL),
        True,
        None,
        id="grid-category-channel-type-on",
    ),
    # overview, "Resolving preference conflicts": all preference combinations must be true, so a channel
    # beats its channel type only within one scope (see the module docstring).
    pytest.param(
        {
            "channel_types": {"email": False},
            "workflows": {"new-comment": {"channels": {EMAIL_CHANNEL: True}}},
        },
        STEP,
        False,
        "channel_type:email",
        id="nested-channel-on-does-not-lift-top-level-type-off",
    ),
    pytest.param(
        {
            "channels": {EMAIL_CHANNEL: True},
            "workflows": {"new-comment": {"channel_types": {"email": False}}},
        },
        STEP,
        False,
        "workflow:new-comment/channel_type:email",
        id="top-level-channel-on-does-not-lift-nested-type-off",
    ),
    pytest.param(
        {"channel_types": {"email": True}, "workflows": {"new-comment": {"channel_types": {"email": True}}}},
        STEP,
        True,
        None,
        id="every-scope-on",
    ),
    # overview, FAQ "channel types preferences in the workflow debugger": an environment default with every
    # channel type false opts recipients out of everything.
    pytest.param(
        {
            "channel_types": {
                "email": False,
                "sms": False,
                "push": False,
                "chat": False,
                "in_app_feed": False,
                "http": False,
            }
        },
        step(channel_type="push", channel_id=THIRD_CHANNEL),
        False,
        "channel_type:push",
        id="all-channel-types-off",
    ),
    # preference-conditions, "Overview": a workflow preference whose conditions decide it.
    pytest.param(
        {"workflows": {"new-comment": {"conditions": [IN_US]}}},
        STEP,
        True,
        None,
        id="workflow-conditions-hold",
    ),
    pytest.param(
        {"workflows": {"new-comment": {"conditions": [IN_CANADA]}}},
        STEP,
        False,
        "conditions:workflow:new-comment",
        id="workflow-conditions-fail",
    ),
    # preference-conditions, FAQ "multiple conditions": AND over the list.
    pytest.param(
        {"workflows": {"new-comment": {"conditions": [IN_US, IN_CANADA]}}},
        STEP,
        False,
        "conditions:workflow:new-comment",
        id="one-failing-condition-of-several",
    ),
    # preference-conditions, FAQ "Where can I use preference conditions?": every place a condition may sit.
    pytest.param(
        {"categories": {"collaboration": {"conditions": [IN_CANADA]}}},
        STEP,
        False,
        "conditions:category:collaboration",
        id="category-conditions-fail",
    ),
    pytest.param(
        {"channel_types": {"email": {"conditions": [IN_CANADA]}}},
        STEP,
        False,
        "conditions:channel_type:email",
        id="channel-type-conditions-fail",
    ),
    pytest.param(
        {"channels": {EMAIL_CHANNEL: {"conditions": [IN_CANADA]}}},
        STEP,
        False,
        f"conditions:channel:{EMAIL_CHANNEL}",
        id="channel-conditions-fail",
    ),
    pytest.param(
        {"workflows": {"new-comment": {"channels": {EMAIL_CHANNEL: {"conditions": [IN_CANADA]}}}}},
        STEP,
        False,
        f"conditions:workflow:new-comment/channel:{EMAIL_CHANNEL}",
        id="nested-workflow-channel-conditions-fail",
    ),
    pytest.param(
        {"categories": {"collaboration": {"channel_types": {"email": {"conditions": [IN_CANADA]}}}}},
        STEP,
        False,
        "conditions:category:collaboration/channel_type:email",
        id="nested-category-channel-type-conditions-fail",
    ),
    # A channel set to conditions that hold is a channel set true, so it beats its channel type set false.
    pytest.param(
        {"channel_types": {"email": False}, "channels": {EMAIL_CHANNEL: {"conditions": [IN_US]}}},
        STEP,
        True,
        None,
        id="channel-conditions-hold-beat-channel-type-off",
    ),
    pytest.param(
        {"workflows": {"new-comment": {"conditions": [IN_US], "channel_types": {"email": False}}}},
        STEP,
        False,
        "workflow:new-comment/channel_type:email",
        id="workflow-conditions-hold-nested-type-off",
    ),
    # commercial-unsubscribe, "Preference evaluation rules": unsubscribed recipients get no commercial
    # messages and keep getting transactional ones.
    pytest.param(
        {"commercial_subscribed": False},
        step(commercial=True),
        False,
        "commercial_unsubscribed",
        id="commercial-unsubscribed",
    ),
    pytest.param(
        {"commercial_subscribed": False}, STEP, True, None, id="unsubscribed-still-gets-transactional"
    ),
    pytest.param(
        {"commercial_subscribed": True}, step(commercial=True), True, None, id="commercial-subscribed"
    ),
    pytest.param({}, step(commercial=True), True, None, id="commercial-unset-opts-in"),
    # openapi `PreferenceSetCommercialSubscribedSetting`: conditions evaluated at send time.
    pytest.param(
        {"commercial_subscribed": {"conditions": [IN_CANADA]}},
        step(commercial=True),
        False,
        "conditions:commercial_subscribed",
        id="commercial-conditions-fail",
    ),
    pytest.param(
        {"commercial_subscribed": {"conditions": [IN_US]}},
        step(commercial=True),
        True,
        None,
        id="commercial-conditions-hold",
    ),
    # overview, "Advanced concepts" > workflow overrides: sends regardless of the recipient's preferences.
    pytest.param(
        {
            "commercial_subscribed": False,
            "categories": {"collaboration": False},
            "workflows": {"new-comment": False},
            "channel_types": {"email": False},
            "channels": {EMAIL_CHANNEL: {"conditions": [IN_CANADA]}},
        },
        step(commercial=True, override_preferences=True),
        True,
        None,
        id="override-preferences",
    ),
    # overview, FAQ "merge strategy": `__strategy__` markers shown in a merged set change nothing.
    pytest.param(
        {
            "categories": {"collaboration": {"__strategy__": "replace", "channel_types": {"email": False}}},
            "channel_types": {"__strategy__": "replace", "sms": True},
            "channels": {"__strategy__": "merge"},
        },
        STEP,
        False,
        "category:collaboration/channel_type:email",
        id="strategy-markers-ignored",
    ),
    pytest.param(
        {
            "workflows": {"new-comment": {"__strategy__": "replace"}},
            "channel_types": {"__strategy__": "replace"},
        },
        STEP,
        True,
        None,
        id="strategy-only-objects-opt-in",
    ),
    # A `null` left by the merge counts as unset.
    pytest.param(
        {"channel_types": None, "channels": {EMAIL_CHANNEL: None}, "workflows": {"new-comment": None}},
        STEP,
        True,
        None,
        id="nulls-are-unset",
    ),
    pytest.param(
        {"channel_types": {"email": False}, "channels": {EMAIL_CHANNEL: None}},
        STEP,
        False,
        "channel_type:email",
        id="null-channel-falls-back-to-type",
    ),
]


@pytest.mark.parametrize(("preferences", "context", "allowed", "reason"), EVALUATION_CASES)
async def test_evaluate_preferences(
    preferences: dict[str, Any], context: SendContext, allowed: bool, reason: str | None
) -> None:
    decision = await evaluate_preferences(preferences, context, RecordingConditions())
    assert decision == PreferenceDecision(allowed=allowed, reason=reason)


async def test_conditions_are_given_each_stored_list_in_order() -> None:
    conditions = RecordingConditions()
    preferences = {
        "commercial_subscribed": {"conditions": [IN_US]},
        "categories": {"collaboration": {"conditions": [IN_US, IN_US], "channels": {EMAIL_CHANNEL: True}}},
        "workflows": {"new-comment": {"conditions": [IN_US], "channel_types": {"email": {"conditions": []}}}},
        "channel_types": {"email": {"conditions": [IN_US]}},
    }
    decision = await evaluate_preferences(preferences, step(commercial=True), conditions)
    assert decision == PreferenceDecision(allowed=True, reason=None)
    assert conditions.given == [[IN_US], [IN_US, IN_US], [IN_US], [IN_US]]


async def test_no_condition_runs_while_a_boolean_blocks() -> None:
    conditions = RecordingConditions()
    preferences = {
        "categories": {"collaboration": {"conditions": [IN_US]}},
        "workflows": {"new-comment": False},
    }
    decision = await evaluate_preferences(preferences, STEP, conditions)
    assert decision == PreferenceDecision(allowed=False, reason="workflow:new-comment")
    assert conditions.given == []


async def test_evaluation_stops_at_the_first_failing_condition_list() -> None:
    conditions = RecordingConditions()
    preferences = {
        "categories": {"collaboration": {"conditions": [IN_CANADA]}},
        "workflows": {"new-comment": {"conditions": [IN_US]}},
    }
    decision = await evaluate_preferences(preferences, STEP, conditions)
    assert decision == PreferenceDecision(allowed=False, reason="conditions:category:collaboration")
    assert conditions.given == [[IN_CANADA]]


async def test_preferences_that_do_not_apply_run_no_conditions() -> None:
    conditions = RecordingConditions()
    preferences = {
        "commercial_subscribed": {"conditions": [IN_CANADA]},
        "categories": {"billing": {"conditions": [IN_CANADA]}},
        "workflows": {"mention": {"conditions": [IN_CANADA]}},
        "channel_types": {"sms": {"conditions": [IN_CANADA]}, "email": {"conditions": []}},
        "channels": {OTHER_EMAIL_CHANNEL: {"conditions": [IN_CANADA]}},
    }
    decision = await evaluate_preferences(preferences, STEP, conditions)
    assert decision == PreferenceDecision(allowed=True, reason=None)
    assert conditions.given == []


async def test_override_preferences_runs_no_conditions() -> None:
    conditions = RecordingConditions()
    preferences = {"workflows": {"new-comment": {"conditions": [IN_US]}}}
    decision = await evaluate_preferences(preferences, step(override_preferences=True), conditions)
    assert decision == PreferenceDecision(allowed=True, reason=None)
    assert conditions.given == []


# overview, "Merging preferences" > standard hierarchy: the environment's collaboration opt-in shows
# through; the recipient's SMS opt-in beats the environment's opt-out.
STANDARD_ENVIRONMENT = {"categories": {"collaboration": True}, "channel_types": {"sms": False}}
STANDARD_RECIPIENT = {"channel_types": {"sms": True}}
STANDARD_MERGED = {"categories": {"collaboration": True}, "channel_types": {"sms": True}}

# overview, "Merging preferences" > tenant-specific hierarchy: the environment's SMS opt-out and
# collaboration opt-in show through; the recipient's reminders opt-out beats the tenant's opt-in.
TENANT_ENVIRONMENT = {"categories": {"collaboration": True}, "channel_types": {"sms": False}}
TENANT_DEFAULT = {"categories": {"reminders": True}}
RECIPIENT_TENANT = {"categories": {"reminders": False}}
RECIPIENT_DEFAULT = {"workflows": {"mention": False}, "channel_types": {"sms": True}}

# overview, FAQ "merge strategy" (and per-tenant, FAQ "force a tenant's default preferences").
REPLACING_TENANT_DEFAULT = {
    "categories": {
        "collaboration": {"__strategy__": "replace", "channel_types": {"email": False}},
        "project-updates": {"channel_types": {"email": False}},
    }
}
REPLACED_RECIPIENT_TENANT = {
    "categories": {
        "collaboration": {"channel_types": {"email": True}},
        "project-updates": {"channel_types": {"email": True}},
    }
}
REPLACED_MERGED = {
    "categories": {
        "collaboration": {"__strategy__": "replace", "channel_types": {"email": False}},
        "project-updates": {"channel_types": {"email": True}},
    }
}

# per-tenant, "Create a per-tenant default PreferenceSet" and "Set a per-tenant user PreferenceSet".
PER_TENANT_DEFAULT = {
    "workflows": {"new-comment": {"channel_types": {"email": False, "sms": True, "chat": False}}}
}
PER_TENANT_RECIPIENT = {"channel_types": {"email": True, "sms": False, "chat": True}}

MERGE_CASES = [
    pytest.param(PreferenceLayers({}, {}), {}, id="nothing-set"),
    pytest.param(PreferenceLayers(STANDARD_ENVIRONMENT, STANDARD_RECIPIENT), STANDARD_MERGED, id="no-tenant"),
    pytest.param(
        PreferenceLayers(TENANT_ENVIRONMENT, RECIPIENT_DEFAULT, TENANT_DEFAULT, RECIPIENT_TENANT),
        {"categories": {"collaboration": True, "reminders": False}, "channel_types": {"sms": False}},
        id="tenant-set-over-tenant-default-over-environment",
    ),
    # per-tenant, "Tenant preference evaluation rules": tenant defaults override the recipient's `default`.
    pytest.param(
        PreferenceLayers({"channel_types": {"push": False}}, RECIPIENT_DEFAULT, PER_TENANT_DEFAULT),
        {"channel_types": {"push": False}, **PER_TENANT_DEFAULT},
        id="only-tenant-default",
    ),
    # per-tenant, "Trigger per-tenant workflows": the recipient's tenant set is used when it exists.
    pytest.param(
        PreferenceLayers(
            {"channel_types": {"push": False}}, RECIPIENT_DEFAULT, recipient_tenant=PER_TENANT_RECIPIENT
        ),
        {"channel_types": {"push": False, "email": True, "sms": False, "chat": True}},
        id="only-recipient-tenant-set",
    ),
    pytest.param(
        PreferenceLayers(STANDARD_ENVIRONMENT, RECIPIENT_DEFAULT, recipient_tenant={}),
        STANDARD_ENVIRONMENT,
        id="empty-recipient-tenant-set-still-replaces-default",
    ),
    # overview, "Merging preferences" note, and per-tenant, "Tenant preference evaluation rules": with
    # neither tenant-level set, the recipient's `default` over the environment default.
    pytest.param(
        PreferenceLayers(STANDARD_ENVIRONMENT, STANDARD_RECIPIENT, None, None),
        STANDARD_MERGED,
        id="neither-tenant-level-set",
    ),
    pytest.param(
        PreferenceLayers({}, {}, REPLACING_TENANT_DEFAULT, REPLACED_RECIPIENT_TENANT),
        REPLACED_MERGED,
        id="tenant-default-replace-strategy",
    ),
    # commercial-unsubscribe, "Preference evaluation rules": the recipient's `default` commercial_subscribed
    # takes precedence over environment and tenant preferences.
    pytest.param(
        PreferenceLayers(
            {"commercial_subscribed": True},
            {"commercial_subscribed": False, "workflows": {"mention": False}},
            {"commercial_subscribed": True},
            {"commercial_subscribed": True, "channel_types": {"sms": False}},
        ),
        {"commercial_subscribed": False, "channel_types": {"sms": False}},
        id="recipient-commercial-unsubscribe-beats-tenant",
    ),
    pytest.param(
        PreferenceLayers({}, {"commercial_subscribed": None}, {"commercial_subscribed": True}),
        {"commercial_subscribed": True},
        id="recipient-commercial-null-is-unset",
    ),
]


@pytest.mark.parametrize(("layers", "expected"), MERGE_CASES)
def test_effective_preferences(layers: PreferenceLayers, expected: dict[str, Any]) -> None:
    before = repr(layers)
    assert effective_preferences(layers) == expected
    assert repr(layers) == before


def test_the_effective_set_shares_nothing_with_its_layers() -> None:
    layers = PreferenceLayers(
        copy.deepcopy(TENANT_ENVIRONMENT), {}, copy.deepcopy(REPLACING_TENANT_DEFAULT), {"workflows": {}}
    )
    merged = effective_preferences(layers)
    merged["categories"]["collaboration"]["channel_types"]["email"] = True
    merged["channel_types"]["sms"] = True
    assert layers.tenant_default == REPLACING_TENANT_DEFAULT
    assert layers.environment_default == TENANT_ENVIRONMENT


# overview, FAQ "merge strategy": collaboration emails do not send despite the user's opt-in, while
# the user's project-updates opt-in is kept.
@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        (["collaboration"], PreferenceDecision(False, "category:collaboration/channel_type:email")),
        (["project-updates"], PreferenceDecision(True, None)),
    ],
)
async def test_a_replacing_tenant_default_decides_the_send(
    categories: list[str], expected: PreferenceDecision
) -> None:
    layers = PreferenceLayers({}, {}, REPLACING_TENANT_DEFAULT, REPLACED_RECIPIENT_TENANT)
    decision = await evaluate_preferences(
        effective_preferences(layers), step(categories=categories), RecordingConditions()
    )
    assert decision == expected
