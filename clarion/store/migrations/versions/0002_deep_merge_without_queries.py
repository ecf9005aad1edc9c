"""PostgreSQL's deep merge without a query per level: nested keys found by a JSON path, merged in a loop.

The first version aggregated `jsonb_each` of the patch at every level, a query inside the function for
each object merged, which made the merge cost more than the rest of an identify's upsert. This one
finds the keys to recurse into with `jsonb_path_query_array` and loops over them in plain expressions,
which PL/pgSQL evaluates without starting a query. Same results (tests/store/test_deep_merge.py).

Revision ID: 0002
Revises: 0001
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEEP_MERGE_FUNCTION = """
CREATE OR REPLACE FUNCTION clarion_deep_merge(base jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  merged jsonb;
  nested jsonb;
  entry jsonb;
BEGIN
  IF patch IS NULL THEN
    RETURN base;
  END IF;
  IF jsonb_typeof(base) IS DISTINCT FROM 'object' OR jsonb_typeof(patch) <> 'object' THEN
    RETURN patch;
  END IF;
  merged := base || patch;
  nested := jsonb_path_query_array(patch, 'strict $.keyvalue() ? (@.value.type() == "object")');
  FOR i IN 0 .. jsonb_array_length(nested) - 1 LOOP
    entry := nested -> i;
    IF jsonb_typeof(base -> (entry ->> 'key')) = 'object' THEN
      merged := jsonb_set(
        merged, ARRAY[entry ->> 'key'], clarion_deep_merge(base -> (entry ->> 'key'), entry -> 'value')
      );
    END IF;
  END LOOP;
  RETURN merged;
END
$$
"""


def _first_revision() -> Any:
    """Revision 0001's module, whose function the downgrade restores (its file name is no identifier)."""
    path = Path(__file__).with_name("0001_initial_schema.py")
    spec = importlib.util.spec_from_file_location("clarion_revision_0001", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DEEP_MERGE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_first_revision()._DEEP_MERGE_FUNCTION)
