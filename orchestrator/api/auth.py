"""Bearer tokens (seed 000): a JWT checked with the key from settings (PyJWT)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import TypeAdapter, ValidationError

from events.base import Identifier
from orchestrator.api.problems import ApiError
from orchestrator.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    description="JWT: `sub` is the user id (letters, digits and `._:@-`); `exp`, when present, "
    "is enforced",
)
_USER_ID: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass(frozen=True)
class Caller:
    user_id: str


def _unauthorized(why: str) -> ApiError:
    return ApiError(
        401,
        "AUTH-4010",
        "Unauthorized",
        why,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _no_token() -> ApiError:
    """A request with no bearer token at all: the challenge names no error (RFC 6750 3.1)."""
    return ApiError(
        401,
        "AUTH-4010",
        "Unauthorized",
        "a bearer token is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


def dev_token(settings: Settings, user_id: str, lifetime_s: int = 12 * 3600) -> str:
    """A token signed with the configured key (HS*): for ``orchestra dev``, demo and tests."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + lifetime_s}
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm)


def verify(settings: Settings, token: str) -> Caller:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"verify_exp": True},
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise _unauthorized(f"the token is not valid: {exc}") from None
    subject = claims.get("sub") or claims.get("user_id") or claims.get("userId")
    if not isinstance(subject, str) or not subject:
        raise _unauthorized("the token names no user (sub)")
    try:
        user_id = _USER_ID.validate_python(subject)
    except ValidationError:
        raise _unauthorized(
            "the token's user (sub) is not a user id here: letters, digits and ._:@-, "
            "at most 128 characters"
        ) from None
    return Caller(user_id=user_id)


async def caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    if credentials is None:
        raise _no_token()
    settings: Settings = request.app.state.settings
    return verify(settings, credentials.credentials)


def refusal_before_body(request: Request) -> ApiError | None:
    """The 401 owed to a request without a good token on a route that needs a caller. FastAPI
    reads the body before it asks for the caller, so a body it refuses would otherwise answer
    400 to a client who may not call at all."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None or not _needs_caller(dependant):
        return None
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not token:
        return _no_token()
    try:
        verify(request.app.state.settings, token)
    except ApiError as refused:
        return refused
    return None


def _needs_caller(dependant: Dependant) -> bool:
    return any(d.call is caller or _needs_caller(d) for d in dependant.dependencies)
