"""Frozen documents refuse every change, read and encode as plain JSON does, and are what a trigger's runs
share: a change attempted through one run fails and leaves the other recipients' messages as they were."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from clarion.engine.frozen import FrozenDict, FrozenList, freeze
from clarion.engine.run_scope import RunContext, load_contexts
from clarion.engine.templates import TemplateRenderer
from clarion.engine.workflow_definition import WorkflowDefinition
from clarion.store import json_codec
from clarion.store.workflow_runs import RunRecord
from tests.conftest import EnvFixture, feed_channel_id, push_workflow, run_workflow_jobs

DOCUMENT = {"post": {"title": "Hello", "tags": ["b", "a", "b"]}, "n": 12345678901234567890, "none": None}

CHANGES: dict[str, Callable[[Any], object]] = {
    "set": lambda d: d.__setitem__("k", 1),
    "delete": lambda d: d.__delitem__("post"),
    "update": lambda d: d.update(k=1),
    "|=": lambda d: d.__ior__({"k": 1}),
    "setdefault": lambda d: d.setdefault("k", 1),
    "pop": lambda d: d.pop("post"),
    "popitem": lambda d: d.popitem(),
    "clear": lambda d: d.clear(),
}
LIST_CHANGES: dict[str, Callable[[Any], object]] = {
    "set": lambda items: items.__setitem__(0, "x"),
    "set a slice": lambda items: items.__setitem__(slice(0, 1), ["x"]),
    "delete": lambda items: items.__delitem__(0),
    "append": lambda items: items.append("x"),
    "extend": lambda items: items.extend(["x"]),
    "+=": lambda items: items.__iadd__(["x"]),
    "*=": lambda items: items.__imul__(2),
    "insert": lambda items: items.insert(0, "x"),
    "remove": lambda items: items.remove("a"),
    "pop": lambda items: items.pop(),
    "clear": lambda items: items.clear(),
    "sort": lambda items: items.sort(),
    "reverse": lambda items: items.reverse(),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_frozen_object_refuses_every_change_at_any_depth(change: Callable[[Any], object]) -> None:
    frozen = freeze({**DOCUMENT, "inner": DOCUMENT})
    for document in (frozen, frozen["post"], frozen["inner"]["post"]):
        before = dict(document)
        with pytest.raises(TypeError, match="cannot be changed"):
            change(document)
        assert document == before


@pytest.mark.parametrize("change", LIST_CHANGES.values(), ids=LIST_CHANGES.keys())
def test_a_frozen_array_refuses_every_change(change: Callable[[Any], object]) -> None:
    tags = freeze(DOCUMENT)["post"]["tags"]
    with pytest.raises(TypeError, match="cannot be changed"):
        change(tags)
    assert tags == ["b", "a", "b"]


def test_a_frozen_document_equals_encodes_and_renders_as_the_plain_one() -> None:
    frozen = freeze(DOCUMENT)
    assert frozen == DOCUMENT and isinstance(frozen, dict) and isinstance(frozen["post"]["tags"], list)
    assert json_codec.dumps(frozen) == json_codec.dumps(DOCUMENT)
    assert json.dumps(frozen) == json.dumps(DOCUMENT)
    plain = {key: value for key, value in DOCUMENT.items() if key != "n"}
    assert json_codec.dumps(freeze(plain)) == json_codec.dumps(plain)  # orjson's path
    renderer = TemplateRenderer()
    # Liquid's filters over arrays make new ones rather than change theirs.
    source = (
        "{{ data.post.title }} {{ data.post.tags | sort | join: ',' }} {{ data.post.tags | reverse | join }}"
        " {{ data.post.tags | uniq | size }} {{ data.post.tags | concat: data.post.tags | size }}"
        " {% for tag in data.post.tags reversed %}{{ tag }}{% endfor %} {{ data | json }} {{ vars | json }}"
    )
    assert renderer.render(source, {"data": frozen, "vars": FrozenDict()}) == renderer.render(
        source, {"data": DOCUMENT, "vars": {}}
    )
    assert frozen["post"]["tags"] == ["b", "a", "b"]


def test_a_copy_of_a_frozen_document_is_a_plain_one_to_change() -> None:
    frozen = freeze(DOCUMENT)
    for document in (copy.copy(frozen), copy.deepcopy(frozen), pickle.loads(pickle.dumps(frozen))):
        assert type(document) is dict and document == DOCUMENT
        document["k"] = 1
    deep = copy.deepcopy(frozen)
    deep["post"]["tags"].append("c")
    assert type(copy.copy(frozen["post"]["tags"])) is list
    assert frozen == DOCUMENT


def test_freezing_keeps_what_is_frozen_already() -> None:
    frozen = freeze(DOCUMENT)
    assert freeze(frozen) is frozen
    merged = FrozenDict({**frozen, **freeze({"extra": [1]})})
    assert merged["post"] is frozen["post"] and type(merged["extra"]) is FrozenList


async def test_a_change_through_one_run_of_a_trigger_reaches_no_other_recipient(
    env: EnvFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that tried to change, in place, the data, actor or tenant it shares with the trigger's other
    runs (as an update-data step must not) fails, and every recipient's message renders what was sent."""
    refused: list[str] = []

    async def load_contexts_then_change(
        connection: AsyncConnection,
        environment_id: str,
        runs: Sequence[RunRecord],
        definition: WorkflowDefinition,
        now: datetime,
    ) -> list[RunContext]:
        contexts = await load_contexts(connection, environment_id, runs, definition, now)
        first, second = contexts[0], contexts[1]
        assert first.run.data is second.run.data
        actor, tenant = first.actor_wire, first.tenant_wire
        assert actor is second.actor_wire and tenant is second.tenant_wire
        assert actor is not None and tenant is not None
        attempts: dict[str, Callable[[], object]] = {
            "data": lambda: first.run.data.update(post={"title": "Changed"}),
            "data.post": lambda: first.run.data["post"].__setitem__("title", "Changed"),
            "data.post.tags": lambda: first.run.data["post"]["tags"].append("changed"),
            "own data.post": lambda: contexts[2].run.data["post"].__setitem__("title", "Changed"),
            "actor": lambda: actor.__setitem__("name", "Changed"),
            "tenant": lambda: tenant.__setitem__("name", "Changed"),
            "settings": lambda: first.run.settings.__setitem__("sandbox_mode", True),
        }
        for name, attempt in attempts.items():
            with pytest.raises(TypeError):
                attempt()
            refused.append(name)
        return contexts

    monkeypatch.setattr("clarion.engine.run_executor.load_contexts", load_contexts_then_change)
    body = "{{ data.post.title }} {{ data.post.tags | join }} by {{ actor.name }} at {{ tenant.name }}"
    step = {
        "ref": "feed",
        "type": "channel",
        "channel_key": "in-app-feed",
        "template": {"markdown_body": body},
    }
    await push_workflow(env, tmp_path, "shared", {"steps": [step]})
    response = await env.post(
        "/v1/workflows/shared/trigger",
        json={
            "recipients": [{"id": "ann"}, {"id": "bob"}, {"id": "cy", "$trigger_data": {"own": True}}],
            "actor": {"id": "dee", "name": "Dee"},
            "tenant": {"id": "acme", "name": "Acme"},
            "data": {"post": {"title": "Hello", "tags": ["a", "b"]}},
        },
    )
    assert response.status_code == 200, response.text
    await run_workflow_jobs(env.runtime)
    assert refused == ["data", "data.post", "data.post.tags", "own data.post", "actor", "tenant", "settings"]
    for user_id in ("ann", "bob", "cy"):
        feed = await env.get(f"/v1/users/{user_id}/feeds/{feed_channel_id(env.runtime)}")
        assert feed.status_code == 200, feed.text
        [entry] = feed.json()["entries"]
        assert entry["blocks"][0]["content"] == "Hello a b by Dee at Acme"
        assert entry["data"] == {
            "post": {"title": "Hello", "tags": ["a", "b"]},
            **({"own": True} if user_id == "cy" else {}),
        }
