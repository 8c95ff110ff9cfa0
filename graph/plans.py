"""Execution plans for known query documents.

For each request, graphql-core works out again which fields a document
selects, which resolver and type each field has and how its value is
completed. For a validated document, none of that changes between
requests. A plan records it once. Running it calls each field's resolver, rule check
included, and completes the values by the recorded steps, with
graphql-core's own variable and argument coercion, error locations and
null propagation.

Some documents get no plan and run on graphql-core. These are documents
with directives, interface or union types, a response key selected more
than once in one selection set, or a fragment on another type.

As in graphql-core, sibling fields and list items whose resolvers return
awaitables are awaited together, and when a non-null field fails, work
already started under its parent finishes in the background while its
errors are dropped.
"""

import asyncio
from collections.abc import AsyncIterable, Awaitable, Iterable
from contextlib import suppress
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    default_field_resolver,
    is_leaf_type,
    is_object_type,
    located_error,
)
from graphql.execution import get_argument_values, get_variable_values
from graphql.pyutils import (
    Path,
    Undefined,
    gather_with_cancel,
    inspect,
    is_awaitable,
    is_iterable,
)
from graphql.type.definition import GraphQLResolveInfoHelpers

# graphql-core's own bound on variable coercion errors in one request.
MAX_COERCION_ERRORS = 50
# Fields a plan may hold once fragments are expanded in place. The cost
# limit bounds documents too, but a plan of a larger one would take long to
# build; such documents run on graphql-core.
MAX_PLAN_FIELDS = 2_000
_LEAF, _LIST, _OBJECT = 0, 1, 2


class Unsupported(Exception):
    """The document uses something a plan does not cover."""


class _Output:
    """The completion steps of one output type."""

    __slots__ = ("fields", "item", "kind", "leaf", "non_null", "object_type")

    def __init__(self) -> None:
        self.non_null = False
        self.kind = _LEAF
        self.leaf: GraphQLLeafType | None = None
        self.item: _Output | None = None
        self.object_type: GraphQLObjectType | None = None
        self.fields: tuple[_Field, ...] = ()


class _Field:
    """One selected field: its key, definition, resolver and output steps."""

    __slots__ = (
        "definition",
        "has_arguments",
        "key",
        "name",
        "node",
        "nodes",
        "output",
        "parent_type",
        "return_type",
        "typename",
    )

    def __init__(
        self,
        node: FieldNode,
        parent_type: GraphQLObjectType,
        definition: GraphQLField | None,
    ) -> None:
        self.node = node
        self.nodes = [node]
        self.name = node.name.value
        self.key = node.alias.value if node.alias else self.name
        self.parent_type = parent_type
        # `__typename` has no definition on the type: its value is the name.
        self.typename = definition is None
        self.definition = definition
        self.return_type: GraphQLOutputType | None = None
        self.has_arguments = False
        self.output = _Output()
        if definition is not None:
            self.return_type = definition.type
            self.has_arguments = bool(definition.args or node.arguments)


class OperationPlan:
    """The recorded execution steps of one query document (see `run`)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        """Record the steps of `document`, which must have passed validation.

        Raises:
            Unsupported: The document needs graphql-core's full executor.
        """
        operations = [
            d for d in document.definitions if isinstance(d, OperationDefinitionNode)
        ]
        if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
            raise Unsupported("one query operation is needed")
        self.operation = operations[0]
        if self.operation.directives:
            raise Unsupported("operation directives")
        self.fragments: dict[str, FragmentDefinitionNode] = {}
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                if definition.directives or definition.variable_definitions:
                    raise Unsupported("fragment directives or variables")
                self.fragments[definition.name.value] = definition
        root = schema.query_type
        if root is None:
            raise Unsupported("no query type")
        if any(schema.get_directive(name) for name in ("defer", "stream")):
            # graphql-core's `execute` refuses such schemas for incremental
            # delivery, which plans do not implement either.
            raise Unsupported("incremental delivery directives")
        self.schema = schema
        self.size = 0
        self.name = self.operation.name.value if self.operation.name else None
        self.root = root
        self.fields = self._fields(root, self.operation.selection_set)

    def _fields(
        self, parent_type: GraphQLObjectType, selection_set: SelectionSetNode
    ) -> tuple[_Field, ...]:
        nodes: list[FieldNode] = []
        self._collect(parent_type, selection_set, nodes, depth=0)
        self.size += len(nodes)
        if self.size > MAX_PLAN_FIELDS:
            raise Unsupported(f"more than {MAX_PLAN_FIELDS} fields")
        fields = []
        keys = set()
        for node in nodes:
            name = node.name.value
            if name == "__typename":
                field = _Field(node, parent_type, None)
            elif name.startswith("__") or name not in parent_type.fields:
                raise Unsupported(f"field {name}")
            else:
                field = _Field(node, parent_type, parent_type.fields[name])
                self._output(field.output, field.definition.type, node)  # type: ignore[union-attr]
            if field.key in keys:
                raise Unsupported(f"key {field.key} selected twice")
            keys.add(field.key)
            fields.append(field)
        return tuple(fields)

    def _collect(
        self,
        parent_type: GraphQLObjectType,
        selection_set: SelectionSetNode,
        into: list[FieldNode],
        depth: int,
    ) -> None:
        if depth > len(self.fragments) + 1:
            raise Unsupported("fragments nested in a cycle")
        for selection in selection_set.selections:
            if selection.directives:
                raise Unsupported("field or fragment directives")
            if isinstance(selection, FieldNode):
                into.append(selection)
                if len(into) > MAX_PLAN_FIELDS:
                    raise Unsupported(f"more than {MAX_PLAN_FIELDS} fields")
                continue
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = selection.selection_set
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is None:
                    raise Unsupported("unknown fragment")
                condition = fragment.type_condition
                inner = fragment.selection_set
            else:  # pragma: no cover - no other selection kind exists
                raise Unsupported(type(selection).__name__)
            if condition is not None and condition.name.value != parent_type.name:
                raise Unsupported("fragment on another type")
            self._collect(parent_type, inner, into, depth + 1)

    def _output(self, output: _Output, type_: Any, node: FieldNode) -> None:
        if isinstance(type_, GraphQLNonNull):
            output.non_null = True
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            output.kind = _LIST
            output.item = _Output()
            self._output(output.item, type_.of_type, node)
        elif is_leaf_type(type_):
            output.kind = _LEAF
            output.leaf = type_
        elif is_object_type(type_):
            if node.selection_set is None:
                raise Unsupported("object without a selection")
            output.kind = _OBJECT
            output.object_type = type_
            output.fields = self._fields(type_, node.selection_set)
        else:
            raise Unsupported(f"type {type_}")

    def run(
        self, variables: dict[str, Any] | None, context: Any
    ) -> ExecutionResult | Awaitable[ExecutionResult]:
        """Execute the document, with the result graphql-core's `execute` gives."""
        coerced = get_variable_values(
            self.schema,
            self.operation.variable_definitions or (),
            variables or {},
            max_errors=MAX_COERCION_ERRORS,
        )
        if isinstance(coerced, list):
            return ExecutionResult(data=None, errors=coerced)
        return _Run(self, coerced, context).execute()


class _Run:
    """The state of one execution: variables, context and errors."""

    def __init__(self, plan: OperationPlan, variables: Any, context: Any) -> None:
        self.plan = plan
        self.variables = variables
        self.context = context
        self.errors: list[GraphQLError] = []
        # Positions made null by an error; later errors below them are dropped,
        # as work still running there can no longer change the result.
        self.nulled: set[Path | None] = set()
        self.background: set[Any] = set()
        self.helpers = GraphQLResolveInfoHelpers(gather=self._gather, track=self._track)

    def execute(self) -> ExecutionResult | Awaitable[ExecutionResult]:
        plan = self.plan
        try:
            data = self.fields(plan.fields, None, None)
        except GraphQLError as error:
            return self.result(None, error)
        if is_awaitable(data):
            return self._finish(data)
        return self.result(data, None)

    async def _finish(self, data: Awaitable[dict[str, Any]]) -> ExecutionResult:
        try:
            return self.result(await data, None)
        except GraphQLError as error:
            return self.result(None, error)

    def result(
        self, data: dict[str, Any] | None, error: GraphQLError | None
    ) -> ExecutionResult:
        if error is not None:
            self.record(error, None)
        # A copy: work left to settle in the background must not change it.
        return ExecutionResult(data=data, errors=list(self.errors) or None)

    def record(self, error: GraphQLError, path: Path | None) -> None:
        """Note the error that made the value at `path` null."""
        position = path
        while position is not None:
            if position in self.nulled:
                return
            position = position.prev
        if None in self.nulled:
            return
        self.nulled.add(path)
        self.errors.append(error)

    def fields(
        self, fields: tuple[_Field, ...], source: Any, path: Path | None
    ) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """Resolve and complete `fields` of `source` into a response object.

        Raises:
            GraphQLError: A non-null field failed, so this object is null.
        """
        data: dict[str, Any] = {}
        pending: list[str] | None = None
        try:
            for field in fields:
                value = self.field(
                    field, source, Path(path, field.key, field.parent_type.name)
                )
                if is_awaitable(value):
                    if pending is None:
                        pending = []
                    pending.append(field.key)
                data[field.key] = value
        except Exception:
            if pending:
                self._settle([data[key] for key in pending])
            raise
        if pending is None:
            return data
        return _await_pending(data, pending)

    def field(self, field: _Field, source: Any, path: Path) -> Any:
        """Resolve one field and complete its value, or handle its error."""
        if field.typename:
            return field.parent_type.name
        info = GraphQLResolveInfo(
            field.name,
            field.nodes,
            field.return_type,  # type: ignore[arg-type]
            field.parent_type,
            path,
            self.plan.schema,
            self.plan.fragments,
            None,
            self.plan.operation,
            self.variables,
            self.context,
            is_awaitable,
            None,
            self.helpers,
        )
        try:
            arguments = (
                get_argument_values(field.definition, field.node, self.variables)  # type: ignore[arg-type]
                if field.has_arguments
                else {}
            )
            # Read on each call, so that the plan follows the schema's resolvers.
            resolve = field.definition.resolve or default_field_resolver  # type: ignore[union-attr]
            result = resolve(source, info, **arguments)
        except Exception as error:
            return self.failed(error, field.output, info, path)
        return self.completed(field.output, info, path, result)

    def completed(
        self, output: _Output, info: GraphQLResolveInfo, path: Path, value: Any
    ) -> Any:
        """Complete a resolved field value or list item, or handle its error."""
        try:
            if is_awaitable(value):
                return self._await_value(output, info, path, value)
            done = self.complete(output, info, path, value)
            if is_awaitable(done):
                return self._await_completion(output, info, path, done)
        except Exception as error:
            return self.failed(error, output, info, path)
        return done

    async def _await_value(
        self, output: _Output, info: GraphQLResolveInfo, path: Path, value: Any
    ) -> Any:
        try:
            done = self.complete(output, info, path, await value)
            if is_awaitable(done):
                done = await done
        except Exception as error:
            return self.failed(error, output, info, path)
        return done

    async def _await_completion(
        self, output: _Output, info: GraphQLResolveInfo, path: Path, done: Any
    ) -> Any:
        try:
            return await done
        except Exception as error:
            return self.failed(error, output, info, path)

    def failed(
        self, error: Exception, output: _Output, info: GraphQLResolveInfo, path: Path
    ) -> None:
        """Locate an error, then raise it for a non-null position or record it.

        Raises:
            GraphQLError: The position is non-null, so its parent becomes null.
        """
        located = located_error(error, info.field_nodes, path.as_list())
        if output.non_null:
            raise located
        self.record(located, path)

    def complete(
        self, output: _Output, info: GraphQLResolveInfo, path: Path, result: Any
    ) -> Any:
        """Complete `result` by the steps of its type, as graphql-core does.

        Raises:
            Exception: The value does not fit the type; the caller locates it.
        """
        if isinstance(result, Exception):
            raise result
        if output.non_null:
            completed = self._complete_nullable(output, info, path, result)
            if is_awaitable(completed):
                return self._not_null(completed, info)
            if completed is None:
                raise TypeError(_null_message(info))
            return completed
        return self._complete_nullable(output, info, path, result)

    async def _not_null(
        self, completed: Awaitable[Any], info: GraphQLResolveInfo
    ) -> Any:
        value = await completed
        if value is None:
            raise TypeError(_null_message(info))
        return value

    def _complete_nullable(
        self, output: _Output, info: GraphQLResolveInfo, path: Path, result: Any
    ) -> Any:
        if result is None or result is Undefined:
            return None
        kind = output.kind
        if kind == _LEAF:
            leaf = output.leaf
            coerced = leaf.coerce_output_value(result)  # type: ignore[union-attr]
            if coerced is Undefined or coerced is None:
                raise TypeError(
                    f"Expected `{inspect(leaf)}.coerce_output_value("
                    f"{inspect(result)})` to return non-nullable value, returned:"
                    f" {inspect(coerced)}"
                )
            return coerced
        if kind == _OBJECT:
            object_type = output.object_type
            assert object_type is not None
            if object_type.is_type_of is not None:
                fits = object_type.is_type_of(result, info)
                if is_awaitable(fits):
                    return self._object_after_check(output, info, path, result, fits)
                if not fits:
                    raise _wrong_type(object_type, result, info)
            return self.fields(output.fields, result, path)
        if isinstance(result, AsyncIterable):
            return self._complete_async_list(output, info, path, result)
        return self._complete_list(output, info, path, result)

    async def _object_after_check(
        self,
        output: _Output,
        info: GraphQLResolveInfo,
        path: Path,
        result: Any,
        fits: Awaitable[bool],
    ) -> Any:
        object_type = output.object_type
        assert object_type is not None
        if not await fits:
            raise _wrong_type(object_type, result, info)
        completed = self.fields(output.fields, result, path)
        return await completed if is_awaitable(completed) else completed

    def _complete_list(
        self, output: _Output, info: GraphQLResolveInfo, path: Path, result: Any
    ) -> Any:
        if not is_iterable(result):
            raise GraphQLError(
                "Expected Iterable, but did not find one for field"
                f" '{info.parent_type}.{info.field_name}'."
            )
        item = output.item
        assert item is not None
        completed: list[Any] = []
        pending: list[int] | None = None
        try:
            for index, value in enumerate(result):
                done = self.completed(item, info, Path(path, index, None), value)
                if is_awaitable(done):
                    if pending is None:
                        pending = []
                    pending.append(index)
                completed.append(done)
        except Exception:
            if pending:
                self._settle([completed[index] for index in pending])
            raise
        if pending is None:
            return completed
        return _await_pending(completed, pending)

    async def _complete_async_list(
        self, output: _Output, info: GraphQLResolveInfo, path: Path, result: Any
    ) -> list[Any]:
        """Complete the items of an async iterable one by one, as they come."""
        item = output.item
        assert item is not None
        iterator = result.__aiter__()
        completed: list[Any] = []
        try:
            while True:
                try:
                    value = await iterator.__anext__()
                except StopAsyncIteration:
                    return completed
                done = self.completed(
                    item, info, Path(path, len(completed), None), value
                )
                completed.append(await done if is_awaitable(done) else done)
        except BaseException:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with suppress(Exception):
                    await close()
            raise

    def _settle(self, values: list[Any]) -> None:
        """Let work whose result is no longer needed run to its end.

        A non-null error made its parent null, but resolvers already started
        still finish, as graphql-core lets them, and their errors are dropped.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # nothing could run them: close what was started
            for value in values:
                close = getattr(value, "close", None)
                if close is not None:
                    close()
            return
        future = asyncio.gather(*values, return_exceptions=True)
        self.background.add(future)
        future.add_done_callback(self.background.discard)

    def _gather(self, values: Iterable[Awaitable[Any]]) -> Awaitable[list[Any]]:
        return gather_with_cancel(*values)

    def _track(self, values: Iterable[Any]) -> None:
        # Work that a resolver starts without awaiting it keeps running, and
        # its errors are collected rather than left unretrieved.
        awaitables = [value for value in values if is_awaitable(value)]
        if awaitables:
            self._settle(awaitables)


async def _await_pending(values: Any, pending: list[Any]) -> Any:
    """Replace the awaitables at `pending`, keys of a dict or indexes of a
    list, by their results, awaiting several together as graphql-core does.
    """
    if len(pending) == 1:
        key = pending[0]
        values[key] = await values[key]
        return values
    results = await gather_with_cancel(*(values[key] for key in pending))
    for key, result in zip(pending, results, strict=True):
        values[key] = result
    return values


def _null_message(info: GraphQLResolveInfo) -> str:
    return (
        f"Cannot return null for non-nullable field"
        f" {info.parent_type}.{info.field_name}."
    )


def _wrong_type(
    object_type: GraphQLObjectType, result: Any, info: GraphQLResolveInfo
) -> GraphQLError:
    return GraphQLError(
        f"Expected value of type '{object_type}' but got: {inspect(result)}.",
        info.field_nodes,
    )


def plan_for(schema: GraphQLSchema, document: DocumentNode) -> OperationPlan | None:
    """Return the plan of a validated document, or None when it needs graphql-core."""
    try:
        return OperationPlan(schema, document)
    except Unsupported:
        return None
