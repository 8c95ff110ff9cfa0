"""Validation rules and caches that bound what one GraphQL document may cost.

Rule classes are built once per schema, not per request, so that
Strawberry's validation cache, which is keyed by the rule classes, keeps
hitting.
"""

from collections.abc import Iterator
from functools import lru_cache

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValuesOfCorrectTypeRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
)
from strawberry.extensions import SchemaExtension

from graph.errors import ErrorCode

# Longer documents are parsed every time instead of being kept in the cache,
# so that unique huge documents cannot fill memory.
MAX_CACHED_QUERY_LENGTH = 20_000
PARSE_CACHE_SIZE = 256


class InputValuesRule(ValuesOfCorrectTypeRule):
    """Reports wrongly typed literal arguments as `BAD_USER_INPUT`."""

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {
            **(error.extensions or {}),
            "code": ErrorCode.BAD_USER_INPUT.value,
            "reason": error.message,
        }
        super().report_error(error)


def unstorable_reason(text: str) -> str | None:
    """Tell why a string cannot be stored, or None when it can.

    NUL characters and unpaired UTF-16 surrogates are valid in JSON and
    GraphQL strings. PostgreSQL text cannot store NUL and UTF-8 cannot encode
    lone surrogates, so both are rejected at the edge instead of failing deep
    in a database driver or hasher.
    """
    if "\x00" in text:
        return "Strings cannot contain NUL characters."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Strings cannot contain unpaired surrogate characters."
    return None


class StorableStringsRule(ASTValidationRule):
    """Rejects string literals that `unstorable_reason` rejects."""

    def enter_string_value(self, node: StringValueNode, *_args: object) -> None:
        reason = unstorable_reason(node.value)
        if reason is not None:
            self.report_error(
                GraphQLError(
                    reason,
                    node,
                    extensions={
                        "code": ErrorCode.BAD_USER_INPUT.value,
                        "reason": reason,
                    },
                )
            )


def _limit_error(message: str, node: object, limit: str) -> GraphQLError:
    return GraphQLError(
        message,
        node,  # type: ignore[arg-type]
        extensions={"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value, "limit": limit},
    )


class _SelectionWalker(ASTValidationRule):
    """Walks each operation's selections, following fragments once per path."""

    def _fields(
        self,
        selection_set: SelectionSetNode | None,
        visited: frozenset[str],
    ) -> Iterator[tuple[FieldNode, frozenset[str]]]:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection, visited
            elif isinstance(selection, InlineFragmentNode):
                yield from self._fields(selection.selection_set, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.context.get_fragment(name)
                # Unknown and cyclic fragments are reported by graphql-core's
                # own rules; here they only end the walk.
                if fragment is not None and name not in visited:
                    yield from self._fields(fragment.selection_set, visited | {name})


def depth_rule(max_depth: int) -> type[ASTValidationRule]:
    """Build a rule that rejects selections nested deeper than `max_depth`.

    `{ me { roles { name } } }` has depth 3. Introspection fields (`__schema`,
    `__type`) are not counted, because GraphiQL's own introspection query is
    deeper than any query of this schema; the token limit bounds them.
    """

    class DepthRule(_SelectionWalker):
        def enter_operation_definition(
            self, node: OperationDefinitionNode, *_args: object
        ) -> None:
            depth = self._depth(node.selection_set, frozenset())
            if depth > max_depth:
                self.report_error(
                    _limit_error(
                        f"The query is {depth} levels deep; at most {max_depth} "
                        "are allowed.",
                        node,
                        "depth",
                    )
                )

        def _depth(self, selection_set: SelectionSetNode | None, visited) -> int:  # type: ignore[no-untyped-def]
            deepest = 0
            for field, path in self._fields(selection_set, visited):
                if field.name.value.startswith("__"):
                    continue
                deepest = max(deepest, 1 + self._depth(field.selection_set, path))
                if deepest > max_depth:
                    break
            return deepest

    return DepthRule


def alias_rule(max_aliases: int) -> type[ASTValidationRule]:
    """Build a rule that rejects operations with more than `max_aliases` aliases.

    Aliases inside fragments count each time a fragment is spread.
    """

    class AliasRule(_SelectionWalker):
        def enter_operation_definition(
            self, node: OperationDefinitionNode, *_args: object
        ) -> None:
            count = self._count(node.selection_set, frozenset())
            if count > max_aliases:
                self.report_error(
                    _limit_error(
                        f"The operation uses {count} or more aliases; at most "
                        f"{max_aliases} are allowed.",
                        node,
                        "aliases",
                    )
                )

        def _count(self, selection_set: SelectionSetNode | None, visited) -> int:  # type: ignore[no-untyped-def]
            total = 0
            for field, path in self._fields(selection_set, visited):
                total += field.alias is not None
                total += self._count(field.selection_set, path)
                if total > max_aliases:
                    break
            return total

    return AliasRule


def cost_rule(
    max_cost: int, *, max_page_size: int, list_size: int = 10
) -> type[ASTValidationRule]:
    """Build a rule that rejects operations whose estimated cost exceeds `max_cost`.

    Every field costs 1. A field with a `limit` argument multiplies the cost
    of what it selects by that limit (by `max_page_size` when the limit is a
    variable), and the first list below it is that page. Any other list
    multiplies by `list_size`, an estimate of the short lists of this schema.
    """

    class CostRule(_SelectionWalker):
        def enter_operation_definition(
            self, node: OperationDefinitionNode, *_args: object
        ) -> None:
            root = self.context.schema.get_root_type(node.operation)
            cost = self._cost(node.selection_set, root, frozenset(), in_page=False)
            if cost > max_cost:
                self.report_error(
                    _limit_error(
                        f"The operation's estimated cost is {cost} or more; at most "
                        f"{max_cost} is allowed. Ask for smaller pages or fewer "
                        "fields.",
                        node,
                        "cost",
                    )
                )

        def _cost(self, selection_set, parent_type, visited, *, in_page: bool) -> int:  # type: ignore[no-untyped-def]
            total = 0
            fields = getattr(parent_type, "fields", None) or {}
            for field, path in self._fields(selection_set, visited):
                definition = fields.get(field.name.value)
                if definition is None:
                    total += 1
                    continue
                multiplier, page_below = 1, in_page
                limit = _limit_argument(field, max_page_size)
                if limit is not None:
                    multiplier, page_below = limit, True
                elif is_list_type(get_nullable_type(definition.type)):
                    multiplier = 1 if in_page else list_size
                    page_below = False
                child_type = get_named_type(definition.type)
                total += 1 + multiplier * self._cost(
                    field.selection_set, child_type, path, in_page=page_below
                )
                if total > max_cost:
                    break
            return total

    return CostRule


def _limit_argument(field: FieldNode, max_page_size: int) -> int | None:
    for argument in field.arguments or ():
        if argument.name.value == "limit":
            if isinstance(argument.value, IntValueNode):
                return max(1, min(int(argument.value.value), max_page_size))
            return max_page_size
    return None


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _cached_parse(query: str, max_tokens: int):  # type: ignore[no-untyped-def]
    return parse(query, max_tokens=max_tokens)


def request_rules(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    max_cost: int,
    max_page_size: int,
) -> type[SchemaExtension]:
    """Build the extension that applies the limits and the input error codes."""
    extra_rules = (
        depth_rule(max_depth),
        alias_rule(max_aliases),
        cost_rule(max_cost, max_page_size=max_page_size),
        StorableStringsRule,
    )

    class RequestRules(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            context = self.execution_context
            context.validation_rules = (
                *(
                    InputValuesRule if rule is ValuesOfCorrectTypeRule else rule
                    for rule in context.validation_rules
                ),
                *extra_rules,
            )
            yield

        def on_validate(self) -> Iterator[None]:
            # Runs after the validation cache has set its errors, if any.
            context = self.execution_context
            document = context.graphql_document
            if not context.pre_execution_errors and document is not None:
                operations = [
                    d
                    for d in document.definitions
                    if isinstance(d, OperationDefinitionNode)
                ]
                # Strawberry's `operation_name` falls back to the first
                # operation's name; the name the client sent is kept apart.
                provided = getattr(context, "_provided_operation_name", None)
                if len(operations) > 1 and not provided:
                    context.pre_execution_errors = [
                        GraphQLError(
                            "The document has several operations; name the one "
                            "to run in operationName.",
                            extensions={
                                "code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value
                            },
                        )
                    ]
            yield

        def on_parse(self) -> Iterator[None]:
            context = self.execution_context
            query = context.query or ""
            if len(query) <= MAX_CACHED_QUERY_LENGTH:
                context.graphql_document = _cached_parse(query, max_tokens)
            else:
                context.graphql_document = parse(query, max_tokens=max_tokens)
            yield

    return RequestRules
