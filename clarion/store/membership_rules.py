"""What a write that creates users, changes their properties or adds audience members owes the audiences,
done inside that write's own transaction: a dynamic audience's members follow their users' properties, and
every new membership fires its audience's entry workflows. Done in the transaction that makes the change,
the memberships and the entry jobs commit with it or not at all.

The rules themselves live in the engine (`clarion.engine.audience_rules`), which evaluates segments and
builds workflow jobs; the stores that write users (`clarion.store.users`, `clarion.store.subscriptions`,
`clarion.store.audiences`) and the trigger's inline identify only call them. A writer asks for an
environment's rules before it opens its transaction, since they may need a lookup, which must not wait
for a pool connection while holding one; then hands them what it wrote. Adding members to a static
audience, or removing them, inside another transaction (a workflow step) goes through
`clarion.store.audiences.add_static_members` (which makes both calls) or `remove_static_members`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.store.recipients import RecipientRecord

if TYPE_CHECKING:
    from clarion.store.audiences import NewMembership


class MembershipRules(Protocol):
    """One environment's audience rules, as they stood when asked for."""

    @property
    def follows_users(self) -> bool:
        """Whether writing a user may change a membership (the environment has dynamic audiences). When
        not, `users_written` does nothing, and a writer may keep a write that needs no transaction."""
        ...

    async def users_written(self, connection: AsyncConnection, users: Sequence[RecipientRecord]) -> None:
        """Users were created or had their properties changed in the caller's transaction, each as it
        stands now (a user given twice: the last): bring the dynamic audiences' memberships up to date,
        and fire the workflows of the audiences they entered."""
        ...

    async def members_added(
        self, connection: AsyncConnection, audience_key: str, added: Sequence[NewMembership]
    ) -> None:
        """Memberships new in the caller's transaction: enqueue the audience's entry workflows, one run
        per workflow and membership."""
        ...


class MembershipRulebook(Protocol):
    async def rules(self, environment_id: str, *, adding_members: bool = False) -> MembershipRules:
        """The environment's rules; `adding_members` when the caller will add memberships itself (and
        so call `members_added`), which needs the entry workflows even without dynamic audiences."""
        ...


class NoRules:
    """For stores built without a rulebook: nothing follows users and no membership fires anything."""

    follows_users = False

    async def users_written(self, connection: AsyncConnection, users: Sequence[RecipientRecord]) -> None:
        return None

    async def members_added(
        self, connection: AsyncConnection, audience_key: str, added: Sequence[NewMembership]
    ) -> None:
        return None

    async def rules(self, environment_id: str, *, adding_members: bool = False) -> MembershipRules:
        return self


NO_RULES = NoRules()
"""The rulebook of a store that keeps no dynamic audiences and fires no workflows (tests of the store
alone); `clarion.runtime` gives every store the engine's."""
