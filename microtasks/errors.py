"""Errors raised by the domain core; the web layer maps them to HTTP answers."""

from __future__ import annotations


class MicrotasksError(Exception):
    """Base class for errors the caller can show to a person."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None, errors: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors or ({field: [message]} if field else {})


class ValidationError(MicrotasksError):
    """The input is malformed or breaks a rule of the task type."""

    status = 422


class NotFound(MicrotasksError):
    """The named object does not exist (or is not visible to the caller)."""

    status = 404


class Conflict(MicrotasksError):
    """The request contradicts what is already stored."""

    status = 409
