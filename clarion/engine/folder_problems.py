"""What is wrong with a folder in the Knock CLI's layout (workflows, audiences): each problem names the file
and the field inside it, and a push refuses the folder whole with every problem listed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

READONLY_KEY = "__readonly"
"""The Knock CLI's own bookkeeping inside a resource's JSON, which is no part of the resource."""


@dataclass(frozen=True)
class FileProblem:
    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        return f"{self.path}{where}: {self.message}"


class FolderError(ValueError):
    """One or more resources of a folder are invalid; `problems` lists each."""

    def __init__(self, problems: list[FileProblem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems
