"""Sessions and their refresh tokens.

A refresh token is 256 random bits, shown to the client once and stored only
as its SHA-256 hash: the token is already unguessable, so a slow password
hash would add nothing. Each use rotates it. Using a token a second time
revokes the whole session, except that a retry with the immediate
predecessor within a few seconds receives the same new token again, so that
a client that lost a response is not signed out.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from schema.clock import as_utc
from schema.crypto import DataCipher
from schema.tables import RefreshToken, Session, User

CLIENT_IP_CONTEXT = "sessions.client_ip"
USER_AGENT_CONTEXT = "sessions.user_agent"
GRACE_TOKEN_CONTEXT = "sessions.grace_token"  # noqa: S105 - a column name
MAX_USER_AGENT_LENGTH = 512
# last_used_at is written at most this often, so that idle tracking costs one
# UPDATE per session a minute instead of one per request.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_timeout: timedelta = timedelta(minutes=30)
    absolute_lifetime: timedelta = timedelta(hours=12)
    reuse_grace: timedelta = timedelta(seconds=10)


class InvalidRefreshToken(Exception):
    """The refresh token is unknown, or its session has ended.

    Attributes:
        reason: Why, for logs and the audit log only.
        session_id: The session the token belonged to, when known.
        user_id: Its user, when known.
    """

    def __init__(
        self, reason: str, *, session_id: str | None = None, user_id: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session_id = session_id
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class IssuedSession:
    session_id: str
    user_id: int
    refresh_token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def is_live(row: Session, now: datetime, policy: SessionPolicy) -> bool:
    """Tell whether a session is neither revoked, idle too long, nor too old."""
    return (
        row.revoked_at is None
        and now < as_utc(row.expires_at)
        and now < as_utc(row.last_used_at) + policy.idle_timeout
    )


async def start_session(
    session: AsyncSession,
    cipher: DataCipher,
    *,
    user_id: int,
    client_ip: str | None,
    user_agent: str | None,
    now: datetime,
    policy: SessionPolicy,
) -> IssuedSession:
    """Open a session for a user who just signed in and issue its first token."""
    token = new_refresh_token()
    row = Session(
        id=secrets.token_hex(16),
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        expires_at=now + policy.absolute_lifetime,
        client_ip_sealed=cipher.seal_optional(client_ip, context=CLIENT_IP_CONTEXT),
        user_agent_sealed=cipher.seal_optional(
            user_agent[:MAX_USER_AGENT_LENGTH] if user_agent else None,
            context=USER_AGENT_CONTEXT,
        ),
    )
    session.add(row)
    # Flushed first: without a relationship, the unit of work may order the
    # token row before the session row its foreign key needs.
    await session.flush()
    session.add(
        RefreshToken(token_hash=hash_token(token), session_id=row.id, issued_at=now)
    )
    await session.flush()
    return IssuedSession(session_id=row.id, user_id=user_id, refresh_token=token)


def client_fingerprint(client_ip: str | None, user_agent: str | None) -> str:
    """Return a digest of where a request comes from, for the retry grace."""
    return hashlib.sha256(f"{client_ip}|{user_agent}".encode()).hexdigest()


async def clear_expired_grace(session: AsyncSession, now: datetime) -> None:
    """Forget replacement tokens whose retry window has passed.

    Until then a sealed copy of the current refresh token is kept for the
    retry; afterwards only its hash should remain.
    """
    await session.execute(
        update(Session)
        .where(Session.grace_token_sealed.is_not(None), Session.grace_until < now)
        .values(grace_token_sealed=None, grace_from_hash=None)
        .execution_options(synchronize_session=False)
    )


async def rotate(
    session: AsyncSession,
    cipher: DataCipher,
    *,
    token: str,
    client: str,
    now: datetime,
    policy: SessionPolicy,
) -> IssuedSession:
    """Exchange a refresh token for a new one.

    A retry with the token just replaced gets the same new token only within
    the grace period and only from the same client (IP and user agent) as
    the rotation. Any other use of a used token counts as reuse.

    Raises:
        InvalidRefreshToken: The token is unknown or its session ended. When
            the token was already used outside the grace period, the session
            is revoked first (reason `reused`), in the caller's transaction.
    """
    token_hash = hash_token(token)
    record = await session.get(RefreshToken, token_hash)
    if record is None:
        raise InvalidRefreshToken("unknown")
    row = await session.get(Session, record.session_id)
    if row is None:
        raise InvalidRefreshToken("unknown")
    if not is_live(row, now, policy):
        raise InvalidRefreshToken(
            "session_ended", session_id=row.id, user_id=row.user_id
        )

    # The conditional UPDATE lets exactly one of two concurrent uses win; the
    # other waits for the row lock and then finds the token used.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount == 1:
        replacement = new_refresh_token()
        session.add(
            RefreshToken(
                token_hash=hash_token(replacement), session_id=row.id, issued_at=now
            )
        )
        row.last_used_at = now
        row.grace_token_sealed = cipher.seal(
            f"{client}:{replacement}", context=GRACE_TOKEN_CONTEXT
        )
        row.grace_from_hash = token_hash
        row.grace_until = now + policy.reuse_grace
        await session.flush()
        return IssuedSession(
            session_id=row.id, user_id=row.user_id, refresh_token=replacement
        )

    await session.refresh(row)
    if (
        row.grace_from_hash == token_hash
        and row.grace_until is not None
        and now <= as_utc(row.grace_until)
        and row.grace_token_sealed is not None
    ):
        rotated_for, _, again = cipher.open(
            row.grace_token_sealed, context=GRACE_TOKEN_CONTEXT
        ).partition(":")
        if hmac.compare_digest(rotated_for, client):
            return IssuedSession(
                session_id=row.id, user_id=row.user_id, refresh_token=again
            )

    await revoke_session(session, row.id, reason="reused", now=now)
    raise InvalidRefreshToken("reused", session_id=row.id, user_id=row.user_id)


async def revoke_session(
    session: AsyncSession, session_id: str, *, reason: str, now: datetime
) -> bool:
    """End one session; returns whether it was still open."""
    result = await session.execute(
        update(Session)
        .where(Session.id == session_id, Session.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason, grace_token_sealed=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def revoke_user_sessions(
    session: AsyncSession, user_id: int, *, reason: str, now: datetime
) -> int:
    """End every open session of a user; returns how many were open."""
    result = await session.execute(
        update(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason, grace_token_sealed=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def touch(session: AsyncSession, session_id: str, now: datetime) -> None:
    """Record activity on a session, at most once per `TOUCH_INTERVAL`."""
    await session.execute(
        update(Session)
        .where(Session.id == session_id, Session.last_used_at < now - TOUCH_INTERVAL)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Session)
        .where(Session.id == session_id, Session.grace_until < now)
        .values(grace_token_sealed=None, grace_from_hash=None)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    user_id: int
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    client_ip: str | None
    user_agent: str | None


async def list_sessions(
    session: AsyncSession,
    cipher: DataCipher,
    user_id: int,
    *,
    now: datetime,
    policy: SessionPolicy,
) -> list[SessionInfo]:
    """Return a user's live sessions, newest first."""
    rows = await session.scalars(
        select(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
        .order_by(Session.created_at.desc())
    )
    return [
        SessionInfo(
            id=row.id,
            user_id=row.user_id,
            created_at=as_utc(row.created_at),
            last_used_at=as_utc(row.last_used_at),
            expires_at=as_utc(row.expires_at),
            client_ip=cipher.open_optional(
                row.client_ip_sealed, context=CLIENT_IP_CONTEXT
            ),
            user_agent=cipher.open_optional(
                row.user_agent_sealed, context=USER_AGENT_CONTEXT
            ),
        )
        for row in rows
        if is_live(row, now, policy)
    ]


@dataclass(frozen=True, slots=True)
class AccessState:
    """Session and user state that an access token check reads."""

    user_id: int
    username: str
    user_active: bool
    must_change_password: bool
    auth_version: int
    session: Session


async def load_access_state(
    session: AsyncSession, session_id: str
) -> AccessState | None:
    """Load a session with its user's state in one query."""
    row = (
        await session.execute(
            select(
                Session,
                User.username,
                User.is_active,
                User.must_change_password,
                User.auth_version,
            )
            .join(User, User.id == Session.user_id)
            .where(Session.id == session_id)
        )
    ).first()
    if row is None:
        return None
    return AccessState(
        user_id=row.Session.user_id,
        username=row.username,
        user_active=row.is_active,
        must_change_password=row.must_change_password,
        auth_version=row.auth_version,
        session=row.Session,
    )


async def count_open_sessions(session: AsyncSession, now: datetime) -> int:
    """Count sessions neither revoked nor past their absolute lifetime."""
    count = await session.scalar(
        select(func.count())
        .select_from(Session)
        .where(Session.revoked_at.is_(None), Session.expires_at > now)
    )
    return int(count or 0)
