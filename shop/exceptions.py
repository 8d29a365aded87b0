"""Domain errors raised by services; `shop.web.api.exception_handler` turns them into HTTP answers.

Services know nothing of HTTP: they raise an ``ApplicationError`` subclass that says which
kind of refusal it is and which input it is about. The API layer maps the kind to a status
code in one place.
"""

from __future__ import annotations


class ApplicationError(Exception):
    """A request the business rules refuse. ``errors`` maps an input path to messages."""

    #: Which refusal this is: "invalid" (bad input), "conflict" (valid but not possible now).
    kind = "invalid"
    code = "invalid"

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class ConflictError(ApplicationError):
    kind = "conflict"
    code = "conflict"


class UnprocessableError(ApplicationError):
    """Well-formed, but cannot be processed as sent (e.g. an idempotency key reused)."""

    kind = "unprocessable"
    code = "unprocessable"
