"""RFC 7807 problem details for every error the API gives, bad input first."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from events.card_api import Problem
from events.masking import mask_text
from orchestrator.errors import error_of
from workers.card_issuance.card_service import CardServiceError

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
MALFORMED = "Malformed JSON body"
HTTP_CODES = {
    401: ("AUTH-4010", "Unauthorized"),
    403: ("AUTH-4030", "Forbidden"),
    404: ("RES-4040", "Not found"),
    405: ("HTTP-4050", "Method not allowed"),
    406: ("HTTP-4060", "Not acceptable"),
    413: ("HTTP-4130", "Request too large"),
    415: ("HTTP-4150", "Unsupported media type"),
}


CREATED: dict[int | str, dict[str, object]] = {
    201: {
        "description": "made; ``Location`` names it",
        "headers": {
            "Location": {"description": "the path of what was made", "schema": {"type": "string"}}
        },
    }
}
"""The 201 of a route that answers with ``Location``, as its OpenAPI document says it."""

RETRY_AFTER_S = 1


def accepted(model: type[BaseModel]) -> dict[int | str, dict[str, object]]:
    """The 202 of a route whose saga was still running when the answer was due."""
    return {
        202: {
            "model": model,
            "description": "still running; ``Location`` is where to ask how it ended",
            "headers": {
                "Location": {"description": "the status URL", "schema": {"type": "string"}},
                "Retry-After": {
                    "description": "seconds to wait before asking",
                    "schema": {"type": "integer"},
                },
            },
        }
    }


def still_running(body: BaseModel, status_url: str) -> JSONResponse:
    """202 with ``body``, pointing to where the outcome will be (RFC 9110 15.3.3)."""
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True),
        status_code=202,
        headers={"Location": status_url, "Retry-After": str(RETRY_AFTER_S)},
    )


class ApiError(Exception):
    """An answer other than success, with its status, code and a human sentence."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(title=title, status=status, detail=detail, code=code)
        self.headers = headers
        self.extra = extra


def problem_response(
    problem: Problem, request: Request, headers: dict[str, str] | None = None, **extra: str
) -> JSONResponse:
    """The problem as JSON; what echoes the client's input (the detail, the path) is masked,
    so a card number sent by mistake is not sent back whole."""
    shown = {
        "instance": mask_text(request.url.path),
        "detail": mask_text(problem.detail),
        "errors": [mask_text(e) for e in problem.errors] if problem.errors else problem.errors,
    }
    body = problem.model_copy(update=shown).model_dump(exclude_none=True)
    body.update(extra)
    return JSONResponse(body, status_code=problem.status, headers=headers, media_type=PROBLEM_JSON)


def _validation_message(error: dict[str, object], request: Request) -> str:
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if error.get("type") == "json_invalid":
        return MALFORMED
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")  # type: ignore[attr-defined]
    if not where and error.get("type") in ("missing", "model_attributes_type", "model_type"):
        if error.get("type") == "missing":
            return f"A JSON body is required{_members(request)}"
        return f"The body must be a JSON object{_members(request)}"
    if error.get("type") == "missing":
        return f"{where} is required"
    if message.startswith("must ") and where:
        return f"{where} {message}"
    if "must" in message or "cannot" in message or "is required" in message:
        return message
    return f"{where}: {message}" if where else message


def _not_json(request: Request, exc: RequestValidationError) -> Problem | None:
    """415 for a body sent as another media type than JSON, which is then not read as JSON
    (one sent with no Content-Type is)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not media_type or media_type == "application/json" or media_type.endswith("+json"):
        return None
    unread = any(
        error.get("type") in ("model_attributes_type", "model_type", "dict_type")
        and tuple(error.get("loc", ())) == ("body",)
        for error in exc.errors()
    )
    if not unread:
        return None
    code, title = HTTP_CODES[415]
    return Problem(
        title=title,
        status=415,
        code=code,
        detail="the body must be JSON, sent as Content-Type application/json, "
        f"not {media_type[:100]}",
    )


def _members(request: Request) -> str:
    """ ", with a, b": the members the route's body must have (for a missing or wrong body)."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    names = [f.alias or name for name, f in model.model_fields.items() if f.is_required()]
    return f", with {', '.join(names)}" if names else ""


MAX_BODY_BYTES = 1_000_000


class _BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"a request body may have at most {MAX_BODY_BYTES} bytes")


class _CountedBody:
    """Counts a body as it arrives, for one sent without a length (chunked): once it passes
    ``MAX_BODY_BYTES`` the route's read fails with 413, before the rest is buffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
            return message

        await self.app(scope, counted, send)


def install(app: FastAPI, refusal_before_body: Callable[[Request], ApiError | None]) -> None:
    """Every error a problem detail. ``refusal_before_body`` answers a request before its
    body's own faults (a missing token, say)."""
    app.add_middleware(_CountedBody)

    @app.middleware("http")
    async def bounded_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            problem = Problem(
                title="Request too large",
                status=413,
                code="HTTP-4130",
                detail=f"a request body may have at most {MAX_BODY_BYTES} bytes",
            )
            return problem_response(problem, request)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if (first := refusal_before_body(request)) is not None:
            return problem_response(first.problem, request, first.headers)
        if (unread := _not_json(request, exc)) is not None:
            return problem_response(unread, request)
        messages = [_validation_message(error, request) for error in exc.errors()[:10]]
        problem = Problem(
            title="Validation failed",
            status=400,
            detail=messages[0],
            code="VAL-0001",
            errors=messages,
        )
        return problem_response(problem, request)

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        return problem_response(exc.problem, request, exc.headers, **exc.extra)

    @app.exception_handler(CardServiceError)
    async def card_refusal(request: Request, exc: CardServiceError) -> JSONResponse:
        problem = Problem(title=exc.title, status=exc.status, detail=exc.detail, code=exc.code)
        if exc.transaction_id:
            return problem_response(problem, request, transaction_id=exc.transaction_id)
        return problem_response(problem, request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body FastAPI could not read: bad UTF-8, too deep
            if (first := refusal_before_body(request)) is not None:
                return problem_response(first.problem, request, first.headers)
            problem = Problem(
                title="Validation failed",
                status=400,
                detail=MALFORMED,
                code="VAL-0001",
                errors=[MALFORMED],
            )
            return problem_response(problem, request)
        code, title = HTTP_CODES.get(exc.status_code, (f"HTTP-{exc.status_code}0", "Error"))
        problem = Problem(title=title, status=exc.status_code, detail=str(exc.detail), code=code)
        return problem_response(problem, request, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", path=request.url.path, error=error_of(exc))
        problem = Problem(
            title="Internal error",
            status=500,
            code="INT-5000",
            detail="the request could not be completed; it is logged and safe to retry",
        )
        return problem_response(problem, request)
