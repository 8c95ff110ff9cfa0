"""The GraphQL schema and the extensions that shape its errors."""

import logging
from functools import lru_cache, partial

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from graph.errors import is_unexpected
from graph.introspection import IntrospectionGuard
from graph.known import KnownOperations, remember_known
from graph.limits import BoundedValidationCache, request_rules
from graph.metrics import OperationMetrics
from graph.permissions import guard_schema
from graph.resolvers import Mutation, build_query
from graph.resolvers.predict import install_direct_resolvers
from graph.types import COLUMN_SCALARS
from ml.metadata import ModelShape
from ml.train import penguins_shape

logger = logging.getLogger(__name__)


def _request_id(execution_context: ExecutionContext) -> str | None:
    return getattr(execution_context.context, "request_id", None)


class FieldguardSchema(strawberry.Schema):
    """Logs unexpected errors once, with the request id, and nothing else.

    Strawberry logs every error with a traceback by default; denials and
    invalid input are expected and would drown the real faults.
    """

    known_operations: KnownOperations

    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        request_id = _request_id(execution_context) if execution_context else None
        self.log_unexpected(errors, request_id)

    def log_unexpected(
        self, errors: list[GraphQLError], request_id: str | None
    ) -> None:
        for error in errors:
            if not is_unexpected(error):
                continue
            logger.error(
                "Unexpected error in %s (request_id=%s)",
                ".".join(str(p) for p in error.path or ()) or "request",
                request_id,
                exc_info=error.original_error,
            )


@lru_cache(maxsize=8)
def build_schema(
    models: tuple[ModelShape, ...] | None = None,
    *,
    max_depth: int = 8,
    max_aliases: int = 30,
    max_tokens: int = 2000,
    max_cost: int = 5000,
    max_page_size: int = 100,
    guard_introspection: bool = False,
    max_batch_operations: int = 0,
) -> FieldguardSchema:
    """Build the schema with its request limits.

    Args:
        models: The served models, whose input types the schema holds; by
            default, the bundled penguins model.
        guard_introspection: Allow `__schema` and `__type` only to callers
            holding schema:introspect, as in production.
        max_batch_operations: Operations allowed in one batched HTTP request;
            0 turns batching off.
    """
    shapes = models or (penguins_shape(),)
    known = KnownOperations()
    schema = FieldguardSchema(
        query=build_query(shapes),
        mutation=Mutation,
        # Factories, so that every request gets fresh extension instances; the
        # parser and validation caches live at module level and are shared.
        # The validation cache comes first so that its on_validate hook runs
        # before the one of the request rules.
        extensions=[
            partial(BoundedValidationCache, maxsize=256),
            request_rules(
                max_depth=max_depth,
                max_aliases=max_aliases,
                max_tokens=max_tokens,
                max_cost=max_cost,
                max_page_size=max_page_size,
            ),
            *([IntrospectionGuard] if guard_introspection else []),
            OperationMetrics,
            remember_known(known),
        ],
        config=StrawberryConfig(
            scalar_map=COLUMN_SCALARS,
            batching_config=(
                {"max_operations": max_batch_operations}
                if max_batch_operations
                else None
            ),
        ),
    )
    schema.known_operations = known
    install_direct_resolvers(schema._schema, shapes)
    guard_schema(schema._schema)
    known.schema = schema._schema
    return schema
