"""Where a run is in its workflow: a path through the steps, which may lead inside nested step lists.

A position is a tuple of indexes, alternately into a step list and into a step's nested lists
(`StepDefinition.nested`): `(2,)` is the workflow's third step; `(2, 1, 0)` the first step of the second
list nested in it (its second branch). The run's row stores it as text, `"2.1.0"`; a top-level position is
the step's index alone, as runs recorded before steps could nest store it.

A position may point just past the end of a list: where a run that has finished a list's last step, or
waits after it (a delay that is a workflow's last step holds the run open until it is over), goes on
from. `settle` turns such a position into the next step to execute, or None when the run has reached its
end: past the workflow's last step, or past the last step of a list that terminates the run.
"""

from __future__ import annotations

from collections.abc import Sequence

from clarion.engine.step_definition import StepDefinition

Position = tuple[int, ...]


def parse_position(text: str) -> Position:
    if "." not in text:  # a step of the workflow's own list, as nearly every run of a fan-out is at
        return (int(text),)
    return tuple(int(part) for part in text.split("."))


def format_position(position: Position) -> str:
    return ".".join(map(str, position))


def _steps_at(steps: Sequence[StepDefinition], position: Position) -> Sequence[StepDefinition]:
    """The step list that `position`'s last index points into."""
    for depth in range(0, len(position) - 1, 2):
        steps = steps[position[depth]].nested[position[depth + 1]].steps
    return steps


def step_at(steps: Sequence[StepDefinition], position: Position) -> StepDefinition:
    """The step at `position`, which `settle` has made one."""
    return _steps_at(steps, position)[position[-1]]


def next_position(position: Position) -> Position:
    """The position after `position`'s step, in the same list (maybe just past its end)."""
    return (*position[:-1], position[-1] + 1)


def nested_position(position: Position, index: int) -> Position:
    """The first step of the nested list `index` of the step at `position`."""
    return (*position, index, 0)


def settle(steps: Sequence[StepDefinition], position: Position) -> Position | None:
    """The step a run at `position` executes next: `position` itself when it names a step; past a nested
    list's end, the step after the one holding the list, unless the list terminates the run; None when
    the run has reached its end."""
    if len(position) == 1:  # a step of the workflow's own list, as nearly every run of a fan-out is at
        return position if position[0] < len(steps) else None
    while position[-1] >= len(_steps_at(steps, position)):
        if len(position) == 1:
            return None
        holder = position[:-2]
        if step_at(steps, holder).nested[position[-2]].terminates:
            return None
        position = next_position(holder)
    return position
