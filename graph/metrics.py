"""Prometheus metrics, and the endpoint that serves them.

With PROMETHEUS_MULTIPROC_DIR set (several worker processes), values are
written to that folder and every scrape merges all processes.
"""

import hmac
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from graphql import GraphQLError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from strawberry.extensions import SchemaExtension

from graph.errors import client_code
from schema.sessions import count_open_sessions

logger = logging.getLogger(__name__)
# One line per GraphQL operation: name, outcome code, caller and latency.
operations_logger = logging.getLogger("fieldguard.operations")

REQUESTS = Counter(
    "fieldguard_graphql_requests_total",
    "GraphQL operations by operation name and outcome code.",
    ["operation", "code"],
)
LATENCY = Histogram(
    "fieldguard_graphql_request_seconds",
    "Time to execute a GraphQL operation, by operation name.",
    ["operation"],
)
PREDICTIONS = Counter(
    "fieldguard_predictions_total",
    "Prediction calls by model, version and outcome.",
    ["model", "version", "outcome"],
)
PREDICTED_ROWS = Counter(
    "fieldguard_predicted_rows_total",
    "Rows predicted, by model and version.",
    ["model", "version"],
)
JOINED_ROWS = Histogram(
    "fieldguard_prediction_call_rows",
    "Rows per model call made for one-row predictions, by model and version; "
    "concurrent requests share a call.",
    ["model", "version"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
LOGINS = Counter(
    "fieldguard_logins_total",
    "Sign-in attempts by outcome and reason.",
    ["outcome", "reason"],
)
LOGIN_DELAYS = Counter(
    "fieldguard_login_delays_total",
    "Sign-in attempts the throttle made wait before checking the password.",
)
ACTIVE_SESSIONS = Gauge(
    "fieldguard_active_sessions",
    "Sessions neither revoked nor past their absolute lifetime, read at scrape.",
    multiprocess_mode="max",
)
MODEL_LOAD = Histogram(
    "fieldguard_model_load_seconds", "Time to load and check a model at start."
)
# Operation names are chosen by clients: each is cut to MAX_OPERATION_LABEL
# characters, and only the first MAX_OPERATION_NAMES distinct names get their
# own series (see OperationSeries).
MAX_OPERATION_LABEL = 64
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
MAX_OPERATION_NAMES = 256
OTHER_OPERATIONS = "other"


class OperationSeries:
    """The request counter and latency histogram of each operation name.

    Names after the first `max_names` are counted as OTHER_OPERATIONS, so
    that no client can grow the metrics, and the memory they hold, without
    bound. Found series are kept: looking them up by label values takes a
    lock and several lookups.
    """

    def __init__(self, requests: Counter, latency: Histogram, max_names: int) -> None:
        self._requests = requests
        self._latency = latency
        self._max_names = max_names
        self._names: set[str] = set()
        self._series: dict[tuple[str, str], tuple[Any, Any]] = {}

    def get(self, name: str, code: str) -> tuple[Any, Any]:
        found = self._series.get((name, code))
        if found is not None:
            return found
        if name not in self._names:
            if len(self._names) >= self._max_names:
                name = OTHER_OPERATIONS
            else:
                self._names.add(name)
        found = self._series.get((name, code))
        if found is None:
            found = (
                self._requests.labels(operation=name, code=code),
                self._latency.labels(operation=name),
            )
            self._series[(name, code)] = found
        return found


OPERATION_SERIES = OperationSeries(REQUESTS, LATENCY, MAX_OPERATION_NAMES)
# By model, version and outcome, which the server sets, so there are few.
_prediction_series: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def prediction_series(model: str, version: str, outcome: str) -> tuple[Any, Any]:
    """Return the prediction call counter and predicted row counter of a model
    version and outcome."""
    key = (model, version, outcome)
    found = _prediction_series.get(key)
    if found is None:
        found = _prediction_series[key] = (
            PREDICTIONS.labels(model=model, version=version, outcome=outcome),
            PREDICTED_ROWS.labels(model=model, version=version),
        )
    return found


class OperationMetrics(SchemaExtension):
    """Counts each operation by name and outcome code, and times it."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        result = context.result
        errors = getattr(result, "errors", None) or context.pre_execution_errors or []
        record_operation(
            context.operation_name,
            errors,
            time.perf_counter() - started,
            context.context,
        )


def record_operation(
    operation_name: str | None,
    errors: Sequence[GraphQLError],
    elapsed: float,
    request_context: object,
    *,
    known: bool = False,
    planned: bool = False,
) -> None:
    """Count and time one operation by name and outcome code, and log it.

    `known` marks operations run on the known-operation path, and `planned`
    those of them run by an execution plan.
    """
    name = (operation_name or "anonymous")[:MAX_OPERATION_LABEL]
    if not _NAME.fullmatch(name):
        # Only names a document can declare reach labels and log lines.
        name = "invalid"
    code = client_code(errors[0]) if errors else "OK"
    requests, latency = OPERATION_SERIES.get(name, code)
    requests.inc()
    latency.observe(elapsed)
    principal = getattr(request_context, "principal", None)
    operations_logger.info(
        "GraphQL operation",
        extra={
            "fields": {
                "operation": name,
                "code": code,
                "latency_ms": round(elapsed * 1000, 2),
                "user_id": principal.user_id if principal else None,
                "request_id": getattr(request_context, "request_id", None),
                "known": known,
                "planned": planned,
            }
        },
    )


def _registry() -> CollectorRegistry | None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return None


def metrics_endpoint(token: str | None, *, required: bool):  # type: ignore[no-untyped-def]
    """Build the /metrics handler.

    Args:
        token: Bearer token scrapers must send, or None.
        required: Whether a token is needed at all; without one configured,
            the endpoint then returns 404.
    """

    async def metrics(request: Request) -> Response:
        if required and token is None:
            return Response(status_code=404)
        if token is not None:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        services = request.app.state.services
        try:
            async with services.session_factory() as session:
                ACTIVE_SESSIONS.set(
                    await count_open_sessions(session, services.clock.now())
                )
        except Exception:  # noqa: BLE001 - metrics must not fail with the database
            logger.warning("Could not count active sessions for /metrics")
        registry = _registry()
        body = generate_latest(registry) if registry else generate_latest()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics
