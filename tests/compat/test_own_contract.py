"""Contract fuzz against Clarion's own OpenAPI document (`GET /openapi.json`, `clarion.api.openapi`), so that
every checkout runs one, whether or not Knock's document is beside it (`test_contract.py` fuzzes against
that). Schemathesis generates requests from the document and sends them to a live `clarion serve` on each
store, checking that no answer is a 5xx, that every status code is one the document allows and that every
body matches the document's schema for that status, with five generated requests (valid and invalid)
per operation. The document fuzzed is the one the app serves
(`tests/api/test_openapi.py` checks they are equal). Requests carry the secret key of the `development`
environment that `clarion serve` creates.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case

from clarion.api.app import all_routes
from clarion.api.openapi import openapi_document
from tests.compat.fuzz import fuzz_config, send_and_check
from tests.compat.live_server import LiveServer

# Without the coverage phase, which `test_contract.py` runs on Knock's looser document: on Clarion's own,
# whose schemas spell out every nested shape (a tenant's settings, each channel's data), it enumerates
# boundary values of every property and takes minutes per operation.
schema = schemathesis.openapi.from_dict(openapi_document(all_routes()), config=fuzz_config(coverage=False))


@schema.parametrize()
def test_operation_honours_clarions_document(
    case: Case[Any], live_server: LiveServer, development_secret_key: str
) -> None:
    send_and_check(case, live_server, development_secret_key)
