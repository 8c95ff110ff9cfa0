"""Liveness and readiness endpoints for load balancers and orchestrators."""

import asyncio
import logging

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from graph.services import Services

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(_request: Request) -> JSONResponse:
    """Report that the process is up and serving HTTP."""
    return JSONResponse({"status": "ok"})


async def _check_database(services: Services) -> None:
    # A real table, not SELECT 1: a SQLite file that was moved or replaced
    # still runs SELECT 1 but has lost the schema.
    async with services.engine.connect() as connection:
        await connection.execute(text("SELECT version_num FROM alembic_version"))


async def _check_redis(services: Services) -> None:
    if not await services.throttle.storage.check():
        raise ConnectionError("Redis did not respond to PING")


async def readyz(request: Request) -> JSONResponse:
    """Report whether every dependency responds, each within a bounded time.

    The body names each check and its result, so that an operator sees what
    is wrong; the status is 503 when any check fails.
    """
    services: Services = request.app.state.services
    checks: dict[str, str] = {"models": "ok" if services.models.holders else "missing"}
    probes = {"database": _check_database(services)}
    if services.settings.redis_url:
        probes["redis"] = _check_redis(services)
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            checks[name] = f"timed out after {CHECK_TIMEOUT_SECONDS:g} s"
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks[name] = f"failed: {type(error).__name__}"
            logger.warning("Readiness check %s failed: %s", name, error)
        else:
            checks[name] = "ok"
    ready = all(result == "ok" for result in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )
