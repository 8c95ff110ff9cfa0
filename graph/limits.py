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
    ValidationContext,
    ValuesOfCorrectTypeRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
)
from strawberry.extensions import SchemaExtension, ValidationCache
from strawberry.schema.schema import validate_document

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
    """Measures selections, computing each fragment once per document.

    A fragment spread twice in each of n nested fragments would make a naive
    walk take 2**n steps; memoizing by fragment keeps it linear. Unknown and
    cyclic fragments count as empty here; graphql-core's own rules report
    them.
    """

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._memo: dict[object, int] = {}
        self._active: set[object] = set()

    def _fragment(self, key: object, name: str, measure) -> int:  # type: ignore[no-untyped-def]
        if key in self._memo:
            return self._memo[key]
        fragment = self.context.get_fragment(name)
        if fragment is None or key in self._active:
            return 0
        self._active.add(key)
        try:
            value = measure(fragment.selection_set)
        finally:
            self._active.discard(key)
        self._memo[key] = value
        return value


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
            depth = self._depth(node.selection_set)
            if depth > max_depth:
                self.report_error(
                    _limit_error(
                        f"The query is {depth} levels deep; at most {max_depth} "
                        "are allowed.",
                        node,
                        "depth",
                    )
                )

        def _depth(self, selection_set: SelectionSetNode | None) -> int:
            deepest = 0
            for selection in selection_set.selections if selection_set else ():
                if isinstance(selection, FieldNode):
                    if not selection.name.value.startswith("__"):
                        deepest = max(deepest, 1 + self._depth(selection.selection_set))
                elif isinstance(selection, InlineFragmentNode):
                    deepest = max(deepest, self._depth(selection.selection_set))
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    deepest = max(deepest, self._fragment(name, name, self._depth))
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
            count = self._count(node.selection_set)
            if count > max_aliases:
                self.report_error(
                    _limit_error(
                        f"The operation uses {count} aliases; at most "
                        f"{max_aliases} are allowed.",
                        node,
                        "aliases",
                    )
                )

        def _count(self, selection_set: SelectionSetNode | None) -> int:
            total = 0
            for selection in selection_set.selections if selection_set else ():
                if isinstance(selection, FieldNode):
                    total += selection.alias is not None
                    total += self._count(selection.selection_set)
                elif isinstance(selection, InlineFragmentNode):
                    total += self._count(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    total += self._fragment(name, name, self._count)
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
            cost = self._cost(node.selection_set, root, in_page=False)
            if cost > max_cost:
                self.report_error(
                    _limit_error(
                        f"The operation's estimated cost is {cost}; at most "
                        f"{max_cost} is allowed. Ask for smaller pages or fewer "
                        "fields.",
                        node,
                        "cost",
                    )
                )

        def _cost(self, selection_set, parent_type, *, in_page: bool) -> int:  # type: ignore[no-untyped-def]
            total = 0
            fields = getattr(parent_type, "fields", None) or {}
            for selection in selection_set.selections if selection_set else ():
                if isinstance(selection, InlineFragmentNode):
                    total += self._cost(
                        selection.selection_set, parent_type, in_page=in_page
                    )
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    total += self._fragment(
                        (name, in_page, getattr(parent_type, "name", None)),
                        name,
                        lambda nested: self._cost(nested, parent_type, in_page=in_page),
                    )
                elif isinstance(selection, FieldNode):
                    total += self._field_cost(selection, fields, in_page=in_page)
            return total

        def _field_cost(self, field: FieldNode, fields, *, in_page: bool) -> int:  # type: ignore[no-untyped-def]
            definition = fields.get(field.name.value)
            if definition is None:
                return 1
            multiplier, page_below = 1, in_page
            limit = _limit_argument(field, max_page_size)
            if limit is not None:
                multiplier, page_below = limit, True
            elif is_list_type(get_nullable_type(definition.type)):
                multiplier = 1 if in_page else list_size
                page_below = False
            child_type = get_named_type(definition.type)
            return 1 + multiplier * self._cost(
                field.selection_set, child_type, in_page=page_below
            )

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


class BoundedValidationCache(ValidationCache):
    """Strawberry's validation cache, for documents short enough to parse from
    the parse cache; longer ones are validated every time.

    The cache is keyed by the parsed document, so a huge document parsed
    anew on each request would take a new entry every time, each holding
    the whole document.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if len(context.query or "") <= MAX_CACHED_QUERY_LENGTH:
            yield from super().on_validate()
            return
        context.pre_execution_errors = validate_document(
            context.schema._schema, context.graphql_document, context.validation_rules
        )
        yield
