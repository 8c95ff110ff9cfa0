"""Introspection in production: only for callers holding schema:introspect."""

from collections.abc import Iterator

from graphql import DocumentNode, FieldNode, GraphQLError, visit
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from graph.errors import ErrorCode
from schema.catalogue import Permission

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


class _IntrospectionFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def enter_field(self, node: FieldNode, *_args: object) -> object:
        if node.name.value in INTROSPECTION_FIELDS:
            self.found = True
            return Visitor.BREAK
        return None


def uses_introspection(document: DocumentNode) -> bool:
    """Tell whether a document selects `__schema` or `__type` anywhere."""
    finder = _IntrospectionFinder()
    visit(document, finder)
    return finder.found


class IntrospectionGuard(SchemaExtension):
    """Refuses any document that uses `__schema` or `__type` to callers lacking
    schema:introspect, however the fields are aliased or hidden in fragments.

    `__typename` stays open: clients need it and it reveals one type name.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            found = uses_introspection(document)
            principal = getattr(context.context, "principal", None)
            allowed = (
                principal is not None
                and Permission.SCHEMA_INTROSPECT.value in principal.permissions
            )
            if found and not allowed:
                # A result set here makes Strawberry skip execution.
                context.result = ExecutionResult(
                    data=None, errors=[_rejection(signed_in=principal is not None)]
                )
        yield


def _rejection(*, signed_in: bool) -> GraphQLError:
    code = ErrorCode.FORBIDDEN if signed_in else ErrorCode.UNAUTHENTICATED
    return GraphQLError(
        "Introspection is not allowed.",
        extensions={
            "code": code.value,
            "requiredPermission": Permission.SCHEMA_INTROSPECT.value,
        },
    )
