"""Measure what the per-request token check costs.

Builds a service on a temporary SQLite database (or the database in
FIELDGUARD_DATABASE_URL), signs a user in, and times, in one process:

- verifying the JWT alone;
- the whole check a request pays: JWT, one query for the session and the
  user's auth version, and the permission cache.

Run: .venv/bin/python bench/auth_check.py [--rounds N]
"""

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from graph.context import load_principal
from graph.services import (
    PermissionCache,
    Services,
    build_account_tools,
    build_clock,
    build_quota,
    build_session_policy,
    build_throttle,
    token_settings,
)
from graph.settings import Settings
from graph.tokens import issue_access_token, verify_access_token
from schema.audit import AuditBuffer
from schema.database import create_service_engine, create_session_factory, migrate
from schema.revocation import listener_for, marker_for
from schema.roles import seed_catalogue
from schema.sessions import start_session
from schema.users import create_user


async def measure(rounds: int, database_url: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="fieldguard-bench-"))
    settings = Settings(
        data_dir=folder,
        database_url=database_url or f"sqlite:///{folder / 'bench.db'}",
        argon2_memory_cost_kib=64,
        argon2_time_cost=1,
    )
    migrate(settings.resolved_database_url)
    engine = create_service_engine(settings.resolved_database_url)
    sessions = create_session_factory(engine)
    accounts = build_account_tools(settings)
    throttle = build_throttle(settings)
    services = Services(
        settings=settings,
        engine=engine,
        session_factory=sessions,
        tokens=token_settings(settings),
        accounts=accounts,
        models=None,  # type: ignore[arg-type]
        clock=build_clock(settings),
        session_policy=build_session_policy(settings),
        throttle=throttle,
        quota=build_quota(settings, throttle),
        permission_cache=PermissionCache(),
        audit_buffer=AuditBuffer(sessions, accounts.cipher),
    )
    async with sessions() as session, session.begin():
        await seed_catalogue(session)
        user = await create_user(
            session,
            accounts,
            username="bench-user",
            password="Zq8-bench-password-1",  # noqa: S106 - a throwaway user
            role_names=["analyst"],
        )
        opened = await start_session(
            session,
            accounts.cipher,
            user_id=user.id,
            client_ip="127.0.0.1",
            user_agent="bench",
            now=services.clock.now(),
            policy=services.session_policy,
        )
        version = user.auth_version
    token = issue_access_token(
        services.tokens,
        user_id=user.id,
        session_id=opened.session_id,
        version=version,
    ).token
    header = f"Bearer {token}"

    def timed_jwt() -> float:
        started = time.perf_counter()
        verify_access_token(services.tokens, token)
        return time.perf_counter() - started

    async def timed_check() -> float:
        started = time.perf_counter()
        principal, _ = await load_principal(services, header)
        elapsed = time.perf_counter() - started
        assert principal is not None
        return elapsed

    for _ in range(200):  # warm-up
        timed_jwt()
        await timed_check()
    jwt_only = [timed_jwt() for _ in range(rounds)]
    full = [await timed_check() for _ in range(rounds)]

    # As the service runs: state kept while the change marker is the same.
    listener = listener_for(engine.url)
    if listener is not None:
        listener.start()
        for _ in range(500):
            if listener.current() is not None:
                break
            await asyncio.sleep(0.01)
        else:
            raise SystemExit("The change listener did not connect within 5 s.")
    services.change_marker = listener or marker_for(engine.url)
    for _ in range(200):
        await timed_check()
    with_marker = [await timed_check() for _ in range(rounds)]
    if listener is not None:
        await listener.stop()
    await engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)

    def describe(samples: list[float]) -> str:
        ordered = sorted(samples)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        return (
            f"median {statistics.median(samples) * 1e6:7.1f} us, "
            f"p99 {p99 * 1e6:7.1f} us"
        )

    print(f"database: {engine.dialect.name}, rounds: {rounds}")
    print(f"JWT verify only:              {describe(jwt_only)}")
    print(f"JWT + session/version check:  {describe(full)}")
    print(f"the same, with the marker:    {describe(with_marker)}")
    print(
        "added by the revocation check: "
        f"{(statistics.median(full) - statistics.median(jwt_only)) * 1e6:.1f} us median"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(measure(args.rounds, args.database_url))


if __name__ == "__main__":
    main()
