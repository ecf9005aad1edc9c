"""The update audience step: adds the run's recipient to a static audience, or removes it from one, as a
member with the run's tenant (none when the run has none), the membership that the run's later
`is_audience_member` conditions look for. Adding an existing member, or removing one that is not,
succeeds with no change, as in Knock. An `audience_updated` run event records each run's change.

As Knock has it, the step names one static audience by key (Knock picks it from a list, so it is no
Liquid), acts on the current recipient only, and may not add members to the audience whose new members
run its own workflow (refused at push). A recipient that is not a user skips the step
(`recipient_not_a_user`); so, for every run at it, does an audience the environment does not have
(`audience_missing`) or one that is dynamic (`audience_dynamic`), whose members follow their users'
properties.

The members of all the runs at the step are added or removed together, in the pass's transaction, by the
functions `POST` and `DELETE /v1/audiences/{key}/members` use (`clarion.store.audiences`): a statement
per kind whatever the number of runs, each new membership firing the audience's entry workflows in the
transaction that commits the runs' move past the step, and dynamic audiences that ask about this one
following. Runs of one member are taken as if one after another: the first adds (or removes), the others
find it done.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from clarion.engine.step_definition import (
    MAX_AUDIENCE_KEY_LENGTH,
    DefinitionError,
    DefinitionParser,
    StepDefinition,
    condition_group,
    settings_object,
    text_field,
)
from clarion.engine.step_protocol import Outcomes, RunAtStep, StepOutcome, StepServices, StepType
from clarion.errors import InvalidInputError, NotFoundError
from clarion.store.audiences import MemberKey, add_static_members, remove_static_members
from clarion.store.workflow_runs import RunEvent


class AudienceAction(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, kw_only=True)
class UpdateAudienceStep(StepDefinition):
    type: ClassVar[str] = "update_audience"

    audience_key: str
    action: AudienceAction

    @property
    def adds_audience_members(self) -> bool:
        return self.action is AudienceAction.ADD


def parse_update_audience_step(
    parser: DefinitionParser, data: dict[str, Any], ref: str, field: str
) -> UpdateAudienceStep:
    settings = settings_object(data, field, "`audience_key` and `action`")
    where = f"{field}.settings"
    unknown = sorted(set(settings) - {"audience_key", "action"})
    if unknown:
        raise DefinitionError(f"{where}.{unknown[0]}", "is not a setting of an update audience step")
    key = text_field(settings, "audience_key", where, required=True)
    assert key is not None
    if not 1 <= len(key) <= MAX_AUDIENCE_KEY_LENGTH:
        raise DefinitionError(f"{where}.audience_key", f"must be 1 to {MAX_AUDIENCE_KEY_LENGTH} characters")
    action = settings.get("action")
    if action not in tuple(AudienceAction):
        raise DefinitionError(f"{where}.action", f"must be one of {', '.join(AudienceAction)}")
    if action == AudienceAction.ADD and key == parser.trigger_audience:
        # Knock's rule: a member the step added would enter the workflow's own audience and run it again.
        raise DefinitionError(
            f"{where}.audience_key",
            "is the audience whose new members run this workflow; a step cannot add members to it",
        )
    return UpdateAudienceStep(
        ref=ref,
        conditions=condition_group(data, field),
        audience_key=key,
        action=AudienceAction(action),
    )


async def execute_update_audience_steps(
    services: StepServices, step: UpdateAudienceStep, runs: Sequence[RunAtStep]
) -> Outcomes:
    outcomes: dict[int, StepOutcome] = {}
    members: dict[int, MemberKey] = {}
    for index, (context, _) in enumerate(runs):
        run = context.run
        if run.recipient.is_user:
            members[index] = MemberKey(run.recipient.id, run.tenant)
        else:
            outcomes[index] = StepOutcome.skipped(step.ref, step.type, "recipient_not_a_user")
    if members:
        try:
            changed = await _change(services, step, runs[0].context.run.environment_id, members.values())
        except (NotFoundError, InvalidInputError) as refused:
            reason = "audience_missing" if isinstance(refused, NotFoundError) else "audience_dynamic"
            for index in members:
                outcomes[index] = StepOutcome.skipped(
                    step.ref, step.type, reason, audience_key=step.audience_key
                )
        else:
            for index, member in members.items():
                outcomes[index] = _changed(step, member, member in changed)
                changed.discard(member)  # the member's later runs find it done
    return [outcomes[index] for index in range(len(runs))]


async def _change(
    services: StepServices, step: UpdateAudienceStep, environment_id: str, members: Iterable[MemberKey]
) -> set[MemberKey]:
    """Add or remove `members`; returns those whose membership changed. Raises `NotFoundError` for an
    audience the environment does not have and `InvalidInputError` for a dynamic one, before writing."""
    connection, rules, key = services.connection, services.audience_rules, step.audience_key
    distinct = list(dict.fromkeys(members))
    if step.action is AudienceAction.ADD:
        added = await add_static_members(connection, rules, environment_id, key, distinct)
        return {MemberKey(membership.user_id, membership.tenant) for membership in added}
    return set(await remove_static_members(connection, rules, environment_id, key, distinct))


def _changed(step: UpdateAudienceStep, member: MemberKey, changed: bool) -> StepOutcome:
    data = {
        "audience_key": step.audience_key,
        "action": step.action.value,
        "user": member.user_id,
        "tenant": member.tenant,
        "changed": changed,
    }
    event = RunEvent("audience_updated", step_ref=step.ref, step_type=step.type, data=data)
    return StepOutcome(events=[event])


STEP_TYPE = StepType(UpdateAudienceStep.type, parse_update_audience_step, execute_update_audience_steps)
