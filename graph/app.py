"""FastAPI application factory."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from graph.api import FieldguardSchema, build_schema
from graph.context import Context, build_context, context_from_scope
from graph.errors import to_client_errors
from graph.health import healthz, readyz
from graph.http import ASGIApp, Receive, RequestGuard, Scope, Send, load_json
from graph.known import KnownOperationRunner
from graph.metrics import MODEL_LOAD, metrics_endpoint
from graph.services import (
    PermissionCache,
    ServedModels,
    Services,
    build_account_tools,
    build_clock,
    build_quota,
    build_session_policy,
    build_throttle,
    token_settings,
)
from graph.settings import Settings
from graph.tokens import public_jwks
from ml.registry import LoadedModel, load_all
from schema.audit import AuditBuffer
from schema.database import create_service_engine, create_session_factory
from schema.revocation import listener_for, marker_for

logger = logging.getLogger(__name__)


GRAPHIQL_ASSETS = Path(__file__).with_name("static") / "graphiql"


class FieldguardGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with stable error codes on every response, and a
    GraphiQL page served from fieldguard's own copy of its scripts.

    The request guard hands `/graphql` straight to this view: FastAPI's
    router would add dependency solving and its middleware to every request
    and do nothing with them.
    """

    def __init__(self, schema: FieldguardSchema, **options: Any) -> None:
        super().__init__(schema, **options)
        self.known_runner: KnownOperationRunner | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run known operations directly; hand everything else to Strawberry."""
        runner = self.known_runner
        if runner is None or scope["type"] != "http" or scope["method"] != "POST":
            await super().__call__(scope, receive, send)
            return
        if not await runner.run(scope, send):
            await super().__call__(scope, receive, send)

    async def get_context(self, request: Request, response: Response) -> Context:
        return await build_context(request)

    def decode_json(self, data: str | bytes) -> object:
        return load_json(data)

    def encode_json(self, data: object) -> bytes:
        # A batch response contains thousands of floats, which orjson writes
        # several times faster than the standard encoder.
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse((GRAPHIQL_ASSETS / "index.html").read_text("utf-8"))

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:
            result.errors = to_client_errors(
                result.errors,
                getattr(request.state, "request_id", None),
                hide_suggestions=request.app.state.hide_suggestions,
            )
        return await super().process_result(request, result)


class FieldguardApp(FastAPI):
    """FastAPI, with `/graphql` requests handed straight to the request guard.

    The guard bounds the body, catches every error and adds the headers, so
    Starlette's middleware in front of it would only add work to each query.
    Every other path goes through FastAPI's stack, the same guard included.
    """

    direct_guard: RequestGuard | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.direct_guard
        if (
            guard is not None
            and scope["type"] == "http"
            and scope["path"] in guard.routes
        ):
            scope["app"] = self
            await guard(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings, *, models: dict[str, LoadedModel] | None = None
) -> FastAPI:
    """Build the application.

    The models are loaded here, before the server accepts connections, so
    that a missing or broken model stops the start with its message, and the
    schema gets an input type for each of them.

    Raises:
        ml.errors.ModelUnavailable: The model cannot be loaded.
        graph.settings.SettingsError: The settings do not allow a start.
    """
    if models is None:
        with MODEL_LOAD.time():
            models = load_all(settings.resolved_model_dir)
    served = ServedModels(settings.resolved_model_dir, models)
    tokens = token_settings(settings)
    accounts = build_account_tools(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_service_engine(
            settings.resolved_database_url, pool_size=settings.database_pool_size
        )
        throttle = build_throttle(settings)
        session_factory = create_session_factory(engine)
        audit_buffer = AuditBuffer(session_factory, accounts.cipher)
        listener = listener_for(engine.url)
        if listener is not None:
            listener.start()
        app.state.services = Services(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            tokens=tokens,
            accounts=accounts,
            models=served,
            clock=build_clock(settings),
            session_policy=build_session_policy(settings),
            throttle=throttle,
            quota=build_quota(settings, throttle),
            permission_cache=PermissionCache(),
            audit_buffer=audit_buffer,
            change_marker=listener or marker_for(engine.url),
        )
        logger.info(
            "Serving %s on %s database (%s mode)",
            ", ".join(
                f"model {name} version {loaded.metadata.version}"
                for name, loaded in models.items()
            ),
            engine.dialect.name,
            settings.env.value,
        )
        # Objects built at start-up (schema, models, caches) live as long as
        # the process: moving them out of the collector's view keeps full
        # collections, which otherwise set the tail latency, short.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await audit_buffer.close()
            if listener is not None:
                await listener.stop()
            await engine.dispose()

    schema = build_schema(
        served.shapes,
        max_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_query_tokens,
        max_cost=settings.max_query_cost,
        max_page_size=settings.max_page_size,
        guard_introspection=settings.is_production,
        max_batch_operations=settings.max_batch_operations,
    )
    graphql_view = FieldguardGraphQL(
        schema,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        allow_queries_via_get=settings.get_queries_enabled,
        multipart_uploads_enabled=False,
        # No subscriptions: the WebSocket transport would bypass the error
        # handling of the HTTP path.
        subscription_protocols=(),
    )
    graphql_view.known_runner = KnownOperationRunner(
        schema,
        schema.known_operations,
        context_from_scope,
        hide_suggestions=settings.is_production,
    )
    app = FieldguardApp(
        title="fieldguard",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    graphql_app: ASGIApp = graphql_view
    if settings.graphiql_enabled:
        app.mount(
            "/graphiql-static",
            StaticFiles(directory=GRAPHIQL_ASSETS),
            name="graphiql-static",
        )

    app.add_route(
        "/metrics",
        metrics_endpoint(
            settings.metrics_token.get_secret_value()
            if settings.metrics_token
            else None,
            required=settings.is_production,
        ),
        methods=["GET"],
    )
    app.add_route("/healthz", healthz, methods=["GET"])
    app.add_route("/readyz", readyz, methods=["GET"])

    @app.get("/.well-known/jwks.json", include_in_schema=False)
    async def jwks() -> dict[str, list[dict[str, object]]]:
        """Publish the access token verification keys for other services."""
        return public_jwks(tokens)

    app.state.hide_suggestions = settings.is_production
    if settings.cors_origin_list:
        cors = {
            "allow_origins": settings.cors_origin_list,
            "allow_methods": ["POST", "GET"],
            "allow_headers": ["Authorization", "Content-Type", "X-Request-ID"],
            "expose_headers": ["X-Request-ID"],
            "max_age": 600,
        }
        app.add_middleware(CORSMiddleware, **cors)
        graphql_app = CORSMiddleware(graphql_view, **cors)
    guard_options: dict[str, Any] = {
        "owner": app,
        "routes": {"/graphql": graphql_app},
        "max_body_bytes": settings.max_body_bytes,
        "max_batch_operations": settings.max_batch_operations,
        "timeout_seconds": settings.request_timeout_seconds,
        "trusted_proxies": settings.trusted_proxy_set,
    }
    # Added last, so it is outermost and sees every response, CORS ones too.
    app.add_middleware(RequestGuard, **guard_options)
    app.direct_guard = RequestGuard(app, **guard_options)
    return app


def create_app_from_environment() -> FastAPI:
    """Build the application from the environment, in a worker process.

    `fieldguard serve --workers N` runs one of these per worker; each loads
    its own model and opens its own database pool.
    """
    from graph.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, json_lines=settings.json_logs_enabled)
    return create_app(settings)
