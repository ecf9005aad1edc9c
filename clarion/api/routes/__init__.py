"""One module per Knock resource; each exposes `routes`. The app mounts them in this order."""

from __future__ import annotations

from types import ModuleType

from clarion.api.routes import (
    audiences,
    bulk_operations,
    channel_data,
    objects,
    preferences,
    subscriptions,
    tenants,
    users,
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
]
