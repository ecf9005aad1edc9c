"""Whether a channel step may send to a recipient under Knock's preference rules, and the one preference set
a run evaluates those rules on.

`effective_preferences` merges that set from its layers. When neither the run's tenant has a default set nor
the recipient a set named after the tenant, it is the recipient's `default` set over the environment default.
Otherwise it is the recipient's tenant set over the tenant default over the environment default. The
recipient's `default` set then no longer takes part, except for its `commercial_subscribed`: a one-click
unsubscribe is written there, and it wins over every tenant and environment layer.

`evaluate_preferences` allows a send only when every applicable preference allows it, and an unset
preference allows. These preferences apply:

    commercial_subscribed                      only when the workflow is commercial
    categories[<category>]                     each of the workflow's categories
    workflows[<key>]
    channels[<id>], else channel_types[<type>] in each scope: the set's top level, the workflow's entry and
                                               each category's entry, when that entry is an object

A channel therefore beats its channel type only within one scope. A top-level `channel_types.email: false`
still blocks a workflow whose own entry sets the channel `true`, and a category set to `false` blocks whatever
any channel or channel type says. A preference of the form `{"conditions": [...]}`, or a workflow or
category object that carries `conditions`, allows when all of those conditions hold. Every boolean is looked
at before any condition runs, and evaluation stops at the first preference that blocks.
`override_preferences` skips every check, `commercial_subscribed` included. `__strategy__` markers are never
read.

The caller evaluates each condition list (`ConditionsHold`), because only it knows the run's scope; after a
batch step, Knock evaluates preference conditions against the batch's first activity. Merging two layers
lives in `clarion.store.preference_merge`, reading stored sets in `clarion.store.preferences`, and their
validation in `clarion.schemas.preferences`.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clarion.store.preference_merge import merge_preference_sets

COMMERCIAL_SUBSCRIBED = "commercial_subscribed"

ConditionsHold = Callable[[Sequence[Mapping[str, Any]]], Awaitable[bool]]
"""Evaluates a preference's plain list of conditions (AND), supplied by the caller."""


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class PreferenceLayers:
    """The stored set bodies (without `id`) that a run's effective set is merged from: the environment's
    default set and the recipient's `default` set (`{}` when none), the `settings.preference_set` of the run's
    tenant and the recipient's set whose id is the tenant id (None when the run has no tenant or the set does
    not exist)."""

    environment_default: Mapping[str, Any]
    recipient_default: Mapping[str, Any]
    tenant_default: Mapping[str, Any] | None = None
    recipient_tenant: Mapping[str, Any] | None = None


def effective_preferences(layers: PreferenceLayers) -> dict[str, Any]:
    """The one set the run evaluates, merged per Knock's hierarchy; it shares no object with `layers`."""
    if layers.tenant_default is None and layers.recipient_tenant is None:
        if not layers.environment_default and not layers.recipient_default:
            return {}  # most recipients of a fan-out have set nothing
        merged = merge_preference_sets(dict(layers.environment_default), dict(layers.recipient_default))
    else:
        merged = merge_preference_sets(
            merge_preference_sets(dict(layers.environment_default), dict(layers.tenant_default or {})),
            dict(layers.recipient_tenant or {}),
        )
        commercial = layers.recipient_default.get(COMMERCIAL_SUBSCRIBED)
        if commercial is not None:
            merged[COMMERCIAL_SUBSCRIBED] = commercial
    # The merge hands back the layers' own nested objects, and a caller may keep a layer (the environment
    # default) for many runs.
    return copy.deepcopy(merged)


@dataclass(frozen=True)
class SendContext:
    """What preferences look at in one channel step's send. `channel_type` is one of `email`, `sms`, `push`,
    `chat`, `in_app_feed` and `http`; `commercial` is the workflow's `settings.is_commercial`."""

    workflow_key: str
    categories: Sequence[str]
    channel_type: str
    channel_id: str
    commercial: bool
    override_preferences: bool


@dataclass(frozen=True)
class PreferenceDecision:
    """Whether the send may go ahead. When it may not, `reason` names the preference that blocked it:
    `commercial_unsubscribed`, `category:<key>`, `workflow:<key>`, `channel:<id>`, `channel_type:<type>`,
    the last two prefixed with `workflow:<key>/` or `category:<key>/` when set inside that entry, or
    `conditions:<name>`, with one of those names (or `commercial_subscribed`), when the preference's
    conditions do not hold."""

    allowed: bool
    reason: str | None


_ALLOWED = PreferenceDecision(allowed=True, reason=None)


@dataclass(frozen=True)
class _Preference:
    value: Any
    name: str
    off_reason: str | None = None
    """The reason when `value` is `false`, if not `name`."""


def _entry(section: Any, key: str) -> Any:
    # A section merged from a `null` is None, and counts as unset like an absent one.
    return section.get(key) if isinstance(section, Mapping) else None


def _channel_preference(scope: Mapping[str, Any], context: SendContext, prefix: str) -> _Preference:
    channel = _entry(scope.get("channels"), context.channel_id)
    if channel is not None:
        return _Preference(channel, f"{prefix}channel:{context.channel_id}")
    channel_type = _entry(scope.get("channel_types"), context.channel_type)
    return _Preference(channel_type, f"{prefix}channel_type:{context.channel_type}")


def _applicable(preferences: Mapping[str, Any], context: SendContext) -> Iterator[_Preference]:
    if context.commercial:
        yield _Preference(
            preferences.get(COMMERCIAL_SUBSCRIBED), COMMERCIAL_SUBSCRIBED, "commercial_unsubscribed"
        )
    categories = preferences.get("categories")
    for category in context.categories:
        yield _Preference(_entry(categories, category), f"category:{category}")
    workflow = _entry(preferences.get("workflows"), context.workflow_key)
    yield _Preference(workflow, f"workflow:{context.workflow_key}")
    yield _channel_preference(preferences, context, "")
    if isinstance(workflow, Mapping):
        yield _channel_preference(workflow, context, f"workflow:{context.workflow_key}/")
    for category in context.categories:
        setting = _entry(categories, category)
        if isinstance(setting, Mapping):
            yield _channel_preference(setting, context, f"category:{category}/")


async def evaluate_preferences(
    preferences: Mapping[str, Any], context: SendContext, conditions_hold: ConditionsHold
) -> PreferenceDecision:
    """Whether the step described by `context` may send under `preferences`, the run's effective set."""
    if context.override_preferences or not preferences:
        return _ALLOWED
    applicable = list(_applicable(preferences, context))
    for preference in applicable:
        if preference.value is False:
            return PreferenceDecision(allowed=False, reason=preference.off_reason or preference.name)
    # A condition may need a lookup (audience membership), so none runs while a boolean already blocks.
    for preference in applicable:
        conditions = _entry(preference.value, "conditions")
        if conditions and not await conditions_hold(conditions):
            return PreferenceDecision(allowed=False, reason=f"conditions:{preference.name}")
    return _ALLOWED
