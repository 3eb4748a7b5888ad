"""What can go wrong in a use case, in the admin's words.

The API turns each into a problem+json answer (api/errors.py); the domain never
speaks HTTP itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str
    code: str = "invalid"


class ProvisioningError(Exception):
    """Base of every refusal a service can give."""

    code = "error"
    title = "Request refused"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[FieldError] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.code
        self.errors = errors or []
        self.retry_after = retry_after


class InvalidInput(ProvisioningError):
    code = "invalid_input"
    title = "Invalid input"

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        fields = ", ".join(error.field for error in errors)
        super().__init__(detail or f"Check these fields: {fields}.", errors=errors)


class NotAuthenticated(ProvisioningError):
    code = "not_authenticated"
    title = "Authentication required"


class Forbidden(ProvisioningError):
    code = "forbidden"
    title = "Not allowed"


class NotFound(ProvisioningError):
    code = "not_found"
    title = "Not found"


class Conflict(ProvisioningError):
    code = "conflict"
    title = "Conflict"


class Gone(ProvisioningError):
    code = "gone"
    title = "No longer valid"


class SeatLimitReached(ProvisioningError):
    code = "seat_limit"
    title = "No seat available"


class RateLimited(ProvisioningError):
    code = "rate_limited"
    title = "Too many requests"


class PayloadTooLarge(ProvisioningError):
    code = "too_large"
    title = "Too large"


class UnsupportedMediaType(ProvisioningError):
    code = "unsupported_media_type"
    title = "Unsupported media type"
