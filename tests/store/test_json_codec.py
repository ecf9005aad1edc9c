from __future__ import annotations

import pytest

from clarion.store import json_codec

DOCUMENTS = [
    {"a": 1, "b": [1.5, None, True], "c": {"d": "é"}},
    {"big": 123456789012345678901234567890, "negative": -(2**70)},
    {"id": "1234567890123456789", "float": 0.12345678901234568},
    {"huge_float": 1e308},
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_documents_round_trip_exactly(document: dict[str, object]) -> None:
    assert json_codec.loads(json_codec.dumps(document)) == document


def test_long_integers_decode_exactly_and_huge_floats_do_not_fail() -> None:
    assert json_codec.loads(b'{"n": 98765432109876543210}')["n"] == 98765432109876543210
    assert json_codec.loads('{"n": 1e400}')["n"] == float("inf")
