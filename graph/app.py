"""FastAPI application factory."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from graph.api import build_schema
from graph.context import Context, build_context
from graph.errors import to_client_errors
from graph.http import RequestGuard
from graph.services import Services, build_account_tools, token_settings
from graph.settings import Settings
from ml.registry import LoadedModel, load_latest
from schema.database import create_service_engine, create_session_factory

logger = logging.getLogger(__name__)


class FieldguardRouter(GraphQLRouter[Context, None]):
    """Strawberry's FastAPI router with stable error codes on every response."""

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:
            result.errors = to_client_errors(
                result.errors, getattr(request.state, "request_id", None)
            )
        return await super().process_result(request, result)


def create_app(settings: Settings, *, model: LoadedModel | None = None) -> FastAPI:
    """Build the application.

    The model is loaded here, before the server accepts connections, so that
    a missing or broken model stops the start with its message.

    Raises:
        ml.errors.ModelUnavailable: The model cannot be loaded.
        graph.settings.SettingsError: The settings do not allow a start.
    """
    if model is None:
        model = load_latest(settings.resolved_model_dir, settings.model_name)
    tokens = token_settings(settings)
    accounts = build_account_tools(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_service_engine(
            settings.resolved_database_url, pool_size=settings.database_pool_size
        )
        app.state.services = Services(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            tokens=tokens,
            accounts=accounts,
            model=model,
        )
        logger.info(
            "Serving model %s version %s on %s database (%s mode)",
            model.metadata.name,
            model.metadata.version,
            engine.dialect.name,
            settings.env.value,
        )
        try:
            yield
        finally:
            await engine.dispose()

    schema = build_schema(
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_query_tokens,
    )
    router = FieldguardRouter(
        schema,
        context_getter=build_context,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        multipart_uploads_enabled=False,
        # No subscriptions: the WebSocket transport would bypass the error
        # handling of the HTTP path.
        subscription_protocols=(),
    )
    app = FastAPI(
        title="fieldguard",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(router, prefix="/graphql")
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    return app
