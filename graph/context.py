"""The request context: who is calling, and the services a resolver may use.

The context is built once per request, in `async def` so that it does not
cost a thread-pool hop. The bearer token is verified and the user loaded here,
once, so that permission checks on every field are set lookups.
"""

import logging
import uuid
from dataclasses import dataclass

from starlette.requests import Request
from strawberry.fastapi import BaseContext

from graph.services import Services
from graph.tokens import InvalidToken, verify_access_token
from schema.audit import Actor
from schema.users import effective_permissions, get_active_user

logger = logging.getLogger(__name__)


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
    try:
        claims = verify_access_token(services.tokens, token)
    except InvalidToken as error:
        logger.info("Rejected access token: %s", error)
        return None, "the access token is invalid or expired"

    async with services.session_factory() as session:
        user = await get_active_user(session, claims.user_id)
        if user is None:
            logger.info(
                "Rejected access token of missing or inactive user %s", claims.user_id
            )
            return None, "the access token is invalid or expired"
        principal = Principal(
            user_id=user.id,
            username=user.username,
            roles=tuple(user.role_names),
            permissions=effective_permissions(user),
            password_change_required=user.must_change_password,
        )
    return principal, None


async def build_context(request: Request) -> Context:
    services: Services = request.app.state.services
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    request.state.request_id = request_id
    authorization = request.headers.getlist("authorization")
    if len(authorization) > 1:
        # Proxies disagree on which of several headers counts; trust none.
        principal, failure = None, "several Authorization headers were sent"
    else:
        principal, failure = await load_principal(
            services, authorization[0] if authorization else None
        )
    return Context(
        services=services,
        request_id=request_id,
        principal=principal,
        auth_failure=failure,
        client_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
