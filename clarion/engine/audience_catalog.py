"""The audiences of each environment as rules (`clarion.store.membership_rules.MembershipRulebook`), and
pushing audience files to environments.

Which dynamic audiences an environment has is cached for `cache_seconds`, like the current workflows
(`clarion.engine.workflow_catalog`), whose audience-entry workflows complete the rules: a write of users in
an environment without dynamic audiences costs one cached lookup and stays the single statement it was.
The lookups are made before the writer's transaction opens.

A push checks every audience file, refuses one that would change an existing audience's type, commits the
documents to each environment, and then computes the memberships of its dynamic audiences over all its
users, a chunk of users per transaction with their rows share-locked (so an identify of one of them
waits, then follows the audience itself). Those memberships fire no workflow: entering is a change of the
user. A process that looked the environment up just before the push follows users with the old rules until
its cache expires, so the push also enqueues, in the transaction that commits the documents, a
`audience_recompute` job that computes the memberships again once every cache has expired; should the
pushing process stop before its own computation, that job does it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from clarion.engine.audience_definition import AudienceDefinition, AudienceDefinitionError, parse_audience
from clarion.engine.audience_files import AudienceFilesError, LoadedAudience
from clarion.engine.audience_rules import DynamicAudience, EnvironmentAudiences, evaluation_order
from clarion.engine.folder_problems import FileProblem
from clarion.engine.workflow_catalog import WorkflowCatalog
from clarion.expiring_lookups import ExpiringLookups
from clarion.jobs.engines.base import QueueEngine
from clarion.jobs.job import DEFAULT_QUEUE, Job, JobRecord
from clarion.store.audiences import (
    AudienceCommit,
    AudienceType,
    audience_types,
    commit_audiences,
    dynamic_audiences,
)
from clarion.store.clock import utcnow
from clarion.store.db import Database
from clarion.store.membership_rules import NO_RULES, MembershipRules
from clarion.store.recipient_resolution import RecipientKey, load_recipients
from clarion.store.users import user_ids_after

logger = logging.getLogger(__name__)

RECOMPUTE_JOB = "audience_recompute"
USERS_PER_TRANSACTION = 500
"""Users whose memberships one transaction of a recomputation brings up to date."""
LATE_WRITE_SECONDS = 30.0
"""How long a write of users that looked the rules up before a push may still take to commit: the
longest database bound of a process (`Settings.job_db_timeout`)."""
CACHED_ENVIRONMENTS = 10_000


class AudienceCatalog:
    def __init__(
        self,
        database: Database,
        workflows: WorkflowCatalog,
        queue: QueueEngine,
        *,
        cache_seconds: float = 2.0,
    ) -> None:
        self.database = database
        self.workflows = workflows
        self.queue = queue
        self.cache_seconds = cache_seconds
        self._dynamic: ExpiringLookups[str, tuple[DynamicAudience, ...]] = ExpiringLookups(
            self._look_up_dynamic, cache_seconds, CACHED_ENVIRONMENTS
        )

    async def rules(self, environment_id: str, *, adding_members: bool = False) -> MembershipRules:
        dynamic = await self._dynamic.get(environment_id)
        if not dynamic and not adding_members:
            return NO_RULES  # nothing to follow: the common case, which must cost nothing more
        entries = await self.workflows.audience_entries(environment_id)
        return EnvironmentAudiences(environment_id, dynamic, entries, self.queue)

    async def _look_up_dynamic(self, environment_id: str) -> tuple[DynamicAudience, ...]:
        async with self.database.reader.connect() as connection:
            documents = await dynamic_audiences(connection, environment_id)
        definitions: list[AudienceDefinition] = []
        for key, document in documents.items():
            try:
                definitions.append(parse_audience(document, key))
            except AudienceDefinitionError as exc:
                # Checked at push, so only a release that tightened the rules gets here; the audience's
                # members stay as they are rather than every write of a user failing.
                logger.error(
                    "dynamic audience %r of environment %s no longer parses: %s", key, environment_id, exc
                )
        return evaluation_order(definitions)

    async def push(
        self, environment_ids: Sequence[str], loaded: Sequence[LoadedAudience]
    ) -> dict[str, list[AudienceCommit]]:
        """Commit the audiences to each environment and compute the memberships of its dynamic ones;
        nothing is committed anywhere when one would change an existing audience's type
        (`AudienceFilesError`). Returns each environment's commits."""
        await self._refuse_type_changes(environment_ids, loaded)
        documents = [audience.to_store() for audience in loaded]
        results: dict[str, list[AudienceCommit]] = {}
        for environment_id in environment_ids:
            async with self.database.writer.begin() as connection:
                commits = await commit_audiences(connection, environment_id, documents)
                recompute = any(c.changed and c.type is AudienceType.DYNAMIC for c in commits)
                if recompute:
                    await self.queue.insert(connection, self._recompute_job(environment_id))
            self._dynamic.forget(environment_id)
            if recompute:
                await self.recompute(environment_id)
            results[environment_id] = commits
        return results

    async def _refuse_type_changes(
        self, environment_ids: Sequence[str], loaded: Sequence[LoadedAudience]
    ) -> None:
        problems: dict[str, FileProblem] = {}
        async with self.database.reader.connect() as connection:
            for environment_id in environment_ids:
                found = await audience_types(connection, environment_id, [a.definition.key for a in loaded])
                for audience in loaded:
                    existing = found.get(audience.definition.key)
                    if existing is not None and existing is not audience.definition.type:
                        problems[audience.definition.key] = FileProblem(
                            audience.path,
                            "type",
                            f"the audience exists as a {existing} one; its type cannot change",
                        )
        if problems:
            raise AudienceFilesError(list(problems.values()))

    def _recompute_job(self, environment_id: str) -> Job:
        return Job(
            kind=RECOMPUTE_JOB,
            queue=DEFAULT_QUEUE,
            args={"environment_id": environment_id},
            scheduled_at=utcnow() + timedelta(seconds=self.cache_seconds + LATE_WRITE_SECONDS),
        )

    async def recompute(self, environment_id: str) -> None:
        """Bring every user's memberships of the environment's dynamic audiences in line with its
        properties, firing nothing."""
        rules = EnvironmentAudiences(
            environment_id, await self._look_up_dynamic(environment_id), {}, self.queue
        )
        if not rules.follows_users:
            return
        after = 0
        while True:
            async with self.database.writer.begin() as connection:
                chunk = await user_ids_after(connection, environment_id, after, USERS_PER_TRANSACTION)
                if not chunk:
                    return
                found = await load_recipients(
                    connection,
                    environment_id,
                    [RecipientKey.user(user_id) for _, user_id in chunk],
                    lock=True,
                )
                await rules.follow(connection, list(found.values()), fire=False)
            after = chunk[-1][0]

    async def run_recompute(self, job: JobRecord) -> None:
        """The `audience_recompute` job."""
        await self.recompute(job.args["environment_id"])
