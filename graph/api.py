"""The GraphQL schema and the extensions that shape its errors."""

import logging
from collections.abc import Iterator
from functools import lru_cache, partial

import strawberry
from graphql import GraphQLError, ValuesOfCorrectTypeRule
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext

from graph.errors import ErrorCode, is_unexpected
from graph.resolvers import Mutation, Query

logger = logging.getLogger(__name__)


class InputValuesRule(ValuesOfCorrectTypeRule):
    """Reports wrongly typed literal arguments as `BAD_USER_INPUT`."""

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {
            **(error.extensions or {}),
            "code": ErrorCode.BAD_USER_INPUT.value,
        }
        super().report_error(error)


class InputErrorCodes(SchemaExtension):
    """Swaps graphql-core's literal value rule for `InputValuesRule`."""

    def on_operation(self) -> Iterator[None]:
        self.execution_context.validation_rules = tuple(
            InputValuesRule if rule is ValuesOfCorrectTypeRule else rule
            for rule in self.execution_context.validation_rules
        )
        yield


def _request_id(execution_context: ExecutionContext) -> str | None:
    return getattr(execution_context.context, "request_id", None)


class FieldguardSchema(strawberry.Schema):
    """Logs unexpected errors once, with the request id, and nothing else.

    Strawberry logs every error with a traceback by default; denials and
    invalid input are expected and would drown the real faults.
    """

    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        request_id = _request_id(execution_context) if execution_context else None
        for error in errors:
            if not is_unexpected(error):
                continue
            logger.error(
                "Unexpected error in %s (request_id=%s)",
                ".".join(str(p) for p in error.path or ()) or "request",
                request_id,
                exc_info=error.original_error,
            )


@lru_cache(maxsize=4)
def build_schema(
    *, max_depth: int = 10, max_aliases: int = 30, max_tokens: int = 2000
) -> FieldguardSchema:
    return FieldguardSchema(
        query=Query,
        mutation=Mutation,
        # Factories, so that every request gets fresh extension instances; the
        # parser and validation caches live at module level and are shared.
        extensions=[
            InputErrorCodes,
            partial(QueryDepthLimiter, max_depth=max_depth),
            partial(MaxAliasesLimiter, max_alias_count=max_aliases),
            partial(MaxTokensLimiter, max_token_count=max_tokens),
            partial(ParserCache, maxsize=256),
            partial(ValidationCache, maxsize=256),
        ],
    )
