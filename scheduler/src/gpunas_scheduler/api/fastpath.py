"""``POST /api/v1/jobs`` served as a plain ASGI handler in front of the FastAPI router.

Submitting is the one endpoint that must sustain thousands of requests per second on two cores.
Through FastAPI's routing, dependency solving and middleware wrappers it cost about 430 us of
server CPU per request, against about 50 us for the submit itself (validation, queueing, group
commit) and about 40 us for uvicorn; this handler does the same work as the FastAPI route in
about a third of the time (measurements in docs/operations.md, "Performance").

It keeps the FastAPI route's behaviour, step for step:

1. only ``application/json`` bodies (optionally with parameters) are taken; any other request
   to the path, or a body that does not parse as a JSON object (nested too deeply included),
   goes on to the FastAPI route
   unchanged (the body replayed), so malformed input gets exactly FastAPI's answer;
2. the body is read with the size limit (413 naming the limit);
3. the bearer token is authenticated and the call counted against the tenant's API quota,
   as the route's ``Auth`` dependency does (401 with ``WWW-Authenticate``, 429);
4. the body is validated by the same pydantic model the route declares, errors answered with
   the same 400 document (``fields`` named ``body.<path>``);
5. the job is queued and the answer (201) sent only once its group commit is durable.

The route stays declared in FastAPI, so the OpenAPI document is unchanged; tests compare the
answers of both paths for the same requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError

from gpunas_scheduler.api import models as m
from gpunas_scheduler.service.core import SchedulerService
from gpunas_scheduler.service.errors import ServiceError
from gpunas_scheduler.service.ports import StoreUnavailable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SUBMIT_PATH = "/api/v1/jobs"
_JSON = (b"content-type", b"application/json")
_TEXT = (b"content-type", b"text/plain; charset=utf-8")


# A database outage: 503, and when to try again.
RETRY_AFTER_S = 5
UNAVAILABLE_DOCUMENT = m.ErrorOut(error="database unavailable, retry later").model_dump_json().encode()


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or None."""
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def error_document(exc: ServiceError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and extra headers of the answer to a service error."""
    headers = [(b"www-authenticate", b"Bearer")] if exc.status == 401 else []
    return exc.status, _dumps(m.ErrorOut(error=exc.message, field=exc.field).model_dump()), headers


def validation_document(errors: list[Any]) -> bytes:
    """The 400 document for pydantic/FastAPI validation errors (``loc`` and ``msg`` of each)."""
    fields = [
        m.FieldError(field=".".join(str(p) for p in e.get("loc", ())), message=str(e.get("msg", "invalid")))
        for e in errors
    ]
    body = m.ValidationErrorOut(error="invalid request: " + ", ".join(f.field for f in fields), fields=fields)
    return _dumps(body.model_dump())


def _dumps(value: Any) -> bytes:
    # Starlette's JSONResponse rendering, so both paths answer byte for byte alike.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def _is_json(content_type: bytes) -> bool:
    main = content_type.split(b";", 1)[0].strip().lower()
    return main == b"application/json"


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    content_type: tuple[bytes, bytes] = _JSON,
) -> None:
    headers = [(b"content-length", str(len(body)).encode()), content_type]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SubmitFastPath:
    """ASGI middleware answering ``POST /api/v1/jobs`` itself (see the module docstring)."""

    def __init__(self, app: ASGIApp, service: SchedulerService, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != SUBMIT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            replay = await self._submit(scope, receive, send)
        except StoreUnavailable:
            await _answer(send, 503, UNAVAILABLE_DOCUMENT, [(b"retry-after", str(RETRY_AFTER_S).encode())])
            return
        except Exception:
            # What Starlette's error middleware does: a plain 500, then re-raise for the server
            # to log. (Nothing is sent if the answer had already started.)
            with contextlib.suppress(Exception):
                await _answer(send, 500, b"Internal Server Error", content_type=_TEXT)
            raise
        if replay is not None:
            await self.app(scope, _replay(replay), send)

    async def _submit(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """Answer the request, or return its body for the FastAPI route to answer."""
        authorization: str | None = None
        content_type: bytes | None = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                if authorization is None:
                    authorization = v.decode("latin-1")
            elif k == b"content-type":
                if content_type is None:  # the first, as Starlette's headers.get() reads it
                    content_type = v
            elif k == b"content-length" and declared_too_large(v, self.max_body_bytes):
                await answer_too_large(send, self.max_body_bytes)
                return None

        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # client went away
                return None
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await answer_too_large(send, self.max_body_bytes)
                return None
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        raw = b"".join(chunks)
        if content_type is None or not _is_json(content_type):
            return raw
        try:
            data = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            # Empty, malformed, nested too deeply or not an object: FastAPI's own answer (a 400).
            return raw

        svc = self.service
        try:
            principal = svc.admit(bearer_token(authorization))
        except ServiceError as exc:
            await _answer(send, *error_document(exc))
            return None
        try:
            body = m.JobSubmit.model_validate(data, from_attributes=True)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            await _answer(send, 400, validation_document(errors))
            return None
        try:
            rec, fut = svc.submit(principal, body.model_dump(exclude={"tenant"}), body.tenant)
        except ServiceError as exc:
            await _answer(send, *error_document(exc))
            return None
        await asyncio.wrap_future(fut)
        out = {"id": rec.id, "tenant": rec.tenant, "state": "pending", "submitted_at": rec.submitted_at}
        await _answer(send, 201, json.dumps(out, separators=(",", ":")).encode())
        return None


def too_large_document(limit: int) -> bytes:
    """The 413 document naming the limit."""
    return m.ErrorOut(error=f"request body larger than {limit} bytes", field="body").model_dump_json().encode()


def declared_too_large(content_length: bytes, limit: int) -> bool:
    """Whether a ``Content-Length`` header announces more than ``limit`` bytes (or is not a number)."""
    try:
        return int(content_length) > limit
    except ValueError:
        return True


async def answer_too_large(send: Send, limit: int) -> None:
    """Answer 413 with the document naming the limit."""
    await _answer(send, 413, too_large_document(limit))


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive
