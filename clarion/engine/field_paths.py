"""Field paths: the dotted names by which a step's settings point into a run's variables (`data.page_id`,
`recipient.batch_until`, `vars.batch_window`), as batch and throttle keys and dynamic windows do.

A path starts with a namespace of the run's variables (`data`, `recipient`, `actor`, `tenant`, `vars`);
one that starts with anything else is read under `data`, as Knock reads a batch key of `page_id` as
`data.page_id`. Lists are indexed by number (`data.items.0`). A path that leads nowhere reads as None:
deciding whether that is an error is the step's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAMESPACES = frozenset({"data", "recipient", "actor", "tenant", "vars"})
"""The namespaces a settings path may start with."""


def namespaced(path: str) -> str:
    """`path` with its namespace: `data.` put in front of a path that names none."""
    return path if path.split(".", 1)[0] in NAMESPACES else f"data.{path}"


def lookup(variables: Mapping[str, Any], path: str) -> Any:
    """The value at `path` (see `namespaced`) in `variables`, or None where the path leads nowhere."""
    value: Any = variables
    for part in namespaced(path).split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
