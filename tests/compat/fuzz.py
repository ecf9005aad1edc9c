"""What the contract fuzzes share: the checks each answer must pass and schemathesis's bounded,
deterministic generation (a fixed seed, the document's own examples, five fuzzed examples per operation
with valid and invalid data, no stateful phase)."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.compat.live_server import LiveServer

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


def fuzz_config(*, coverage: bool) -> schemathesis.Config:
    """`coverage` adds schemathesis's coverage phase: boundary and invalid values of every property."""
    return schemathesis.Config.from_dict(
        {
            "seed": 20240522,
            "generation": {"max-examples": 5, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": coverage}},
        }
    )


def send_and_check(case: Case[Any], live_server: LiveServer, secret_key: str) -> None:
    """Send the generated request to the live server with the key, and hold its answer to `CHECKS`."""
    case.call_and_validate(
        base_url=live_server.url, headers={"Authorization": f"Bearer {secret_key}"}, checks=CHECKS
    )
