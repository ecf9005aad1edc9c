from __future__ import annotations

import asyncio
import base64

from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error


async def test_identify_creates_then_deep_merges_properties(env: EnvFixture) -> None:
    first = await env.put("/v1/users/u1", json={"name": "Ann", "plan": {"tier": "pro", "seats": 3}})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["__typename"] == "User"
    assert body["id"] == "u1"
    assert body["name"] == "Ann"
    assert body["created_at"] is None
    assert body["updated_at"].endswith("Z")

    second = await env.put(
        "/v1/users/u1", json={"email": "ann@example.com", "plan": {"seats": 5}, "name": None}
    )
    assert second.status_code == 200
    merged = second.json()
    assert merged["plan"] == {"tier": "pro", "seats": 5}
    assert merged["email"] == "ann@example.com"
    assert merged["name"] is None
    assert merged["updated_at"] >= body["updated_at"]

    fetched = await env.get("/v1/users/u1")
    assert fetched.json() == merged


async def test_identify_keeps_caller_created_at(env: EnvFixture) -> None:
    response = await env.put("/v1/users/u1", json={"created_at": "2024-01-02T03:04:05Z"})
    assert response.json()["created_at"] == "2024-01-02T03:04:05Z"


async def test_concurrent_identifies_lose_no_property(env: EnvFixture) -> None:
    await asyncio.gather(*(env.put("/v1/users/racer", json={f"p{i}": i}) for i in range(20)))
    user = (await env.get("/v1/users/racer")).json()
    assert {f"p{i}": i for i in range(20)}.items() <= user.items()


async def test_concurrent_identifies_answer_as_if_one_after_another(env: EnvFixture) -> None:
    await env.put("/v1/users/m", json={"x": {"b": 2}})
    first, second = await asyncio.gather(
        env.put("/v1/users/m", json={"x": 5}), env.put("/v1/users/m", json={"x": {"a": 1}})
    )
    final = (await env.get("/v1/users/m")).json()["x"]
    # Each response shows the user right after its own write, and the end state is that of some order.
    assert (first.json()["x"], second.json()["x"], final) in [
        (5, {"a": 1}, {"a": 1}),
        ({"a": 1, "b": 2}, 5, 5),
    ]


async def test_identify_rejects_bad_input_and_writes_nothing(env: EnvFixture) -> None:
    body = assert_error(await env.put("/v1/users/u1", json={"email": 42}), 422, "invalid_params")
    assert body["errors"][0]["field"] == "email"
    assert_error(await env.put("/v1/users/u1", content=b"{not json"), 400, "invalid_json")
    assert_error(await env.put("/v1/users/u1", content=b"[1, 2]"), 422, "invalid_params")
    assert_error(await env.put("/v1/users/" + "x" * 256, json={}), 422, "invalid_params")
    assert_error(await env.get("/v1/users/u1"), 404, "resource_missing")


async def test_identify_refuses_bodies_over_ten_megabytes(env: EnvFixture) -> None:
    huge = b'{"blob": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    assert_error(await env.put("/v1/users/u1", content=huge), 413)
    assert_error(await env.get("/v1/users/u1"), 404)


async def test_get_unknown_user_is_404(env: EnvFixture) -> None:
    assert_error(await env.get("/v1/users/nobody"), 404, "resource_missing")


async def test_list_users_pages_with_cursors(env: EnvFixture) -> None:
    for i in range(5):
        await env.put(f"/v1/users/u{i}", json={"n": i})
    first = (await env.get("/v1/users", params={"page_size": 2})).json()
    assert [u["id"] for u in first["entries"]] == ["u0", "u1"]
    assert first["page_info"]["__typename"] == "PageInfo"
    assert first["page_info"]["page_size"] == 2
    assert first["page_info"]["before"] is None
    # A user inserted while paging appears at the end and does not shift pages.
    await env.put("/v1/users/late", json={})
    second = (
        await env.get("/v1/users", params={"page_size": 2, "after": first["page_info"]["after"]})
    ).json()
    assert [u["id"] for u in second["entries"]] == ["u2", "u3"]
    third = (
        await env.get("/v1/users", params={"page_size": 2, "after": second["page_info"]["after"]})
    ).json()
    assert [u["id"] for u in third["entries"]] == ["u4", "late"]
    assert third["page_info"]["after"] is None
    back = (
        await env.get("/v1/users", params={"page_size": 2, "before": third["page_info"]["before"]})
    ).json()
    assert [u["id"] for u in back["entries"]] == ["u2", "u3"]


async def test_list_users_rejects_bad_page_parameters(env: EnvFixture) -> None:
    for size in ("0", "51", "abc", "-1"):
        body = assert_error(await env.get("/v1/users", params={"page_size": size}), 422, "invalid_params")
        assert body["errors"][0]["field"] == "page_size"
    assert_error(await env.get("/v1/users", params={"after": "garbage!"}), 422, "invalid_params")


async def test_delete_user(env: EnvFixture) -> None:
    await env.put("/v1/users/u1", json={})
    response = await env.delete("/v1/users/u1")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await env.get("/v1/users/u1"), 404)
    assert_error(await env.delete("/v1/users/u1"), 404)


async def test_merge_folds_secondary_into_primary(env: EnvFixture) -> None:
    await env.put("/v1/users/primary", json={"name": "Primary", "a": {"x": 1}})
    await env.put("/v1/users/guest", json={"name": "Guest", "a": {"y": 2}, "phone_number": "+15550001"})
    response = await env.post("/v1/users/primary/merge", json={"from_user_id": "guest"})
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["name"] == "Primary"
    assert merged["a"] == {"x": 1, "y": 2}
    assert merged["phone_number"] == "+15550001"
    assert_error(await env.get("/v1/users/guest"), 404)


async def test_merge_errors(env: EnvFixture) -> None:
    await env.put("/v1/users/primary", json={})
    assert_error(await env.post("/v1/users/primary/merge", json={"from_user_id": "ghost"}), 404)
    assert_error(await env.post("/v1/users/primary/merge", json={}), 422, "invalid_params")
    assert_error(await env.post("/v1/users/primary/merge", json={"from_user_id": 7}), 422, "invalid_params")


async def test_authentication_errors(env: EnvFixture) -> None:
    assert_error(await env.client.get("/v1/users"), 401, "api_key_missing")
    assert_error(await env.client.get("/v1/users", headers={"Authorization": "Bearer sk_nope"}), 401)
    assert_error(await env.client.get("/v1/users", headers={"Authorization": "Basic abc"}), 401)


async def test_publishable_key_reaches_only_client_endpoints(env: EnvFixture) -> None:
    ok = await env.put("/v1/users/u1", json={"name": "A"}, kind=KeyKind.PUBLISHABLE)
    assert ok.status_code == 200
    assert (await env.get("/v1/users/u1", kind=KeyKind.PUBLISHABLE)).status_code == 200
    assert_error(await env.get("/v1/users", kind=KeyKind.PUBLISHABLE), 403, "incorrect_token_type")
    assert_error(await env.delete("/v1/users/u1", kind=KeyKind.PUBLISHABLE), 403, "incorrect_token_type")


async def test_revoked_key_is_refused(env: EnvFixture) -> None:
    await env.runtime.environments.revoke_key(env.secret_key)
    env.runtime.keys.lookups.forget(env.secret_key)
    assert_error(await env.get("/v1/users"), 401, "authentication_required")


async def test_environments_are_isolated(env: EnvFixture, other_env: EnvFixture) -> None:
    await env.put("/v1/users/shared-id", json={"secret": "env-one"})
    assert_error(await other_env.get("/v1/users/shared-id"), 404)
    assert (await other_env.get("/v1/users")).json()["entries"] == []
    assert_error(await other_env.delete("/v1/users/shared-id"), 404)
    await other_env.put("/v1/users/shared-id", json={"secret": "env-two"})
    assert (await env.get("/v1/users/shared-id")).json()["secret"] == "env-one"
    await env.put("/v1/users/only-in-one", json={})
    await other_env.put("/v1/users/other", json={})
    assert_error(await other_env.post("/v1/users/other/merge", json={"from_user_id": "only-in-one"}), 404)
    assert (await env.get("/v1/users/only-in-one")).status_code == 200


async def test_page_parameters_out_of_any_range_are_422(env: EnvFixture) -> None:
    huge = base64.urlsafe_b64encode(b"p:9223372036854775808").decode().rstrip("=")
    for params in (
        {"after": huge},
        {"before": huge},
        {"page_size": "²"},
        {"page_size": "99999999999999999999"},
    ):
        body = assert_error(await env.get("/v1/users", params=params), 422, "invalid_params")
        assert body["errors"][0]["field"] == next(iter(params))


async def test_integers_beyond_64_bits_round_trip_exactly(env: EnvFixture) -> None:
    big = 123456789012345678901234567890
    response = await env.put("/v1/users/big", json={"n": big, "nested": {"m": -big}})
    assert response.status_code == 200, response.text
    assert response.json()["n"] == big
    fetched = (await env.get("/v1/users/big")).json()
    assert fetched["n"] == big
    assert fetched["nested"] == {"m": -big}
    listed = (await env.get("/v1/users")).json()["entries"]
    assert listed[0]["n"] == big
