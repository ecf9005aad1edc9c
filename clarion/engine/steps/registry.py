"""Every step type Clarion runs, by the name `workflow.json` gives it. A new step type is a module in this
package with its `STEP_TYPE` (`clarion.engine.step_protocol.StepType`), and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clarion.engine.step_protocol import StepType
from clarion.engine.steps import (
    batch,
    branch,
    channel,
    delay,
    http_fetch,
    throttle,
    trigger_workflow,
    update_audience,
    update_data,
    update_object,
    update_tenant,
    update_user,
)

STEP_TYPES: Mapping[str, StepType[Any]] = {
    step_type.name: step_type
    for step_type in (
        batch.STEP_TYPE,
        branch.STEP_TYPE,
        channel.STEP_TYPE,
        delay.STEP_TYPE,
        http_fetch.STEP_TYPE,
        throttle.STEP_TYPE,
        trigger_workflow.STEP_TYPE,
        update_audience.STEP_TYPE,
        update_data.STEP_TYPE,
        update_object.STEP_TYPE,
        update_tenant.STEP_TYPE,
        update_user.STEP_TYPE,
    )
}

NOT_YET_SUPPORTED_STEPS = (
    "wait_for_event",
    "random_cohort",
    "ai_agent",
)
"""Knock step types that Clarion does not run yet: a workflow using one is refused at push."""
