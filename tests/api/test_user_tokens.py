"""Signed user tokens (`X-Knock-User-Token`) and enhanced security on publishable-key requests."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from clarion.errors import InvalidInputError
from clarion.store.environments import KeyKind
from tests.conftest import EnvFixture, assert_error

PUBLISHABLE = KeyKind.PUBLISHABLE


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def sign(private_key: rsa.RSAPrivateKey, user_id: str | None = "u1", **claims: Any) -> str:
    """A token as Knock's node SDK signs it: RS256, `sub`, `iat`, `exp` one hour ahead."""
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now, "exp": now + 3600, **claims}
    if user_id is not None:
        payload["sub"] = user_id
    return jwt.encode(payload, private_key, algorithm="RS256", headers={"typ": "JWT"})


def token_header(token: str) -> dict[str, str]:
    return {"X-Knock-User-Token": token}


async def with_signing_key(env: EnvFixture, private_key: rsa.RSAPrivateKey, enhanced: bool = False) -> None:
    # Set before the environment's keys are first used, as the key cache would otherwise serve the old
    # settings for up to two seconds.
    await env.runtime.environments.set_signing_key(env.name, public_pem(private_key))
    if enhanced:
        await env.runtime.environments.set_enhanced_security(env.name, True)


async def assert_user_absent(env: EnvFixture, user_id: str = "u1") -> None:
    assert_error(await env.get(f"/v1/users/{user_id}"), 404, "resource_missing")


async def test_valid_token_for_the_path_user_is_accepted(
    env: EnvFixture, signing_key: rsa.RSAPrivateKey
) -> None:
    await with_signing_key(env, signing_key)
    headers = token_header(sign(signing_key))
    put = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE, headers=headers)
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "Ann"
    got = await env.get("/v1/users/u1", kind=PUBLISHABLE, headers=headers)
    assert got.status_code == 200
    assert got.json()["id"] == "u1"


async def test_token_carrying_grants_is_accepted(env: EnvFixture, signing_key: rsa.RSAPrivateKey) -> None:
    await with_signing_key(env, signing_key)
    grants: dict[str, dict[str, list[dict[str, str]]]] = {
        "https://api.knock.app/v1/users/u1": {"user/read": [{}], "user/write": [{}]}
    }
    token = sign(signing_key, grants=grants, explicit_grants=True)
    response = await env.put("/v1/users/u1", json={}, kind=PUBLISHABLE, headers=token_header(token))
    assert response.status_code == 200, response.text


async def test_token_for_another_user_is_refused(env: EnvFixture, signing_key: rsa.RSAPrivateKey) -> None:
    await with_signing_key(env, signing_key)
    headers = token_header(sign(signing_key, "u2"))
    response = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE, headers=headers)
    assert_error(response, 401, "invalid_user_token")
    assert_error(
        await env.get("/v1/users/u1/preferences", kind=PUBLISHABLE, headers=headers),
        401,
        "invalid_user_token",
    )
    await assert_user_absent(env)


async def test_expired_token_is_refused(env: EnvFixture, signing_key: rsa.RSAPrivateKey) -> None:
    await with_signing_key(env, signing_key)
    past = int(time.time()) - 7200
    headers = token_header(sign(signing_key, iat=past, exp=past + 3600))
    response = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE, headers=headers)
    assert_error(response, 401, "invalid_user_token")
    await assert_user_absent(env)


async def test_token_signed_by_another_key_is_refused(
    env: EnvFixture, signing_key: rsa.RSAPrivateKey, stranger_key: rsa.RSAPrivateKey
) -> None:
    await with_signing_key(env, signing_key)
    headers = token_header(sign(stranger_key))
    response = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE, headers=headers)
    assert_error(response, 401, "invalid_user_token")
    await assert_user_absent(env)


async def test_malformed_unsigned_and_subjectless_tokens_are_refused(
    env: EnvFixture, signing_key: rsa.RSAPrivateKey
) -> None:
    await with_signing_key(env, signing_key)
    now = int(time.time())
    tokens = [
        "not-a-jwt",
        sign(signing_key, user_id=None),
        jwt.encode({"sub": "u1", "exp": now + 60}, "a-shared-secret-of-at-least-32-bytes", algorithm="HS256"),
        jwt.encode({"sub": "u1", "exp": now + 60}, "", algorithm="none"),
    ]
    for token in tokens:
        response = await env.get("/v1/users/u1", kind=PUBLISHABLE, headers=token_header(token))
        assert_error(response, 401, "invalid_user_token")


async def test_token_without_a_signing_key_is_refused(
    env: EnvFixture, signing_key: rsa.RSAPrivateKey
) -> None:
    response = await env.put(
        "/v1/users/u1", json={}, kind=PUBLISHABLE, headers=token_header(sign(signing_key))
    )
    assert_error(response, 401, "missing_jwt_signing_key")
    await assert_user_absent(env)


async def test_without_enhanced_security_no_token_is_needed(
    env: EnvFixture, signing_key: rsa.RSAPrivateKey
) -> None:
    await with_signing_key(env, signing_key)
    response = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE)
    assert response.status_code == 200, response.text


async def test_enhanced_security_requires_a_token(env: EnvFixture, signing_key: rsa.RSAPrivateKey) -> None:
    await with_signing_key(env, signing_key, enhanced=True)
    missing = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE)
    assert_error(missing, 401, "missing_user_token")
    await assert_user_absent(env)
    assert_error(await env.get("/v1/users/u1/preferences", kind=PUBLISHABLE), 401, "missing_user_token")

    headers = token_header(sign(signing_key))
    accepted = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert (await env.get("/v1/users/u1", kind=PUBLISHABLE, headers=headers)).json()["name"] == "Ann"


async def test_secret_keys_ignore_user_tokens(
    env: EnvFixture, signing_key: rsa.RSAPrivateKey, stranger_key: rsa.RSAPrivateKey
) -> None:
    await with_signing_key(env, signing_key, enhanced=True)
    assert (await env.put("/v1/users/u1", json={"name": "Ann"})).status_code == 200
    for token in ["not-a-jwt", sign(stranger_key), sign(signing_key, "u2")]:
        response = await env.get("/v1/users/u1", headers=token_header(token))
        assert response.status_code == 200, response.text
    assert (await env.get("/v1/users")).status_code == 200


async def test_a_token_is_only_valid_in_its_own_environment(
    env: EnvFixture, other_env: EnvFixture, signing_key: rsa.RSAPrivateKey, stranger_key: rsa.RSAPrivateKey
) -> None:
    await with_signing_key(env, signing_key)
    await with_signing_key(other_env, stranger_key)
    headers = token_header(sign(signing_key))
    response = await other_env.put("/v1/users/u1", json={}, kind=PUBLISHABLE, headers=headers)
    assert_error(response, 401, "invalid_user_token")
    await assert_user_absent(other_env)


async def test_signing_key_must_be_an_rsa_public_key_pem(env: EnvFixture) -> None:
    with pytest.raises(InvalidInputError, match="not a PEM-encoded public key"):
        await env.runtime.environments.set_signing_key(env.name, "hello")
    stored = await env.runtime.environments.get_by_name(env.name)
    assert stored is not None and stored.signing_public_key is None


async def test_token_without_an_expiry_is_refused_saying_so(
    env: EnvFixture, signing_key: rsa.RSAPrivateKey
) -> None:
    await with_signing_key(env, signing_key)
    token = jwt.encode({"sub": "u1", "iat": int(time.time())}, signing_key, algorithm="RS256")
    headers = token_header(token)
    response = await env.put("/v1/users/u1", json={"name": "Ann"}, kind=PUBLISHABLE, headers=headers)
    body = assert_error(response, 401, "invalid_user_token")
    expected = "The user token has no exp claim: sign it with an expiry time, as Knock's SDKs do"
    assert body["message"] == expected
    await assert_user_absent(env)
