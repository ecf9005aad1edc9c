"""A throttle step's settings (Knock's `WorkflowThrottleStep.settings`), checked at push, and what they mean
for one run at one moment: which throttle it counts against and when a window it opens would close. The
counting itself is the store's (`clarion.store.throttles`).

Parsed with Knock's rules: the window is a fixed `throttle_window` Duration or the value found at
`throttle_window_field_path` (a timestamp, a Duration from now or a window rule,
`clarion.engine.dynamic_windows`), one of the two, at most 31 days; `throttle_limit` runs pass per window
(default 1); `throttle_key` splits the recipient's throttle further, as a path or Liquid
(`clarion.engine.step_keys`). A setting Knock does not define is refused by name.

For a run, a dynamic window that resolves to nothing, to a moment not in the future or past 31 days, and a
key that is missing or not shorter than 64 characters once JSON- and URL-encoded, skip the step, as Knock
skips a throttle it cannot resolve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from clarion.engine.dynamic_windows import after_seconds, recipient_zone, window_end
from clarion.engine.field_paths import lookup
from clarion.engine.settings_fields import SettingsReader
from clarion.engine.step_keys import key_value
from clarion.engine.templates import TemplateRenderer
from clarion.store.recipient_resolution import RecipientKey
from clarion.store.throttles import ThrottleEntry, ThrottleIdentity

MAX_THROTTLE_WINDOW_SECONDS = 31 * 86400
MAX_THROTTLE_LIMIT = 2**31 - 1
KEY_LENGTH_LIMIT = 64
"""A throttle key's JSON text, URL-encoded, must be shorter than this (Knock's rule)."""
THROTTLE_SETTINGS = frozenset(
    {"throttle_key", "throttle_window", "throttle_window_field_path", "throttle_limit"}
)


@dataclass(frozen=True)
class ThrottleSettings:
    key: str | None
    """`throttle_key` as written: a path or Liquid; None without one."""
    window_seconds: float | None
    window_field_path: str | None
    limit: int

    def window_end(self, variables: Mapping[str, Any], now: datetime) -> datetime | None:
        """When a window this run opened at `now` would close; None when the dynamic window is missing or
        invalid, which skips the step."""
        if self.window_field_path is None:
            end = after_seconds(now, self.window_seconds or 0.0)
        else:
            end = window_end(lookup(variables, self.window_field_path), now, recipient_zone(variables))
        if end is None or not now < end or (end - now).total_seconds() > MAX_THROTTLE_WINDOW_SECONDS:
            return None
        return end

    def key_value(self, variables: Mapping[str, Any], renderer: TemplateRenderer, *, name: str) -> str | None:
        """The run's throttle key: '' without a `throttle_key`; None when it is missing or too long, which
        skips the step."""
        if self.key is None:
            return ""
        value = key_value(self.key, variables, renderer, name=name)
        if value is None or len(quote(json.dumps(value, ensure_ascii=False))) >= KEY_LENGTH_LIMIT:
            return None
        return value

    def entry(
        self,
        *,
        environment_id: str,
        workflow_key: str,
        step_ref: str,
        recipient: RecipientKey,
        key: str,
        window_ends_at: datetime,
    ) -> ThrottleEntry:
        """What the store counts for the run: its throttle (per workflow step, recipient and key) and, should
        it open a window, when that window closes (`window_end`'s answer)."""
        identity = ThrottleIdentity(environment_id, workflow_key, step_ref, recipient, key)
        return ThrottleEntry(identity=identity, limit=self.limit, window_ends_at=window_ends_at)


def parse_throttle_settings(
    data: Any, field: str, *, renderer: TemplateRenderer | None = None
) -> ThrottleSettings:
    """The throttle step settings `data` (the step's `settings` object), found at `field`; raises
    `DefinitionError` naming the offending field. With a `renderer`, a Liquid `throttle_key` is checked to
    parse."""
    read = SettingsReader(data, field, THROTTLE_SETTINGS)
    window = read.duration("throttle_window", MAX_THROTTLE_WINDOW_SECONDS)
    path = read.text("throttle_window_field_path")
    if (window is None) == (path is None):
        read.refuse("", "needs one of `throttle_window` and `throttle_window_field_path`")
    return ThrottleSettings(
        key=read.key("throttle_key", renderer),
        window_seconds=window,
        window_field_path=path,
        limit=read.whole("throttle_limit", 1, MAX_THROTTLE_LIMIT, 1),
    )
