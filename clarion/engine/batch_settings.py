"""A batch step's settings (Knock's `WorkflowBatchStep.settings`), checked at push, and what they mean for
one run at one moment: when the batch it would open closes, which batch it belongs to, and what it hands
the store (`clarion.store.batches`).

Parsed with Knock's rules: a window is a fixed `batch_window` Duration, or the value found at
`batch_until_field_path` (a timestamp, a Duration from now or a window rule,
`clarion.engine.dynamic_windows`), or both, the Duration then an offset after the moment found (Knock's
relative window). A `sliding` window needs `batch_window_extension_limit`: each activity then moves the
close to its own window's end, never past the batch's opening plus the limit (a limit shorter than the
window shortens it; past already, the batch closes at once). `batch_items_max_limit` (2 to 1000) closes
the batch when that many activities are in it; `batch_items_render_limit` (1 to 100, default 10) bounds
`activities` and `actors`, the first (`batch_order` `asc`, the default) or last (`desc`) ones;
`batch_execution_mode` `flush_leading` lets the run that opens a batch go on at once, outside it.
`workflow_version_mode` is `pinned` when left out, as Knock reads configs that omit it: a batch per
workflow version; `latest` makes it one per step, across versions. A setting Knock does not define is
refused by name rather than ignored.

Windows are bounded at 365 days, like delays (Knock documents no bound for batches): a dynamic value that
resolves to nothing, to a moment not in the future, or past that bound skips the step, as Knock skips a
batch whose dynamic window is missing or invalid. A missing `batch_key` value (its path leads nowhere, or
its Liquid renders empty) batches the run with the recipient's other keyless runs, as Liquid's empty
rendering would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from clarion.engine.dynamic_windows import after_seconds, recipient_zone, window_end
from clarion.engine.field_paths import lookup
from clarion.engine.settings_fields import SettingsReader
from clarion.engine.step_keys import key_value
from clarion.engine.templates import TemplateRenderer
from clarion.store.batches import BatchIdentity, BatchJoin
from clarion.store.recipient_resolution import RecipientKey

MAX_BATCH_WINDOW_SECONDS = 365 * 86400
DEFAULT_RENDER_LIMIT = 10
BATCH_SETTINGS = frozenset(
    {
        "batch_key",
        "batch_window",
        "batch_until_field_path",
        "batch_window_type",
        "batch_window_extension_limit",
        "batch_items_max_limit",
        "batch_items_render_limit",
        "batch_order",
        "batch_execution_mode",
        "workflow_version_mode",
    }
)


class BatchWindowType(StrEnum):
    FIXED = "fixed"
    SLIDING = "sliding"


class BatchOrder(StrEnum):
    ASC = "asc"
    """The first activities added are rendered."""
    DESC = "desc"
    """The last activities added are rendered (still oldest first)."""


class BatchExecutionMode(StrEnum):
    ACCUMULATE = "accumulate"
    FLUSH_LEADING = "flush_leading"


class WorkflowVersionMode(StrEnum):
    PINNED = "pinned"
    LATEST = "latest"


@dataclass(frozen=True)
class BatchSettings:
    key: str | None
    """`batch_key` as written: a path or Liquid (`clarion.engine.step_keys`); None without one."""
    window_seconds: float | None
    """`batch_window`: the window, or with `until_field_path` the offset after the moment found there."""
    until_field_path: str | None
    window_type: BatchWindowType
    extension_limit_seconds: float | None
    items_max_limit: int | None
    render_limit: int
    order: BatchOrder
    execution_mode: BatchExecutionMode
    version_mode: WorkflowVersionMode

    @property
    def sliding(self) -> bool:
        return self.window_type is BatchWindowType.SLIDING

    def window_end(self, variables: Mapping[str, Any], now: datetime) -> datetime | None:
        """When a batch this run opened at `now` would close (and, in a sliding window, where this run's
        activity moves an open batch's close to); None when the dynamic window is missing or invalid,
        which skips the step."""
        offset = self.window_seconds or 0.0
        if self.until_field_path is None:
            end = after_seconds(now, offset)
        else:
            found = window_end(lookup(variables, self.until_field_path), now, recipient_zone(variables))
            end = None if found is None else after_seconds(found, offset)
        if end is None or not now < end or (end - now).total_seconds() > MAX_BATCH_WINDOW_SECONDS:
            return None
        return end

    def key_value(self, variables: Mapping[str, Any], renderer: TemplateRenderer, *, name: str) -> str:
        """The run's batch key: '' without a `batch_key` or when its value is missing."""
        if self.key is None:
            return ""
        return key_value(self.key, variables, renderer, name=name) or ""

    def identity(
        self,
        *,
        environment_id: str,
        workflow_key: str,
        version_id: str,
        step_ref: str,
        recipient: RecipientKey,
        key: str,
    ) -> BatchIdentity:
        """The batch a run joins: per recipient and key, and per workflow version (`pinned`, where parallel
        batch steps share a batch, as in Knock) or per step (`latest`, across versions)."""
        pinned = self.version_mode is WorkflowVersionMode.PINNED
        return BatchIdentity(
            environment_id=environment_id,
            workflow_key=workflow_key,
            recipient=recipient,
            step_ref="" if pinned else step_ref,
            version_id=version_id if pinned else "",
            key=key,
        )

    def join(
        self,
        *,
        run_id: str,
        identity: BatchIdentity,
        actor: RecipientKey | None,
        data: Mapping[str, Any],
        closes_at: datetime,
    ) -> BatchJoin:
        """What the store needs to put the run into its batch; `closes_at` is `window_end`'s answer."""
        return BatchJoin(
            run_id=run_id,
            identity=identity,
            actor=actor,
            data=data,
            closes_at=closes_at,
            extension_limit_seconds=self.extension_limit_seconds if self.sliding else None,
            max_items=self.items_max_limit,
            flush_leading=self.execution_mode is BatchExecutionMode.FLUSH_LEADING,
        )


def parse_batch_settings(data: Any, field: str, *, renderer: TemplateRenderer | None = None) -> BatchSettings:
    """The batch step settings `data` (the step's `settings` object), found at `field` (`steps.1.settings`);
    raises `DefinitionError` naming the offending field. With a `renderer`, a Liquid `batch_key` is
    checked to parse."""
    read = SettingsReader(data, field, BATCH_SETTINGS)
    window = read.duration("batch_window", MAX_BATCH_WINDOW_SECONDS)
    until = read.text("batch_until_field_path")
    if window is None and until is None:
        read.refuse("", "needs `batch_window` or `batch_until_field_path`")
    window_type = read.choice("batch_window_type", BatchWindowType, BatchWindowType.FIXED)
    limit = read.duration("batch_window_extension_limit", MAX_BATCH_WINDOW_SECONDS)
    if window_type is BatchWindowType.SLIDING and limit is None:
        read.refuse("batch_window_extension_limit", "is required with a sliding window")
    return BatchSettings(
        key=read.key("batch_key", renderer),
        window_seconds=window,
        until_field_path=until,
        window_type=window_type,
        extension_limit_seconds=limit,
        items_max_limit=read.whole("batch_items_max_limit", 2, 1000),
        render_limit=read.whole("batch_items_render_limit", 1, 100, DEFAULT_RENDER_LIMIT),
        order=read.choice("batch_order", BatchOrder, BatchOrder.ASC),
        execution_mode=read.choice("batch_execution_mode", BatchExecutionMode, BatchExecutionMode.ACCUMULATE),
        version_mode=read.choice("workflow_version_mode", WorkflowVersionMode, WorkflowVersionMode.PINNED),
    )
