"""The contract between the run executor and the step types (`clarion.engine.steps`).

A step type is a name, a `parse` that checks its settings at push, and an `execute` that takes EVERY run
standing at one step in a pass together, reads and writes for all of them with a statement per kind, and
answers one `StepOutcome` per run (or the exception that run's step raised, which is that run's alone).
What a step reads and writes goes through `StepServices.connection`, the pass's transaction, which also
records where each run got to: what a step did commits with the run's move past it, or not at all.

An outcome says what the step produced (run events, messages, what `refs.<ref>` conditions read, the run's
new `data`, the users, objects and tenants it wrote, jobs to enqueue with the run's checkpoint) and what
the run does next (`then`): go on with the next step, wait until a moment and then go on, wait at this
step and execute it again at a moment (a batch's opener waiting for its window to close), enter one of
the step's nested step lists (a branch), or halt with a reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.channels import ChannelRegistry
from clarion.engine.conditions import ConditionScope
from clarion.engine.outbound_http import OutboundHTTP
from clarion.engine.run_scope import RunContext
from clarion.engine.step_definition import DefinitionParser, StepDefinition
from clarion.engine.templates import TemplateRenderer
from clarion.jobs.job import Job
from clarion.store.membership_rules import NO_RULES, MembershipRules
from clarion.store.messages import NewMessage
from clarion.store.recipients import RecipientRecord
from clarion.store.workflow_runs import RunEvent


@dataclass(frozen=True, slots=True)
class Continue:
    """Go on with the next step."""


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Pause until `moment`, then go on with the next step (a delay)."""

    moment: datetime


@dataclass(frozen=True, slots=True)
class WaitAtStep:
    """Pause until `moment`, then execute this step again (a batch's window)."""

    moment: datetime


@dataclass(frozen=True, slots=True)
class EnterBranch:
    """Go on with the first step of the step's nested list `index` (`StepDefinition.nested`)."""

    index: int


@dataclass(frozen=True, slots=True)
class Halt:
    """End the run here, for `reason` (recorded on the run)."""

    reason: str


Then = Continue | WaitUntil | WaitAtStep | EnterBranch | Halt
CONTINUE = Continue()


@dataclass(slots=True)  # made per run: not frozen, which costs more to build (docs/decisions.md)
class StepOutcome:
    """What one run's step produced, and what the run does next."""

    events: list[RunEvent] = field(default_factory=list)
    messages: list[NewMessage] = field(default_factory=list)
    step_result: dict[str, Any] | None = None
    """Stored under the step's ref in the run's `step_results`."""
    data: dict[str, Any] | None = None
    """The run's data from this step on (`update_data`): a new frozen document, never the old one changed
    (`clarion.engine.frozen`); None leaves the data as it was. Stored with the run's checkpoint."""
    entities: Sequence[RecipientRecord] = ()
    """The users, objects and tenants the step wrote, as they stand after it: every run of the pass that has
    one as its recipient, actor or tenant sees it so from its next step on."""
    jobs: list[Job] = field(default_factory=list)
    """Enqueued in the checkpoint that records the run, and only if it does (a run that moved meanwhile is
    not recorded). One `Job` object in the outcomes of several runs (work the step batched for them: the
    delivery of messages held until the same moment) is enqueued once, when any of them is recorded."""
    then: Then = CONTINUE

    @classmethod
    def skipped(cls, ref: str, step_type: str, reason: str, **data: Any) -> StepOutcome:
        """The step did nothing, for `reason`; the run goes on."""
        return cls(
            events=[
                RunEvent("step_skipped", step_ref=ref, step_type=step_type, data={"reason": reason, **data})
            ],
            step_result={"skipped": reason, "message_ids": []},
        )


class RunAtStep(NamedTuple):
    """A run standing at a step: what it sees, and the scope its conditions are evaluated in."""

    context: RunContext
    scope: ConditionScope


@dataclass(frozen=True, slots=True)
class StepServices:
    """What steps may use, the same for every step of one pass."""

    connection: AsyncConnection
    """The pass's transaction: the runs' checkpoint commits what steps write through it."""
    now: datetime
    channels: ChannelRegistry
    renderer: TemplateRenderer
    prepared: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    """What a step type's `prepare` made for the runs waiting at the step the pass's job was for, by
    (step ref, run id); nothing for other steps."""
    audience_rules: MembershipRules = NO_RULES
    """The environment's audience rules, looked up before the pass's transaction: a step that writes users
    hands them what it wrote (`users_written`), so that dynamic audiences follow."""


@dataclass(frozen=True, slots=True)
class OutsideServices:
    """What a step type's `prepare` may use: no connection, since it runs outside any transaction."""

    now: datetime
    renderer: TemplateRenderer
    http: OutboundHTTP


S = TypeVar("S", bound=StepDefinition)

Outcomes = Sequence[StepOutcome | Exception]


@dataclass(frozen=True)
class StepType(Generic[S]):
    """A step type: its name in `workflow.json`, how its settings are parsed and checked at push, and how
    it executes for all the runs at one of its steps."""

    name: str
    parse: Callable[[DefinitionParser, dict[str, Any], str, str], S]
    """(parser, the step's JSON, its ref, its dotted field) -> the parsed step."""
    execute: Callable[[StepServices, S, Sequence[RunAtStep]], Awaitable[Outcomes]]
    """(services, the step, the runs at it) -> one outcome or exception per run, in their order."""
    prepare: Callable[[OutsideServices, S, Sequence[RunAtStep]], Awaitable[Sequence[Any]]] | None = None
    """For a step that reaches outside (a fetch): run before the pass's transaction by the job of runs
    waiting at the step, for those whose conditions hold; `execute` finds each run's result in
    `StepServices.prepared`. A run that reaches such a step in a pass without it waits at the step
    (`WaitAtStep`), so that its own job prepares it: nothing outside is waited for while the store's
    transaction is open."""


def each_run(
    decide: Callable[[StepServices, S, RunAtStep], StepOutcome],
) -> Callable[[StepServices, S, Sequence[RunAtStep]], Awaitable[Outcomes]]:
    """`execute` for a step type that reads and writes nothing: `decide` for each run, an exception that
    it raises for one run kept in that run's place."""

    async def execute(services: StepServices, step: S, runs: Sequence[RunAtStep]) -> Outcomes:
        outcomes: list[StepOutcome | Exception] = []
        for run in runs:
            try:
                outcomes.append(decide(services, step, run))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    return execute
