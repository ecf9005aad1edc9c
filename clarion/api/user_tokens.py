"""Knock's signed user tokens: checking `X-Knock-User-Token` on publishable-key requests.

A token is an RS256 JWT signed with the environment's private signing key and verified here against the
public key stored on the environment (`clarion environments signing-key`). A valid token names its user in
`sub`, and a request addressing a user (`user_id` in the path) must address that user; endpoints that
address messages instead act only on that user's (`RequestContext.token_user`). With enhanced
security on, publishable-key requests without a token are refused. Secret-key requests never come here
(`clarion.api.endpoint.route` calls this for publishable keys only). The `grants` claim is accepted but not
enforced: a valid token allows every client-side endpoint for its own user. A token must carry `exp`, which
Knock only recommends: without one it would stay valid as long as the signing key (docs/compatibility.md).
"""

from __future__ import annotations

from functools import lru_cache

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.requests import Request

from clarion.api.headers import request_header
from clarion.errors import AuthError
from clarion.store.environments import Environment

USER_TOKEN_HEADER = b"x-knock-user-token"


def check_user_token(request: Request, environment: Environment) -> str | None:
    """Refuse a publishable-key request whose user token is missing (under enhanced security), invalid, or
    issued for another user than the one in the path; returns the token's user, if a token was sent."""
    token = request_header(request.scope, USER_TOKEN_HEADER)
    if not token:
        if environment.enhanced_security:
            raise AuthError(
                "This environment requires a signed user token in the X-Knock-User-Token header",
                code="missing_user_token",
            )
        return None
    if environment.signing_public_key is None:
        raise AuthError(
            "A user token was sent but the environment has no signing key to verify it",
            code="missing_jwt_signing_key",
        )
    subject = _verified_subject(token, environment.signing_public_key)
    user_id = request.path_params.get("user_id")
    if user_id is not None and user_id != subject:
        raise AuthError("The user token was issued for another user", code="invalid_user_token")
    return subject


def _verified_subject(token: str, public_key_pem: str) -> str:
    try:
        claims = jwt.decode(
            token, _public_key(public_key_pem), algorithms=["RS256"], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("The user token has expired", code="invalid_user_token") from exc
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim != "exp":
            raise AuthError("The user token is not valid", code="invalid_user_token") from exc
        raise AuthError(
            "The user token has no exp claim: sign it with an expiry time, as Knock's SDKs do",
            code="invalid_user_token",
        ) from exc
    except jwt.PyJWTError as exc:
        raise AuthError("The user token is not valid", code="invalid_user_token") from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise AuthError("The user token's sub claim must name a user", code="invalid_user_token")
    return subject


@lru_cache(maxsize=256)
def _public_key(public_key_pem: str) -> RSAPublicKey:
    """The parsed key, cached because parsing PEM on every request is needless work."""
    key = load_pem_public_key(public_key_pem.encode())
    assert isinstance(key, RSAPublicKey)  # the store accepts only RSA keys
    return key
