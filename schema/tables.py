"""SQLAlchemy tables of users, roles and permissions."""

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Constraint names are fixed so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)

role_permissions = Table(
    "role_permissions",
    Base.metadata,
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "permission_name",
        ForeignKey("permissions.name", ondelete="CASCADE"),
        primary_key=True,
    ),
)


class PermissionRow(Base):
    """A permission of the catalogue, mirrored in the database for joins."""

    __tablename__ = "permissions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text)


class Role(Base):
    """A named set of permissions."""

    __tablename__ = "roles"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    permissions: Mapped[list[PermissionRow]] = relationship(
        secondary=role_permissions, lazy="selectin"
    )

    @property
    def permission_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.permissions)


class User(Base):
    """A person or program that signs in."""

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # `username` keeps the spelling the user chose (NFKC-normalized);
    # `username_key` is its case-folded form, unique so that `Alice` and `alice`
    # cannot both exist.
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Personal data is stored sealed (see schema.crypto); `email_index` is the
    # keyed hash of the normalized address, unique and used for exact lookups.
    email_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    email_index: Mapped[str | None] = mapped_column(
        String(64), unique=True, nullable=True
    )
    display_name_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Set by an admin password reset: the user must choose a new password
    # before the account can do anything else.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped by every change that must end the user's access tokens at once:
    # password change or reset, deactivation, a change of roles or of a role's
    # permissions. Access tokens carry the version they were issued under.
    auth_version: Mapped[int] = mapped_column(Integer, default=1)
    # Consecutive failed sign-ins; the account locks when it reaches the cap.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    # Service accounts sign in only with API keys, never with a password.
    is_service_account: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, onupdate=utc_now
    )
    roles: Mapped[list[Role]] = relationship(secondary=user_roles, lazy="selectin")

    @property
    def role_names(self) -> list[str]:
        return sorted(role.name for role in self.roles)

    @property
    def permission_names(self) -> frozenset[str]:
        names: set[str] = set()
        for role in self.roles:
            names.update(role.permission_names)
        return frozenset(names)


class AuditEvent(Base):
    """A security-relevant action: who did what to whom, and how it ended."""

    __tablename__ = "audit_events"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utc_now, index=True
    )
    # Ids are kept without foreign keys, so that events outlive deleted users.
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor_username: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    client_ip_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_agent_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Free-form facts about the event; never a password, token or personal data.
    details: Mapped[str | None] = mapped_column(Text, nullable=True)


class Session(Base):
    """A sign-in: the refresh tokens issued from it and when it ends."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    client_ip_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_agent_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The refresh token that the latest rotation issued, sealed, and until
    # when a retry with its predecessor may receive it again.
    grace_token_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    grace_from_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    grace_until: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class RefreshToken(Base):
    """One refresh token of a session, stored only as its SHA-256 hash."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )


class ApiKey(Base):
    """A credential of a service account, scoped to a set of permissions."""

    __tablename__ = "api_keys"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    # Public part of the key, shown in listings and used to find the row.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    permissions: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    last_used_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    revoked_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )

    @property
    def permission_names(self) -> frozenset[str]:
        return frozenset(name for name in self.permissions.split(",") if name)
