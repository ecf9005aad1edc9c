"""One module per Knock resource; each exposes `routes`. The app mounts them in this order."""

from __future__ import annotations

from types import ModuleType

from clarion.api.routes import users

ROUTE_MODULES: list[ModuleType] = [users]
