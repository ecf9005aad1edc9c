"""Random ids: KSUIDs of 27 base-62 characters that decode to their creation second and 16 random bytes;
version 4 UUIDs."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime

from clarion.store.ids import ALPHABET, EPOCH, encode, new_ksuid, new_uuid, stable_ksuid


def decode(text: str) -> int:
    value = 0
    for character in text:
        value = value * 62 + ALPHABET.index(character)
    return value


def test_encoding_round_trips_at_the_edges_and_at_random() -> None:
    chance = random.Random(7)
    values = [0, 1, 61, 62, 62**9 - 1, 62**9, 2**160 - 1, *(chance.getrandbits(160) for _ in range(200))]
    for value in values:
        text = encode(value)
        assert len(text) == 27
        assert decode(text) == value


def test_a_new_ksuid_carries_its_second_and_sorts_after_older_ones() -> None:
    before = int(time.time())
    made = new_ksuid()
    after = int(time.time())
    assert before - EPOCH <= decode(made) >> 128 <= after - EPOCH
    assert encode((before - EPOCH - 1) << 128 | (2**128 - 1)) < made
    assert len({new_ksuid() for _ in range(1000)}) == 1000


def test_new_uuids_are_distinct_version_4_uuids() -> None:
    texts = [new_uuid() for _ in range(1000)]
    made = [uuid.UUID(text) for text in texts]
    assert [str(value) for value in made] == texts  # the canonical form: lowercase, dashed
    assert {value.version for value in made} == {4}
    assert {value.variant for value in made} == {uuid.RFC_4122}
    assert len(set(made)) == 1000


def test_a_stable_ksuid_carries_its_moment_and_depends_on_its_name() -> None:
    moment = datetime(2026, 12, 2, 3, 4, 5, 678, tzinfo=UTC)
    made = stable_ksuid(moment, "run:0")
    assert made == stable_ksuid(moment, "run:0")
    assert made != stable_ksuid(moment, "run:1")
    assert decode(made) >> 128 == int(moment.timestamp()) - EPOCH
