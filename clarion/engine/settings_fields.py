"""Reading a function step's `settings` object at push: each field checked for its type and range, errors
raised as `DefinitionError` naming the field by its dotted path (`steps.1.settings.batch_window.value`).

Knock's settings are nullable: a field set to null reads as left out. A field the step does not define is
refused, so that a misspelt setting fails the push instead of silently doing nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any, NoReturn, TypeVar, overload

from clarion.engine.step_definition import DefinitionError, duration_seconds
from clarion.engine.step_keys import is_liquid
from clarion.engine.templates import TemplateError, TemplateRenderer

E = TypeVar("E", bound=StrEnum)


class SettingsReader:
    def __init__(self, data: Any, field: str, known: Collection[str]) -> None:
        if not isinstance(data, Mapping):
            raise DefinitionError(field, "must be an object")
        self.data = data
        self.field = field
        unknown = sorted(name for name in data if name not in known)
        if unknown:
            self.refuse(str(unknown[0]), "is not a setting of this step")

    def refuse(self, name: str, message: str) -> NoReturn:
        raise DefinitionError(f"{self.field}.{name}" if name else self.field, message)

    def text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.refuse(name, "must be a non-empty string")
        return value

    def key(self, name: str, renderer: TemplateRenderer | None) -> str | None:
        """A key setting: a path, or Liquid that must parse (checked when a renderer is given); an empty
        one reads as none."""
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.refuse(name, "must be a string")
        if renderer is not None and is_liquid(value):
            try:
                renderer.parse(value, name=f"{self.field}.{name}")
            except TemplateError as exc:
                raise DefinitionError(f"{self.field}.{name}", str(exc)) from exc
        return value

    def duration(self, name: str, max_seconds: float) -> float | None:
        """A Duration, longer than nothing and at most `max_seconds`, in seconds."""
        value = self.data.get(name)
        if value is None:
            return None
        seconds = duration_seconds(value, f"{self.field}.{name}")
        if seconds <= 0:
            self.refuse(f"{name}.value", "must be more than 0")
        if seconds > max_seconds:
            self.refuse(name, f"must be at most {max_seconds / 86400:g} days")
        return seconds

    def choice(self, name: str, kind: type[E], default: E) -> E:
        value = self.data.get(name)
        if value is None:
            return default
        if value not in kind.__members__.values():
            self.refuse(name, f"must be one of {', '.join(kind)}")
        return kind(value)

    @overload
    def whole(self, name: str, low: int, high: int) -> int | None: ...

    @overload
    def whole(self, name: str, low: int, high: int, default: int) -> int: ...

    def whole(self, name: str, low: int, high: int, default: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.refuse(name, f"must be a whole number from {low} to {high}")
        return value
