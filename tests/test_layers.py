"""The layering rules of STYLE.md, checked on the source: the HTTP edge never touches SQL, dialect-specific
imports stay in the modules that own the dialects, and no grab-bag modules exist."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clarion"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules() -> dict[str, set[str]]:
    return {str(path.relative_to(PACKAGE.parent)): _imports(path) for path in PACKAGE.rglob("*.py")}


def _importers(prefix: str) -> set[str]:
    return {
        module
        for module, imports in _modules().items()
        if any(name == prefix or name.startswith(prefix + ".") for name in imports)
    }


def test_the_http_edge_never_imports_sqlalchemy() -> None:
    assert {module for module in _importers("sqlalchemy") if module.startswith("clarion/api/")} == set()


def test_dialect_specific_sqlalchemy_stays_in_the_dialect_modules() -> None:
    allowed = {
        "clarion/store/dialect.py",
        "clarion/jobs/engines/postgres.py",
        "clarion/jobs/engines/sqlite.py",
    }
    offenders = {
        module
        for module in _importers("sqlalchemy.dialects")
        if module not in allowed and not module.startswith("clarion/store/migrations/")
    }
    assert offenders == set()


def test_raw_asyncpg_is_confined_to_its_owners() -> None:
    # The queue's LISTEN connection and the store's direct reader (see docs/decisions.md).
    assert _importers("asyncpg") <= {"clarion/jobs/engines/postgres.py", "clarion/store/direct.py"}


def test_no_grab_bag_modules() -> None:
    names = {path.stem for path in PACKAGE.rglob("*.py")}
    assert names.isdisjoint({"utils", "helpers", "common", "misc"})
