"""The update data step: `settings.data`, rendered (`clarion.engine.json_templates`), is shallow-merged into
the run's `data`, as Knock does: its top-level keys are added or replace the run's, nested objects
included whole. Every later step sees the merged data, in this pass and after the run waits (the run's
stored `data` changes with its checkpoint); the change is recorded as a `data_updated` run event. A render
that fails fails the step, which its job retries and then halts the run, as Knock halts it.

Runs that had the same data and render the same changes get one new document between them, so that the
steps after this one still render once for all of them (`clarion.engine.templates.SharedRenders`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from clarion.engine.frozen import FrozenDict, freeze_object
from clarion.engine.json_templates import JsonTemplate, parse_json_template, render_json_template
from clarion.engine.step_definition import (
    DefinitionError,
    DefinitionParser,
    StepDefinition,
    condition_group,
    settings_object,
)
from clarion.engine.step_protocol import Outcomes, RunAtStep, StepOutcome, StepServices, StepType
from clarion.engine.templates import SharedRenders
from clarion.store import json_codec
from clarion.store.workflow_runs import RunEvent


@dataclass(frozen=True, kw_only=True)
class UpdateDataStep(StepDefinition):
    type: ClassVar[str] = "update_data"

    data: JsonTemplate


def parse_update_data_step(
    parser: DefinitionParser, data: dict[str, Any], ref: str, field: str
) -> UpdateDataStep:
    settings = settings_object(data, field, "`data`")
    if settings.get("data") is None:
        raise DefinitionError(f"{field}.settings.data", "is required")
    return UpdateDataStep(
        ref=ref,
        conditions=condition_group(data, field),
        data=parse_json_template(parser, settings["data"], f"{field}.settings.data"),
    )


async def execute_update_data_steps(
    services: StepServices, step: UpdateDataStep, runs: Sequence[RunAtStep]
) -> Outcomes:
    renders = SharedRenders(services.renderer)
    # (the old data's identity, the changes as JSON) -> (the old data, kept alive for its identity, the new)
    merged: dict[tuple[int, str], tuple[dict[str, Any], FrozenDict]] = {}
    outcomes: list[StepOutcome | Exception] = []
    for context, _ in runs:
        try:
            changes = render_json_template(step.data, renders, context.template_scope(), f"{step.ref}.data")
            old = context.run.data
            key = (id(old), json_codec.dumps(changes))
            if key not in merged:
                merged[key] = (old, FrozenDict({**old, **freeze_object(changes)}))
            outcomes.append(
                StepOutcome(
                    events=[
                        RunEvent(
                            "data_updated",
                            step_ref=step.ref,
                            step_type=UpdateDataStep.type,
                            data={"data": changes},
                        )
                    ],
                    data=merged[key][1],
                )
            )
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


STEP_TYPE = StepType(UpdateDataStep.type, parse_update_data_step, execute_update_data_steps)
