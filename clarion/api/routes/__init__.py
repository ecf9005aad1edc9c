"""One module per Knock resource; each exposes `routes`. The app mounts them in this order."""

from __future__ import annotations

from types import ModuleType

from clarion.api.routes import (
    audiences,
    bulk_operations,
    channel_data,
    feeds,
    messages,
    objects,
    preferences,
    subscriptions,
    tenants,
    users,
    workflow_recipient_runs,
    workflows,
)

ROUTE_MODULES: list[ModuleType] = [
    users,
    objects,
    channel_data,
    preferences,
    tenants,
    subscriptions,
    audiences,
    bulk_operations,
    workflows,
    messages,
    feeds,
    workflow_recipient_runs,
]
