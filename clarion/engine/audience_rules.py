"""One environment's audience rules (`clarion.store.membership_rules.MembershipRules`): dynamic audiences
following the users written, and new memberships firing their audiences' entry workflows.

Following a batch of users costs a fixed number of statements whatever its size: one read of their
memberships without a tenant in the audiences that matter, then each user's segments evaluated in memory
(`clarion.engine.conditions`, on `recipient.*`: the user's properties and id), then one delete of the
memberships left, one insert per audience entered (which tells which are new,
`clarion.store.audiences.add_memberships`) and one insert of all the entry jobs
(`clarion.engine.audience_entry`), all in the writer's transaction. Audiences are evaluated in the order
their `is_audience_member` conditions ask for (an audience after those it names), so that each sees the
others' memberships as this write leaves them; a cycle, which a push refuses within a folder but separate
pushes could still make, is evaluated in key order. Time-relative conditions (`is_timestamp_before_now`,
"7 days ago") are decided when the user is written, not again as time passes. Where rules come from, and
how memberships are computed after a push, lives in `clarion.engine.audience_catalog`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.engine.audience_definition import AudienceDefinition
from clarion.engine.audience_entry import entry_jobs
from clarion.engine.conditions import ConditionGroup, ConditionScope, conditions_hold
from clarion.engine.workflow_catalog import CurrentWorkflow
from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import Job
from clarion.store.audiences import (
    MemberKey,
    NewMembership,
    add_memberships,
    drop_tenantless_memberships,
    tenantless_memberships,
)
from clarion.store.clock import utcnow
from clarion.store.recipients import RecipientRecord


@dataclass(frozen=True)
class DynamicAudience:
    key: str
    segments: ConditionGroup
    references: frozenset[str]


def evaluation_order(definitions: Iterable[AudienceDefinition]) -> tuple[DynamicAudience, ...]:
    """The dynamic audiences of `definitions`, each after the dynamic audiences its conditions name."""
    pending = {
        definition.key: DynamicAudience(definition.key, definition.segments, definition.references)
        for definition in definitions
        if definition.segments is not None
    }
    ordered: list[DynamicAudience] = []
    while pending:
        ready = [key for key, audience in sorted(pending.items()) if not audience.references & pending.keys()]
        for key in ready or [min(pending)]:
            ordered.append(pending.pop(key))
    return tuple(ordered)


class EnvironmentAudiences:
    def __init__(
        self,
        environment_id: str,
        dynamic: tuple[DynamicAudience, ...],
        entries: Mapping[str, tuple[CurrentWorkflow, ...]],
        queue: QueueEngine,
    ) -> None:
        self.environment_id = environment_id
        self.dynamic = dynamic
        self.entries = entries
        self.queue = queue
        self._consulted = frozenset(
            {audience.key for audience in dynamic}
            | {key for audience in dynamic for key in audience.references}
        )
        """The audiences whose memberships following a user reads: the dynamic ones and those they name."""

    @property
    def follows_users(self) -> bool:
        return bool(self.dynamic)

    async def members_added(
        self, connection: AsyncConnection, audience_key: str, added: Sequence[NewMembership]
    ) -> None:
        workflows = self.entries.get(audience_key, ())
        await self.queue.insert_all(
            connection, entry_jobs(self.environment_id, audience_key, workflows, added)
        )

    async def users_written(self, connection: AsyncConnection, users: Sequence[RecipientRecord]) -> None:
        await self.follow(connection, users, fire=True)

    async def follow(
        self, connection: AsyncConnection, users: Sequence[RecipientRecord], *, fire: bool
    ) -> None:
        """Bring the users' memberships of the dynamic audiences in line with their properties; with
        `fire`, the audiences they enter run their entry workflows (a recomputation after a push does not:
        entering is a change of the user, not of the audience)."""
        if not self.dynamic or not users:
            return
        latest = {user.id: user for user in users}
        members = await tenantless_memberships(connection, self.environment_id, latest, self._consulted)
        entered: defaultdict[str, list[MemberKey]] = defaultdict(list)
        left: list[tuple[str, str]] = []
        now = utcnow()
        for user in latest.values():
            scope = ConditionScope(
                variables={"recipient": {**user.properties, "id": user.id}},
                now=now,
                is_audience_member=_membership_of(members, user.id),
            )
            for audience in self.dynamic:
                membership = (audience.key, user.id)
                holds = await conditions_hold(audience.segments, scope)
                if holds and membership not in members:
                    members.add(membership)
                    entered[audience.key].append(MemberKey(user.id, None))
                elif not holds and membership in members:
                    members.discard(membership)
                    left.append(membership)
        await drop_tenantless_memberships(connection, self.environment_id, left)
        jobs: list[Job] = []
        for audience_key in sorted(entered):
            added = await add_memberships(
                connection, self.environment_id, audience_key, entered[audience_key]
            )
            if fire:
                workflows = self.entries.get(audience_key, ())
                jobs.extend(entry_jobs(self.environment_id, audience_key, workflows, added))
        await self.queue.insert_all(connection, jobs)


def _membership_of(members: set[tuple[str, str]], user_id: str) -> Callable[[str], Awaitable[bool]]:
    async def is_member(audience_key: str) -> bool:
        return (audience_key, user_id) in members

    return is_member
