"""Known operations: queries run again without Strawberry's per-request work.

A query document that passed parsing and every validation rule once is kept,
by its exact text, with its parsed form. The next request with the same text
is executed by graphql-core directly: the same schema, resolvers, field
rules, error codes and masking, operation log and metrics, without
Strawberry's request parsing, extension hooks and result handling. In
profiles of a one-row prediction those took about a third of the request.

Only documents of exactly one query operation without `__schema` or `__type`
are kept, so the operation name and the introspection rule, which depend on
the request, need no check here. Everything else goes through Strawberry.
"""

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from inspect import isawaitable
from typing import Any, NamedTuple

import orjson
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
)
from strawberry.extensions import SchemaExtension

from graph.caching import LruCache
from graph.errors import to_client_errors
from graph.http import OPERATION_LOGGED, PARSED_BODY
from graph.introspection import uses_introspection
from graph.limits import MAX_CACHED_QUERY_LENGTH
from graph.metrics import record_operation
from graph.plans import OperationPlan, plan_for

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class KnownOperation(NamedTuple):
    """A validated document, its operation's name, and its execution plan
    when it has one."""

    document: DocumentNode
    name: str | None
    plan: OperationPlan | None


class KnownOperations:
    """Validated query documents by their text, keeping the most recently used.

    `schema`, the graphql-core schema the documents were validated against,
    is set once it is built; documents remembered from then on get a plan.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._documents: LruCache[str, KnownOperation] = LruCache(max_entries)
        self.schema: GraphQLSchema | None = None

    def get(self, query: str) -> KnownOperation | None:
        return self._documents.get(query)

    def remember(self, query: str, document: DocumentNode) -> None:
        # Longer documents are not kept, so that unique huge documents cannot
        # fill memory; they take the full path every time.
        if len(query) <= MAX_CACHED_QUERY_LENGTH and _is_plain_query(document):
            plan = plan_for(self.schema, document) if self.schema else None
            self._documents.put(
                query, KnownOperation(document, _operation_name(document), plan)
            )


def _is_plain_query(document: DocumentNode) -> bool:
    operations = [
        d for d in document.definitions if isinstance(d, OperationDefinitionNode)
    ]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return False
    return not uses_introspection(document)


def remember_known(known: KnownOperations) -> type[SchemaExtension]:
    """Build the extension that keeps each document that passes validation."""

    class RememberKnown(SchemaExtension):
        def on_validate(self) -> Iterator[None]:
            yield
            context = self.execution_context
            document = context.graphql_document
            if context.pre_execution_errors or document is None or not context.query:
                return
            known.remember(context.query, document)

    return RememberKnown


class KnownOperationRunner:
    """Executor of requests for known operations.

    `run` returns False, having sent nothing, for any other request.

    Args:
        schema: The Strawberry schema. Its graphql-core schema executes, and
            its `log_unexpected` logs unexpected errors as on the full path.
        known: The documents this schema has validated.
        build_context: Builds the request context from the ASGI scope, as the
            view does.
        hide_suggestions: As for `to_client_errors`.
    """

    def __init__(
        self,
        schema: Any,
        known: KnownOperations,
        build_context: Callable[[Message], Awaitable[Any]],
        *,
        hide_suggestions: bool,
    ) -> None:
        self.schema = schema
        self.known = known
        self.build_context = build_context
        self.hide_suggestions = hide_suggestions

    async def run(self, scope: Message, send: Send) -> bool:
        # Only a body the request guard has checked, and parsed as Strawberry
        # would, is run here; anything else goes through Strawberry.
        payload = scope.get("state", {}).get(PARSED_BODY)
        if scope.get("method") != "POST" or not isinstance(payload, dict):
            return False
        query = payload.get("query")
        variables = payload.get("variables")
        operation_name = payload.get("operationName")
        if (
            not isinstance(query, str)
            or not (variables is None or isinstance(variables, dict))
            or not (operation_name is None or isinstance(operation_name, str))
        ):
            return False
        known = self.known.get(query)
        if known is None or operation_name not in (None, known.name):
            # A name that is not the operation's gets Strawberry's error.
            return False

        started = time.perf_counter()
        context = await self.build_context(scope)
        plan = known.plan
        planned = plan is not None
        if plan is not None:
            result = plan.run(variables, context)
        else:
            result = execute(
                self.schema._schema,
                known.document,
                variable_values=variables,
                operation_name=operation_name,
                context_value=context,
            )
        if isawaitable(result):
            result = await result
        errors: list[GraphQLError] = list(result.errors or ())
        if errors:
            self.schema.log_unexpected(errors, context.request_id)
        record_operation(
            known.name,
            errors,
            time.perf_counter() - started,
            context,
            known=True,
            planned=planned,
        )
        scope["state"][OPERATION_LOGGED] = True
        response: dict[str, Any] = {"data": result.data}
        if errors:
            response["errors"] = [
                error.formatted
                for error in to_client_errors(
                    errors, context.request_id, hide_suggestions=self.hide_suggestions
                )
            ]
        content = orjson.dumps(response)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
        return True


def _operation_name(document: DocumentNode) -> str | None:
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and definition.name:
            return definition.name.value
    return None
