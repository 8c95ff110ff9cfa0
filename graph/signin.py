"""Sign-in flows: password login with throttling, refresh and sign-out.

The resolvers call these functions. They keep the ordering rules that
matter for security: throttle before hashing, audit even on failure, and
commit a revocation before reporting the failure that caused it.
"""

import asyncio
import logging
from dataclasses import dataclass

from graph.context import Context
from graph.errors import ClientError, ErrorCode
from graph.metrics import LOGIN_DELAYS, LOGINS
from graph.tokens import issue_access_token
from schema.audit import Actor, record_event
from schema.errors import InvalidCredentials
from schema.sessions import (
    InvalidRefreshToken,
    clear_expired_grace,
    client_fingerprint,
    load_access_state,
    rotate,
    start_session,
)
from schema.throttle import ThrottleDecision, ThrottleUnavailable
from schema.users import authenticate, get_user_by_username, username_key

logger = logging.getLogger(__name__)

# Longer values are not looked up at all; they can match no stored account.
MAX_LOGIN_FIELD_LENGTH = 1024
MAX_REFRESH_TOKEN_LENGTH = 256
INVALID_REFRESH_MESSAGE = "The refresh token is invalid or its session has ended."


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    password_change_required: bool


def _actor(context: Context, *, user_id: int | None, username: str | None) -> Actor:
    base = context.actor()
    return Actor(
        user_id=user_id,
        username=username,
        client_ip=base.client_ip,
        user_agent=base.user_agent,
        request_id=base.request_id,
    )


async def _audit(
    context: Context,
    *,
    action: str,
    outcome: str,
    actor: Actor,
    target_type: str,
    target_id: object,
    details: dict[str, object],
) -> None:
    services = context.services
    async with services.transaction() as session:
        await record_event(
            session,
            services.cipher,
            actor=actor,
            action=action,
            outcome=outcome,
            target_type=target_type,
            target_id=target_id,
            details=details,
        )


async def _throttle_decision(context: Context, account: str) -> ThrottleDecision | None:
    services = context.services
    try:
        return await services.throttle.admit(account, context.client_ip)
    except ThrottleUnavailable as error:
        if services.settings.throttle_failure_mode == "open":
            logger.warning(
                "Login throttle store failed; letting sign-in through unthrottled "
                "(request_id=%s): %s",
                context.request_id,
                error,
            )
            return None
        logger.error(
            "Login throttle store failed; refusing sign-in (request_id=%s): %s",
            context.request_id,
            error,
        )
        raise ClientError(
            ErrorCode.SERVICE_UNAVAILABLE,
            "Sign-in is unavailable right now; try again.",
        ) from error


async def password_login(context: Context, username: str, password: str) -> TokenPair:
    """Check a username and password and open a session.

    Raises:
        InvalidCredentials: Any failure, locks included; the client sees one
            generic error.
        ClientError: The throttle store failed and the mode is `closed`.
    """
    services = context.services
    hasher = services.accounts.hasher
    oversized = (
        len(username) > MAX_LOGIN_FIELD_LENGTH or len(password) > MAX_LOGIN_FIELD_LENGTH
    )
    account = "" if oversized else username_key(username)
    try:
        if oversized:
            # Still costs one hash, so that the length does not shorten the
            # response.
            await hasher.verify("x", None)
            raise InvalidCredentials("oversized_input")
        decision = await _throttle_decision(context, account)
        if decision is not None and decision.locked:
            await hasher.verify("x", None)
            async with services.session_factory() as session:
                # For the audit log only; the client learns nothing of it.
                locked = await get_user_by_username(session, username)
            raise InvalidCredentials(
                decision.reason or "locked", locked.id if locked else None
            )
        if decision is not None and decision.delay_seconds:
            LOGIN_DELAYS.inc()
            await asyncio.sleep(decision.delay_seconds)
        signed_in = await authenticate(
            services.session_factory,
            services.accounts,
            username=username,
            password=password,
            max_consecutive_failures=services.settings.login_max_consecutive_failures,
        )
    except InvalidCredentials as error:
        logger.info(
            "Login failed: reason=%s user_id=%s ip=%s request_id=%s",
            error.reason,
            error.user_id,
            context.client_ip,
            context.request_id,
        )
        outcome = "locked" if "locked" in error.reason else "failure"
        LOGINS.labels(outcome=outcome, reason=error.reason).inc()
        await _audit(
            context,
            action="login",
            outcome=outcome,
            actor=_actor(context, user_id=error.user_id, username=None),
            target_type="user",
            target_id=error.user_id,
            details={"reason": error.reason},
        )
        raise

    try:
        await services.throttle.reset_account(account)
    except ThrottleUnavailable as error:
        logger.warning("Could not reset the login throttle: %s", error)
    now = services.clock.now()
    actor = _actor(context, user_id=signed_in.user_id, username=signed_in.username)
    async with services.transaction() as session:
        opened = await start_session(
            session,
            services.cipher,
            user_id=signed_in.user_id,
            client_ip=context.client_ip,
            user_agent=context.user_agent,
            now=now,
            policy=services.session_policy,
        )
        await record_event(
            session,
            services.cipher,
            actor=actor,
            action="login",
            outcome="success",
            target_type="user",
            target_id=signed_in.user_id,
            details={"session": opened.session_id},
        )
    LOGINS.labels(outcome="success", reason="ok").inc()
    logger.info(
        "Login succeeded: user_id=%s ip=%s request_id=%s",
        signed_in.user_id,
        context.client_ip,
        context.request_id,
    )
    issued = issue_access_token(
        services.tokens,
        user_id=signed_in.user_id,
        session_id=opened.session_id,
        version=signed_in.auth_version,
        now=now.timestamp(),
    )
    return TokenPair(
        access_token=issued.token,
        expires_in=issued.expires_in,
        refresh_token=opened.refresh_token,
        password_change_required=signed_in.must_change_password,
    )


async def refresh(context: Context, token: str) -> TokenPair:
    """Rotate a refresh token and issue a new access token.

    Raises:
        ClientError: UNAUTHENTICATED when the token is unknown, used twice, or
            its session or user is no longer valid.
    """
    services = context.services
    now = services.clock.now()
    failure: InvalidRefreshToken | None = None
    pair: TokenPair | None = None
    if len(token) > MAX_REFRESH_TOKEN_LENGTH:
        failure = InvalidRefreshToken("unknown")
    else:
        # A reuse revokes the session inside this transaction; the failure is
        # reported only after the revocation has been committed.
        async with services.transaction() as session:
            try:
                await clear_expired_grace(session, now)
                issued = await rotate(
                    session,
                    services.cipher,
                    token=token,
                    client=client_fingerprint(context.client_ip, context.user_agent),
                    now=now,
                    policy=services.session_policy,
                )
                state = await load_access_state(session, issued.session_id)
                if state is None or not state.user_active:
                    raise InvalidRefreshToken(
                        "inactive_user", session_id=issued.session_id
                    )
                access = issue_access_token(
                    services.tokens,
                    user_id=state.user_id,
                    session_id=issued.session_id,
                    version=state.auth_version,
                    now=now.timestamp(),
                )
                pair = TokenPair(
                    access_token=access.token,
                    expires_in=access.expires_in,
                    refresh_token=issued.refresh_token,
                    password_change_required=state.must_change_password,
                )
            except InvalidRefreshToken as error:
                failure = error
    if failure is None:
        assert pair is not None
        return pair

    logger.info(
        "Refresh failed: reason=%s session=%s ip=%s request_id=%s",
        failure.reason,
        failure.session_id,
        context.client_ip,
        context.request_id,
    )
    if failure.reason == "reused":
        await _audit(
            context,
            action="session.refresh_reuse",
            outcome="denied",
            actor=_actor(context, user_id=failure.user_id, username=None),
            target_type="session",
            target_id=failure.session_id,
            details={"revoked": True},
        )
    raise ClientError(ErrorCode.UNAUTHENTICATED, INVALID_REFRESH_MESSAGE)
