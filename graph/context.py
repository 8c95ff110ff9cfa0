"""The request context: who is calling, and the services a resolver may use.

The context is built once per request, in `async def` so that it does not
cost a thread-pool hop. The bearer token is verified and the user loaded here,
once, so that permission checks on every field are set lookups.
"""

import logging
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from strawberry.fastapi import BaseContext

from graph.services import Services
from graph.tokens import AccessClaims, InvalidToken
from schema.apikeys import authenticate_key, looks_like_api_key
from schema.audit import Actor
from schema.clock import as_utc
from schema.sessions import (
    TOUCH_INTERVAL,
    AccessState,
    is_live,
    load_access_state,
)
from schema.users import load_grants

logger = logging.getLogger(__name__)

INVALID_TOKEN = "the access token is invalid or expired"  # noqa: S105 - a message


@dataclass(frozen=True, slots=True)
class Principal:
    """The signed-in user a request acts for."""

    user_id: int
    username: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    # After an admin reset the user has no permission until a new password
    # is set.
    password_change_required: bool = False
    # The session of a signed-in person, or the key of a service account.
    session_id: str | None = None
    api_key_id: int | None = None


@dataclass(kw_only=True)
class Context(BaseContext):
    services: Services
    request_id: str
    principal: Principal | None = None
    # Why a presented token was not accepted; for messages and logs only.
    auth_failure: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def actor(self) -> Actor:
        """Describe the caller for the audit log."""
        principal = self.principal
        return Actor(
            user_id=principal.user_id if principal else None,
            username=principal.username if principal else None,
            client_ip=self.client_ip,
            user_agent=self.user_agent,
            request_id=self.request_id,
        )


def caller(info: Any) -> Principal:
    """Return the principal of a resolver whose field rule requires one.

    Accepts a resolver's `info` or the request context itself.
    """
    context = info if isinstance(info, Context) else info.context
    principal = context.principal
    assert principal is not None, "the field rule lets no anonymous caller through"
    return principal


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return ""
    return credentials.strip()


async def load_principal(
    services: Services, authorization: str | None
) -> tuple[Principal | None, str | None]:
    """Return the principal of an `Authorization` header value.

    Returns:
        The principal, or None with the reason when the header is missing or
        its token cannot be trusted. No exception escapes, so that a bad token
        only matters on fields that need a signed-in user.
    """
    token = _bearer_token(authorization)
    if token is None:
        return None, None
    if token == "":
        return None, "the Authorization header is not a bearer token"
    now = services.clock.now()
    if looks_like_api_key(token):
        return await _load_key_principal(services, token, now)
    try:
        claims = services.verified_tokens.verify(token, now=now.timestamp())
    except InvalidToken as error:
        logger.info("Rejected access token: %s", error)
        return None, INVALID_TOKEN

    # The marker is read before the database, so that a change committed
    # while the query runs leaves the entry stale rather than wrong.
    marker = services.change_marker.current() if services.change_marker else None
    cached = services.access_cache.get(claims.session_id, marker)
    if cached is not None:
        state, grants = cached
        problem = _access_problem(services, state, claims, now)
        if problem is not None:
            logger.info("Rejected access token of user %s: %s", claims.user_id, problem)
            return None, INVALID_TOKEN
    else:
        async with services.session_factory() as session:
            state = await load_access_state(session, claims.session_id)
            problem = _access_problem(services, state, claims, now)
            if problem is not None:
                logger.info(
                    "Rejected access token of user %s: %s", claims.user_id, problem
                )
                return None, INVALID_TOKEN
            assert state is not None
            key = (state.user_id, state.auth_version)
            grants = services.permission_cache.get(key)
            if grants is None:
                grants = await load_grants(session, state.user_id)
                services.permission_cache.put(key, grants)
        if marker is not None:
            services.access_cache.put(claims.session_id, marker, (state, grants))
    if _needs_touch(state, now):
        services.touch_later(claims.session_id, now)
    roles, permissions = grants
    return (
        Principal(
            user_id=state.user_id,
            username=state.username,
            roles=roles,
            # After an admin reset the account may only change its password.
            permissions=frozenset() if state.must_change_password else permissions,
            password_change_required=state.must_change_password,
            session_id=claims.session_id,
        ),
        None,
    )


def _needs_touch(state: AccessState, now: datetime) -> bool:
    return as_utc(state.session.last_used_at) < now - TOUCH_INTERVAL


def _access_problem(
    services: Services, state: AccessState | None, claims: AccessClaims, now: datetime
) -> str | None:
    if state is None or state.user_id != claims.user_id:
        return "unknown session"
    if not state.user_active:
        return "inactive user"
    if state.auth_version != claims.version:
        return "auth version changed"
    if not is_live(state.session, now, services.session_policy):
        return "session ended"
    return None


async def _load_key_principal(
    services: Services, credential: str, now: datetime
) -> tuple[Principal | None, str | None]:
    async with services.session_factory() as session:
        key = await authenticate_key(session, credential, now=now)
    if key is None:
        logger.info("Rejected API key")
        return None, "the API key is invalid, expired or revoked"
    return (
        Principal(
            user_id=key.user_id,
            username=key.username,
            roles=(),
            permissions=key.permissions,
            api_key_id=key.key_id,
        ),
        None,
    )


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: frozenset[str]
) -> str | None:
    """Return the address of the client, believing only trusted proxies.

    X-Forwarded-For lists the addresses each proxy saw, the nearest last.
    Walking it from the right, the first address that is not a trusted proxy
    is the client; anything further left could have been written by the
    client itself.
    """
    if peer is None or peer not in trusted or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop[:64]
    return peer


async def build_context(request: Request) -> Context:
    return await context_from_scope(request.scope)


async def context_from_scope(scope: MutableMapping[str, Any]) -> Context:
    """Build the context of an HTTP request from its ASGI scope.

    The headers are read from the scope in one pass: Starlette's request
    object would build a header map and a state object for each request.
    """
    services: Services = scope["app"].state.services
    state = scope.setdefault("state", {})
    request_id = state.get("request_id") or uuid.uuid4().hex
    state["request_id"] = request_id
    authorization: list[str] = []
    forwarded_for = user_agent = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization.append(value.decode("latin-1"))
        elif name == b"x-forwarded-for" and forwarded_for is None:
            forwarded_for = value.decode("latin-1")
        elif name == b"user-agent" and user_agent is None:
            user_agent = value.decode("latin-1")
    if len(authorization) > 1:
        # Proxies disagree on which of several headers counts; trust none.
        principal, failure = None, "several Authorization headers were sent"
    else:
        principal, failure = await load_principal(
            services, authorization[0] if authorization else None
        )
    client = scope.get("client")
    return Context(
        services=services,
        request_id=request_id,
        principal=principal,
        auth_failure=failure,
        client_ip=client_ip(
            client[0] if client else None,
            forwarded_for,
            services.settings.trusted_proxy_set,
        ),
        user_agent=user_agent,
    )
