"""Read-only JSON documents: what a trigger hands to all its runs, frozen so that no run can change it under
the others.

A trigger's runs share its data, actor, tenant and settings by reference, and a fan-out renders a template
once for the runs that give it the same objects (`clarion.engine.templates.SharedRenders`); a change made
in place through one run would show in every other recipient's messages. `freeze` copies a document into
`FrozenDict` and `FrozenList`, which refuse every change with a `TypeError`. They are `dict` and `list`
subclasses, so JSON encoders, Liquid, and `isinstance` checks take them as they take the plain types.
A step that changes a run's data makes a new document (`{**run.data, **changes}`); a copy (`copy.copy`,
`dict(...)`, `{**...}`) is an ordinary, changeable one.
"""

from __future__ import annotations

from typing import Any, NoReturn


def _refuse(document: object) -> NoReturn:
    raise TypeError(f"a shared {type(document).__name__} cannot be changed; change a copy instead")


class FrozenDict(dict[str, Any]):
    """A JSON object that refuses changes."""

    __slots__ = ()

    def __setitem__(self, *_: Any) -> NoReturn:
        _refuse(self)

    def __delitem__(self, *_: Any) -> NoReturn:
        _refuse(self)

    def __ior__(self, *_: Any) -> NoReturn:  # type: ignore[misc]
        _refuse(self)

    def clear(self) -> NoReturn:
        _refuse(self)

    def pop(self, *_: Any) -> NoReturn:
        _refuse(self)

    def popitem(self) -> NoReturn:
        _refuse(self)

    def setdefault(self, *_: Any) -> NoReturn:
        _refuse(self)

    def update(self, *_: Any, **__: Any) -> NoReturn:
        _refuse(self)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        # Copies and pickles come back as plain dicts: rebuilding a FrozenDict key by key would be refused.
        return dict, (dict(self),)


class FrozenList(list[Any]):
    """A JSON array that refuses changes."""

    __slots__ = ()

    def __setitem__(self, *_: Any) -> NoReturn:
        _refuse(self)

    def __delitem__(self, *_: Any) -> NoReturn:
        _refuse(self)

    def __iadd__(self, *_: Any) -> NoReturn:  # type: ignore[misc]
        _refuse(self)

    def __imul__(self, *_: Any) -> NoReturn:  # type: ignore[misc]
        _refuse(self)

    def append(self, *_: Any) -> NoReturn:
        _refuse(self)

    def extend(self, *_: Any) -> NoReturn:
        _refuse(self)

    def insert(self, *_: Any) -> NoReturn:
        _refuse(self)

    def remove(self, *_: Any) -> NoReturn:
        _refuse(self)

    def pop(self, *_: Any) -> NoReturn:
        _refuse(self)

    def clear(self) -> NoReturn:
        _refuse(self)

    def sort(self, *_: Any, **__: Any) -> NoReturn:
        _refuse(self)

    def reverse(self) -> NoReturn:
        _refuse(self)

    def __copy__(self) -> list[Any]:
        return list(self)

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        return list, (list(self),)


def freeze(value: Any) -> Any:
    """`value` with every object and array in it, at any depth, frozen; scalars, and documents frozen
    already, are kept as they are."""
    if isinstance(value, FrozenDict | FrozenList):
        return value
    if isinstance(value, dict):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return FrozenList([freeze(item) for item in value])
    return value


def freeze_object(value: dict[str, Any]) -> FrozenDict:
    """`freeze` for a JSON object, typed as one."""
    frozen: FrozenDict = freeze(value)
    return frozen
