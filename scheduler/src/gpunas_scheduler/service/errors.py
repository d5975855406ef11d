"""Errors raised by use cases; adapters map them to their protocol (HTTP status, CLI exit code)."""

from __future__ import annotations


class ServiceError(Exception):
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ServiceError):
    status = 400


class Unauthenticated(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class QuotaExceeded(ServiceError):
    status = 429
