"""Long-lived service objects and how they are built from settings."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from graph.settings import Settings, read_data_keys_file
from graph.tokens import TokenSettings
from ml.registry import LoadedModel
from schema.crypto import DataCipher
from schema.passwords import PasswordHasher, PasswordPolicy, ThreadedPasswordHasher
from schema.users import AccountTools


@dataclass(slots=True)
class Services:
    """Long-lived service objects, built at start-up."""

    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    tokens: TokenSettings
    accounts: AccountTools
    model: LoadedModel

    @property
    def cipher(self) -> DataCipher:
        return self.accounts.cipher

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Open a session in a transaction, committed when the block succeeds."""
        async with self.session_factory() as session, session.begin():
            yield session


def build_account_tools(settings: Settings) -> AccountTools:
    """Build the cipher, hasher and password policy that account changes use."""
    hasher = PasswordHasher(
        memory_cost_kib=settings.argon2_memory_cost_kib,
        time_cost=settings.argon2_time_cost,
        parallelism=settings.argon2_parallelism,
    )
    return AccountTools(
        cipher=build_cipher(settings),
        hasher=ThreadedPasswordHasher(
            hasher, max_concurrent=settings.max_concurrent_hashes
        ),
        policy=PasswordPolicy(min_length=settings.password_min_length),
    )


def build_cipher(settings: Settings) -> DataCipher:
    keys = settings.load_data_keys()
    if settings.data_keys is not None:
        return DataCipher(keys)
    # Development keys live in a file that `fieldguard rotate-data-key` can
    # extend while workers run; they reload it on meeting a new key id.
    path = settings.data_keys_path
    return DataCipher(keys, reload=lambda: read_data_keys_file(path))


def token_settings(settings: Settings) -> TokenSettings:
    return TokenSettings(
        secret=settings.signing_secret(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
        leeway_seconds=settings.token_leeway_seconds,
    )
