"""The exceptions Clarion raises, each carrying what the API edge needs to answer with Knock's error body.

    ClarionError
     ├── InvalidInputError      422 invalid_params (field errors attached)
     ├── NotFoundError          404 resource_missing
     ├── ConflictError          409 conflict
     ├── AuthError              401 api_key_missing / authentication_required
     │    └── ForbiddenError    403 incorrect_token_type
     ├── RateLimitedError       429 rate_limited (retry_after seconds)
     └── ServiceUnavailableError 503 service_unavailable (retry_after seconds)

Turning them into HTTP responses happens only in `clarion.api.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One invalid field: a dotted path into the request and what is wrong with it."""

    field: str
    message: str
    type: str | None = None


class ClarionError(Exception):
    """Base of every error Clarion raises on purpose."""

    status = 500
    code = "internal_error"
    type = "api_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInputError(ClarionError):
    """The request is well-formed but names invalid values."""

    status = 422
    code = "invalid_params"
    type = "invalid_request_error"

    def __init__(
        self,
        message: str = "One or more parameters supplied were invalid",
        *,
        errors: list[FieldError] | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.errors = errors or []
        if status is not None:
            self.status = status

    @classmethod
    def field(cls, field: str, message: str) -> InvalidInputError:
        return cls(errors=[FieldError(field, message)])


class NotFoundError(ClarionError):
    """The addressed resource does not exist in the caller's environment."""

    status = 404
    code = "resource_missing"
    type = "invalid_request_error"


class ConflictError(ClarionError):
    """The request conflicts with the current state of the resource."""

    status = 409
    code = "conflict"
    type = "invalid_request_error"


class AuthError(ClarionError):
    """The request carries no key, or a key Clarion does not know."""

    status = 401
    code = "authentication_required"
    type = "authentication_error"


class ForbiddenError(AuthError):
    """The key is valid but may not call this endpoint."""

    status = 403
    code = "incorrect_token_type"


class RateLimitedError(ClarionError):
    """The key went past its endpoint's rate-limit tier."""

    status = 429
    code = "rate_limited"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailableError(ClarionError):
    """The database did not answer within its bound (unreachable, frozen, or locked by another process):
    nothing was done, or the outcome is unknown; the same request may succeed later."""

    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
