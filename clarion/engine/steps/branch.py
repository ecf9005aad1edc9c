"""The branch step: the run goes on with the steps of the first branch whose conditions hold, else with
the default branch, the last, which has none. A branch that `terminates` ends the run at its end; one that
does not goes on with the step after the branch step. Branches nest (at most `MAX_NESTING` deep), and
their conditions see everything a step's do, audience membership and earlier steps' messages included.

As Knock has it: each branch but the last must have conditions, the last must have none, a branch step
has at most ten branches, and no conditions of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from clarion.engine.conditions import ConditionGroup, conditions_hold
from clarion.engine.step_definition import (
    DefinitionError,
    DefinitionParser,
    NestedSteps,
    StepDefinition,
    condition_group,
    text_field,
)
from clarion.engine.step_protocol import (
    EnterBranch,
    Outcomes,
    RunAtStep,
    StepOutcome,
    StepServices,
    StepType,
)
from clarion.store.workflow_runs import RunEvent

MAX_BRANCHES = 10


@dataclass(frozen=True)
class Branch:
    name: str
    conditions: ConditionGroup | None
    """None for the default branch, the last."""
    steps: NestedSteps


@dataclass(frozen=True, kw_only=True)
class BranchStep(StepDefinition):
    type: ClassVar[str] = "branch"

    branches: tuple[Branch, ...]

    @property
    def nested(self) -> Sequence[NestedSteps]:
        return [branch.steps for branch in self.branches]


def parse_branch_step(parser: DefinitionParser, data: dict[str, Any], ref: str, field: str) -> BranchStep:
    if condition_group(data, field) is not None:
        raise DefinitionError(f"{field}.conditions", "a branch step has no conditions of its own")
    branches = data.get("branches")
    if not isinstance(branches, list) or not 1 <= len(branches) <= MAX_BRANCHES:
        raise DefinitionError(
            f"{field}.branches", f"must be a list of 1 to {MAX_BRANCHES} branches, the default one last"
        )
    return BranchStep(
        ref=ref,
        conditions=None,
        branches=tuple(
            _branch(parser, branch, f"{field}.branches.{index}", default=index == len(branches) - 1)
            for index, branch in enumerate(branches)
        ),
    )


def _branch(parser: DefinitionParser, data: Any, field: str, *, default: bool) -> Branch:
    if not isinstance(data, dict):
        raise DefinitionError(field, "must be a branch object with `name`, `conditions` and `steps`")
    conditions = condition_group(data, field)
    if default and conditions is not None:
        raise DefinitionError(
            f"{field}.conditions", "the last branch is the default one and has no conditions"
        )
    if not default and conditions is None:
        raise DefinitionError(
            f"{field}.conditions", "every branch but the default one, the last, needs conditions"
        )
    terminates = data.get("terminates", False)
    if not isinstance(terminates, bool):
        raise DefinitionError(f"{field}.terminates", "must be a boolean")
    return Branch(
        name=text_field(data, "name", field) or ("Default" if default else ""),
        conditions=conditions,
        steps=NestedSteps(parser.nested_steps(data.get("steps", []), f"{field}.steps"), terminates),
    )


async def execute_branch_steps(
    services: StepServices, step: BranchStep, runs: Sequence[RunAtStep]
) -> Outcomes:
    outcomes: list[StepOutcome | Exception] = []
    for run in runs:
        try:
            outcomes.append(await _choose(step, run))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


async def _choose(step: BranchStep, run: RunAtStep) -> StepOutcome:
    for index, branch in enumerate(step.branches):
        if await conditions_hold(branch.conditions, run.scope):
            taken = {"branch": branch.name, "branch_index": index}
            return StepOutcome(
                events=[RunEvent("branch_taken", step_ref=step.ref, step_type="branch", data=taken)],
                step_result=taken,
                then=EnterBranch(index),
            )
    raise AssertionError("the default branch has no conditions, so one branch is always taken")


STEP_TYPE = StepType("branch", parse_branch_step, execute_branch_steps)
