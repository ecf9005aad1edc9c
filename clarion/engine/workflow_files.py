"""Reading workflows from a folder in the Knock CLI's layout:

    workflows/
      new-comment/
        workflow.json                  {"steps": [{"template": {"markdown_body@": "in_app_1/body.md"}}]}
        in_app_1/body.md

Each sub-folder holding a `workflow.json` is one workflow whose key is the folder's name. A field whose
name ends in `@` holds the path of a file, relative to the workflow's folder and inside it, whose content
replaces the field under the name without the `@`: text as it is, a `.json` file as the JSON it holds (with
its own `@` fields read the same way). `__readonly` sections, which `knock workflow pull` writes, are
dropped. Every problem is reported with the file it is in and the field, and all of a folder's workflows
are checked before any is accepted, so a push is all or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clarion.channels import ChannelRegistry
from clarion.engine.folder_problems import READONLY_KEY, FileProblem, FolderError
from clarion.engine.step_definition import DefinitionError
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import WorkflowDefinition, parse_workflow

WORKFLOW_JSON = "workflow.json"
FILE_MARKER = "@"


class WorkflowFilesError(FolderError):
    """One or more workflows of a folder are invalid; `problems` lists each."""


@dataclass(frozen=True)
class LoadedWorkflow:
    definition: WorkflowDefinition
    document: dict[str, Any]
    """The workflow's JSON with its files inlined: what a version stores."""


class _Inliner:
    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        self.seen: set[Path] = set()

    def inline(self, value: Any, field: str, source: Path) -> Any:
        if isinstance(value, list):
            return [self.inline(item, f"{field}.{index}", source) for index, item in enumerate(value)]
        if not isinstance(value, dict):
            return value
        result: dict[str, Any] = {}
        for name, item in value.items():
            if name == READONLY_KEY:
                continue
            path = f"{field}.{name}" if field else name
            if name.endswith(FILE_MARKER) and len(name) > 1:
                result[name[: -len(FILE_MARKER)]] = self.read(item, path, source)
            else:
                result[name] = self.inline(item, path, source)
        return result

    def read(self, relative: Any, field: str, source: Path) -> Any:
        if not isinstance(relative, str) or Path(relative).is_absolute():
            raise _Problem(source, field, "must be a relative path to a file inside the workflow's folder")
        path = (self.folder / relative).resolve()
        if not path.is_relative_to(self.folder):
            raise _Problem(source, field, f"{relative!r} points outside the workflow's folder")
        if path in self.seen:
            raise _Problem(source, field, f"{relative!r} is referenced twice; each field needs its own file")
        self.seen.add(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise _Problem(source, field, f"{relative!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _Problem(source, field, f"{relative!r} cannot be read: {exc}") from None
        if path.suffix.lower() != ".json":
            return text
        try:
            content = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Problem(path, "", f"is not valid JSON: {exc}") from None
        return self.inline(content, "", path)


class _Problem(Exception):
    def __init__(self, path: Path, field: str, message: str) -> None:
        self.problem = FileProblem(path, field, message)


def workflow_folders(root: Path) -> Iterator[Path]:
    """The workflow folders under `root`, by name: `root` itself when it is one."""
    if (root / WORKFLOW_JSON).is_file():
        yield root
        return
    for folder in sorted(root.iterdir()):
        if (folder / WORKFLOW_JSON).is_file():
            yield folder


def read_workflow(folder: Path, channels: ChannelRegistry, renderer: TemplateRenderer) -> LoadedWorkflow:
    """One workflow folder, checked; raises `WorkflowFilesError`."""
    source = folder / WORKFLOW_JSON
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkflowFilesError([FileProblem(source, "", f"cannot be read as JSON: {exc}")]) from None
    if not isinstance(raw, dict):
        raise WorkflowFilesError([FileProblem(source, "", "must hold a workflow object")])
    try:
        document = _Inliner(folder).inline(raw, "", source)
    except _Problem as exc:
        raise WorkflowFilesError([exc.problem]) from None
    declared = document.get("key")
    if declared is not None and declared != folder.name:
        problem = FileProblem(source, "key", f"is {declared!r} but the folder is named {folder.name!r}")
        raise WorkflowFilesError([problem])
    document["key"] = folder.name
    try:
        definition = parse_workflow(document, channels, renderer)
    except DefinitionError as exc:
        raise WorkflowFilesError([FileProblem(source, exc.field, exc.message)]) from None
    return LoadedWorkflow(definition, document)


def read_workflows(root: Path, channels: ChannelRegistry, renderer: TemplateRenderer) -> list[LoadedWorkflow]:
    """Every workflow under `root`, all checked before any is returned; raises `WorkflowFilesError` with
    the problems of every invalid one."""
    if not root.is_dir():
        raise WorkflowFilesError([FileProblem(root, "", "is not a folder")])
    loaded: list[LoadedWorkflow] = []
    problems: list[FileProblem] = []
    for folder in workflow_folders(root):
        try:
            loaded.append(read_workflow(folder, channels, renderer))
        except WorkflowFilesError as exc:
            problems.extend(exc.problems)
    if problems:
        raise WorkflowFilesError(problems)
    return loaded
