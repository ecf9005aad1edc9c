"""Reading audiences from a folder in the Knock CLI's layout:

    audiences/
      premium-users/
        audience.json          {"name": "Premium users", "type": "dynamic", "segments": [...]}

Each sub-folder holding an `audience.json` is one audience whose key is the folder's name (checked by
`clarion.engine.audience_definition`). `__readonly` sections, which a pull writes, are dropped. Every problem
is reported with the file it is in and the field, and all of a folder's audiences are checked before any is
accepted, so a push is all or nothing; dynamic audiences whose `is_audience_member` conditions name each
other in a cycle are refused too. Workflows are read the same way by `clarion.engine.workflow_files`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clarion.engine.audience_definition import AudienceDefinition, AudienceDefinitionError, parse_audience
from clarion.engine.folder_problems import READONLY_KEY, FileProblem, FolderError
from clarion.store.audiences import AudienceDocument
from clarion.store.workflows import document_sha

AUDIENCE_JSON = "audience.json"


class AudienceFilesError(FolderError):
    """One or more audiences of a folder are invalid; `problems` lists each."""


@dataclass(frozen=True)
class LoadedAudience:
    definition: AudienceDefinition
    document: dict[str, Any]
    """The audience's JSON as it is stored, keyed by its folder's name."""
    path: Path

    def to_store(self) -> AudienceDocument:
        return AudienceDocument(
            self.definition.key, self.definition.type, self.document, document_sha(self.document)
        )


def audience_folders(root: Path) -> Iterator[Path]:
    """The audience folders under `root`, by name: `root` itself when it is one."""
    if (root / AUDIENCE_JSON).is_file():
        yield root
        return
    for folder in sorted(root.iterdir()):
        if (folder / AUDIENCE_JSON).is_file():
            yield folder


def read_audience(folder: Path) -> LoadedAudience:
    """One audience folder, checked; raises `AudienceFilesError`."""
    source = folder / AUDIENCE_JSON
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AudienceFilesError([FileProblem(source, "", f"cannot be read as JSON: {exc}")]) from None
    try:
        definition = parse_audience(raw, folder.name)
    except AudienceDefinitionError as exc:
        raise AudienceFilesError([FileProblem(source, exc.field, exc.message)]) from None
    document = {name: value for name, value in raw.items() if name != READONLY_KEY}
    return LoadedAudience(definition, {**document, "key": folder.name}, source)


def _cycle(audiences: Mapping[str, LoadedAudience]) -> list[str] | None:
    """A cycle among the audiences' `is_audience_member` references, if any: its keys, in order."""
    state: dict[str, str] = {}

    def visit(key: str, path: list[str]) -> list[str] | None:
        state[key] = "visiting"
        for reference in sorted(audiences[key].definition.references):
            if reference not in audiences:
                continue
            if state.get(reference) == "visiting":
                return [*path[path.index(reference) :], reference]
            if reference not in state:
                found = visit(reference, [*path, reference])
                if found is not None:
                    return found
        state[key] = "done"
        return None

    for key in sorted(audiences):
        if key not in state:
            found = visit(key, [key])
            if found is not None:
                return found
    return None


def read_audiences(root: Path) -> list[LoadedAudience]:
    """Every audience under `root`, all checked before any is returned; raises `AudienceFilesError` with
    the problems of every invalid one."""
    if not root.is_dir():
        raise AudienceFilesError([FileProblem(root, "", "is not a folder")])
    loaded: list[LoadedAudience] = []
    problems: list[FileProblem] = []
    for folder in audience_folders(root):
        try:
            loaded.append(read_audience(folder))
        except AudienceFilesError as exc:
            problems.extend(exc.problems)
    cycle = _cycle({audience.definition.key: audience for audience in loaded})
    if cycle is not None:
        message = f"audiences cannot depend on their own membership: {' → '.join(cycle)}"
        problems.append(
            FileProblem(next(a.path for a in loaded if a.definition.key == cycle[0]), "segments", message)
        )
    if problems:
        raise AudienceFilesError(problems)
    return loaded
