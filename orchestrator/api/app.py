"""The HTTP API (service ``api``): FastAPI; the records it starts sagas with go through its
outbox (``api_outbox``), published by the process's producer like every other message."""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from events.card_api import Problem
from orchestrator import asyncapi, metrics
from orchestrator.api import auth, card_service, problems, registered_cards, virtual_cards
from orchestrator.api.problems import PROBLEM_JSON
from orchestrator.api.publishing import ApiOutbox
from orchestrator.engine.outbox import OutboxRelay
from orchestrator.settings import Settings

DESCRIPTION = """The card service of Orchestra (seeds 000, 001, 002, 004).

Errors are RFC 7807 problem details (`application/problem+json`) with a `code` member:
`VAL-0001` invalid input, `AUTH-4010` missing/expired/forged token, `RES-4040` not found,
`DB-4090` duplicate card number, `CARD-4090` active card exists, `CARD-4030` card blocked,
`TXN-4220` declined, `ACQ-5030` acquirer unavailable (simulator: merchant name
`ACQUIRER_UNAVAILABLE`; the simulated ACS of 3-D Secure is `GET /api/3ds/acs/{id}`).

Money: requests take a JSON number or a decimal string (at most 2 fractional digits); answers
give it as a JSON number, exact to the cent.
"""


def build_api(settings: Settings, engine: AsyncEngine, relay: OutboxRelay) -> FastAPI:
    """The app on ``engine``; ``relay`` publishes ``api_outbox`` (its sweeper is the caller's
    to run)."""
    app = FastAPI(
        title="Orchestra card service",
        version="1.0.0",
        description=DESCRIPTION,
        redirect_slashes=False,  # a path with a trailing slash is a 404 problem, not a 307
        strict_content_type=False,  # a body with no Content-Type is read as JSON; another: 415
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.outbox = ApiOutbox(relay)
    app.include_router(virtual_cards.router)
    app.include_router(registered_cards.router)
    app.include_router(card_service.router)
    problems.install(app, auth.refusal_before_body)
    app.add_middleware(HeadAsGet)
    _serve_asyncapi(app, settings)
    app.openapi = lambda: problem_openapi(app)  # type: ignore[method-assign]
    return app


class HeadAsGet:
    """HEAD answered as the GET of the same resource, without its body (RFC 9110 9.3.2):
    FastAPI's GET routes take no HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def bodiless(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, bodiless)


def _serve_asyncapi(app: FastAPI, settings: Settings) -> None:
    """The AsyncAPI document of every topic, as JSON and as a browsable page."""
    document, page = asyncapi.rendered(settings)

    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_json() -> Response:
        return Response(document, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi", include_in_schema=False)
    async def asyncapi_page() -> HTMLResponse:
        return HTMLResponse(page)


def problem_openapi(app: FastAPI) -> dict[str, object]:
    """The OpenAPI document as FastAPI makes it, corrected to what the API really answers:
    bad input is a 400 problem (FastAPI would say 422), a body too large 413, and every problem
    is served as ``application/problem+json``."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path in document.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            default_422 = responses.get("422", {}).get("description") == "Validation Error"
            if default_422:
                del responses["422"]
            if operation.get("parameters") or operation.get("requestBody") or default_422:
                responses.setdefault("400", {"description": "VAL-0001: invalid request"})
            if operation.get("requestBody"):
                responses.setdefault("413", {"description": "HTTP-4130: body too large"})
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = {PROBLEM_JSON: {"schema": problem_ref}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = document
    return document
