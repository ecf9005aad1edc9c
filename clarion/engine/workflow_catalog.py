"""The workflows an environment can run, as parsed definitions: the current version of a workflow by key
(what a trigger pins), any version by id (what a run executes), and which workflows each audience's new
members trigger (`trigger.audience_key`).

Versions never change, so parsed versions are kept for good (bounded); which version is current, and
whether the workflow is active, is cached for `cache_seconds`, as are each environment's audience-entry
workflows, so a trigger costs no query and a push reaches every process within that time; the triggers
that find an entry expired share one lookup (`clarion.expiring_lookups`). Pushing reads nothing from the
cache: it commits through `clarion.store.workflows` and refreshes this process's entries at once.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clarion.channels import ChannelRegistry
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import WorkflowDefinition, parse_workflow
from clarion.engine.workflow_files import LoadedWorkflow, read_workflows
from clarion.expiring_lookups import ExpiringLookups
from clarion.store.workflows import CommitResult, WorkflowStore

PARSED_VERSIONS = 1_000
CURRENT_ENTRIES = 10_000


@dataclass(frozen=True)
class CurrentWorkflow:
    key: str
    active: bool
    version_id: str
    definition: WorkflowDefinition


class WorkflowCatalog:
    def __init__(
        self,
        store: WorkflowStore,
        channels: ChannelRegistry,
        renderer: TemplateRenderer,
        *,
        cache_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.channels = channels
        self.renderer = renderer
        self._current: ExpiringLookups[tuple[str, str], CurrentWorkflow | None] = ExpiringLookups(
            self._look_up_current, cache_seconds, CURRENT_ENTRIES
        )
        self._versions: OrderedDict[str, WorkflowDefinition] = OrderedDict()
        self._entries: ExpiringLookups[str, Mapping[str, tuple[CurrentWorkflow, ...]]] = ExpiringLookups(
            self._look_up_entries, cache_seconds, CURRENT_ENTRIES
        )

    def _remember(self, version_id: str, definition: WorkflowDefinition) -> None:
        self._versions[version_id] = definition
        self._versions.move_to_end(version_id)
        while len(self._versions) > PARSED_VERSIONS:
            self._versions.popitem(last=False)

    async def current(self, environment_id: str, key: str) -> CurrentWorkflow | None:
        """The workflow's current version, or None when the environment has none by that key (unknown
        keys are remembered too: a burst of triggers of a missing workflow costs one query)."""
        return await self._current.get((environment_id, key))

    async def _look_up_current(self, wanted: tuple[str, str]) -> CurrentWorkflow | None:
        record = await self.store.get(*wanted)
        if record is None:
            return None
        definition = self._parsed(record.current.id, record.current.document)
        return CurrentWorkflow(record.key, record.active, record.current.id, definition)

    async def audience_entries(self, environment_id: str) -> Mapping[str, tuple[CurrentWorkflow, ...]]:
        """Per audience key, the environment's active workflows that its new members trigger."""
        return await self._entries.get(environment_id)

    async def _look_up_entries(self, environment_id: str) -> Mapping[str, tuple[CurrentWorkflow, ...]]:
        entries: defaultdict[str, list[CurrentWorkflow]] = defaultdict(list)
        for record in await self.store.list(environment_id):
            definition = self._parsed(record.current.id, record.current.document)
            if record.active and definition.trigger is not None:
                workflow = CurrentWorkflow(record.key, record.active, record.current.id, definition)
                entries[definition.trigger.audience_key].append(workflow)
        return {key: tuple(workflows) for key, workflows in entries.items()}

    async def definition(self, environment_id: str, version_id: str) -> WorkflowDefinition | None:
        """The definition of a version committed to the environment, or None when it has none by that id.
        (Version ids are unique across environments, so the parsed cache is keyed by id alone.)"""
        parsed = self._versions.get(version_id)
        if parsed is not None:
            return parsed
        version = await self.store.version(environment_id, version_id)
        return None if version is None else self._parsed(version.id, version.document)

    def _parsed(self, version_id: str, document: dict[str, object]) -> WorkflowDefinition:
        parsed = self._versions.get(version_id)
        if parsed is None:
            # Read back as committed: its channels were checked at push time.
            parsed = parse_workflow(document, None, self.renderer)
            self._remember(version_id, parsed)
        return parsed

    async def push_folder(
        self, environment_ids: Sequence[str], folder: Path
    ) -> dict[str, list[CommitResult]]:
        """Read and check every workflow of `folder`, then commit them all to each environment; nothing
        is committed when any workflow is invalid (`WorkflowFilesError`)."""
        return await self.push(environment_ids, read_workflows(folder, self.channels, self.renderer))

    async def push(
        self, environment_ids: Sequence[str], loaded: Sequence[LoadedWorkflow]
    ) -> dict[str, list[CommitResult]]:
        """Commit the workflows to each environment; returns each environment's commit results."""
        results: dict[str, list[CommitResult]] = {}
        for environment_id in environment_ids:
            results[environment_id] = await self.store.commit(environment_id, [w.document for w in loaded])
            for workflow, result in zip(loaded, results[environment_id], strict=True):
                self._remember(result.version.id, workflow.definition)
                self._current.forget((environment_id, workflow.definition.key))
            self._entries.forget(environment_id)
        return results

    def forget(self, environment_id: str, key: str) -> None:
        """Drop the cached current version of one workflow (after it was switched on or off here)."""
        self._current.forget((environment_id, key))
        self._entries.forget(environment_id)
