"""Execution plans against graphql-core on values, lists and async work.

Each case runs one document on graphql-core's `execute` and on the plan, and
compares the formatted results and the warnings. The first group completes
synchronously. The others need async work done as graphql-core does it:
siblings and list items awaited together, pending work left to finish when
a non-null field fails, and async iterables completed item by item.
"""

import asyncio
import gc
import warnings
from enum import Enum
from inspect import isawaitable

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    execute,
    parse,
    validate,
)

from graph.plans import plan_for


async def _after_ticks(value, ticks=1):
    """Return `value`, or raise it when it is an exception, after `ticks` loop turns."""
    for _ in range(ticks):
        await asyncio.sleep(0)
    if isinstance(value, Exception):
        raise value
    return value


def _raising_resolver(message):
    def resolve(*_args, **_kwargs):
        raise ValueError(message)

    return resolve


def _async_generator_resolver(values, error=None):
    async def produce():
        for value in values:
            await asyncio.sleep(0)
            yield value
        if error is not None:
            raise ValueError(error)

    return lambda *_args: produce()


async def _unending_nulls():
    while True:
        await asyncio.sleep(0)
        yield None


class AttributeDict(dict):
    """A dict whose keys read as attributes, so `hasattr(d, "__await__")` is true."""

    __getattr__ = dict.get


class Color(Enum):
    RED = 1
    GREEN = 2


def _serialize_fails(value):
    raise ValueError(f"cannot serialize {value!r}")


FAILING_SCALAR = GraphQLScalarType("FailingScalar", serialize=_serialize_fails)
NULL_SCALAR = GraphQLScalarType("NullScalar", serialize=lambda _value: None)
COLOR = GraphQLEnumType("Color", Color)


async def _is_checked_later(value, _info):
    await asyncio.sleep(0)
    return "v" in value


CHECKED = GraphQLObjectType(
    "Checked",
    {"v": GraphQLField(GraphQLInt)},
    is_type_of=lambda value, _info: "v" in value,
)
CHECKED_LATER = GraphQLObjectType(
    "CheckedLater", {"v": GraphQLField(GraphQLInt)}, is_type_of=_is_checked_later
)

FILTER = GraphQLInputObjectType(
    "Filter",
    {
        "limit": GraphQLInputField(GraphQLInt, default_value=7),
        "name": GraphQLInputField(GraphQLNonNull(GraphQLString)),
        "ids": GraphQLInputField(GraphQLList(GraphQLNonNull(GraphQLInt))),
    },
)

NODE = GraphQLObjectType(
    "Node",
    lambda: {
        "id": GraphQLField(GraphQLInt),
        "slow": GraphQLField(
            GraphQLString, resolve=lambda node, _info: _after_ticks("slow", 10)
        ),
        "slowError": GraphQLField(
            GraphQLString,
            resolve=lambda node, _info: _after_ticks(ValueError("slowError"), 10),
        ),
        "quickError": GraphQLField(
            GraphQLString,
            resolve=lambda node, _info: _after_ticks(ValueError("quickError")),
        ),
        "quickRequiredError": GraphQLField(
            GraphQLNonNull(GraphQLString),
            resolve=lambda node, _info: _after_ticks(ValueError("quickRequiredError")),
        ),
        "error": GraphQLField(GraphQLString, resolve=_raising_resolver("error")),
        "requiredError": GraphQLField(
            GraphQLNonNull(GraphQLString), resolve=_raising_resolver("requiredError")
        ),
        "child": GraphQLField(
            NODE, resolve=lambda node, _info: {"id": node["id"] * 10}
        ),
        "requiredChild": GraphQLField(
            GraphQLNonNull(NODE), resolve=lambda node, _info: {"id": node["id"] * 10}
        ),
    },
)


def _describe_arguments(_source, _info, **arguments):
    return repr(sorted(arguments.items()))


def _nodes(*_args):
    return [{"id": 1}, {"id": 2}]


QUERY = GraphQLObjectType(
    "Query",
    {
        "node": GraphQLField(NODE, resolve=lambda *_: {"id": 1}),
        "requiredNode": GraphQLField(
            GraphQLNonNull(NODE), resolve=lambda *_: {"id": 1}
        ),
        "nodes": GraphQLField(GraphQLList(NODE), resolve=_nodes),
        "requiredNodes": GraphQLField(
            GraphQLList(GraphQLNonNull(NODE)), resolve=_nodes
        ),
        "nestedLists": GraphQLField(
            GraphQLList(GraphQLList(GraphQLInt)),
            resolve=lambda *_: [[1, None], None, [3, "x"]],
        ),
        "requiredNestedLists": GraphQLField(
            GraphQLNonNull(
                GraphQLList(GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLInt))))
            ),
            resolve=lambda *_: [[1, 2], [3, None]],
        ),
        "generator": GraphQLField(
            GraphQLList(GraphQLInt), resolve=lambda *_: (v for v in [1, "x", 3])
        ),
        "string": GraphQLField(GraphQLList(GraphQLString), resolve=lambda *_: "abc"),
        "mapping": GraphQLField(
            GraphQLList(GraphQLString), resolve=lambda *_: {"a": 1}
        ),
        "asyncGenerator": GraphQLField(
            GraphQLList(GraphQLInt), resolve=_async_generator_resolver([1, "x", 3])
        ),
        "failingAsyncGenerator": GraphQLField(
            GraphQLList(GraphQLInt),
            resolve=_async_generator_resolver(["x", 2], error="stream broke"),
        ),
        "unendingAsyncGenerator": GraphQLField(
            GraphQLList(GraphQLNonNull(GraphQLInt)),
            resolve=lambda *_: _unending_nulls(),
        ),
        "awaitableItems": GraphQLField(
            GraphQLList(GraphQLInt),
            resolve=lambda *_: [
                _after_ticks(ValueError("slow item"), 10),
                _after_ticks("x"),
            ],
        ),
        "requiredAwaitableItems": GraphQLField(
            GraphQLList(GraphQLNonNull(GraphQLInt)),
            resolve=lambda *_: [
                _after_ticks(ValueError("slow item"), 10),
                _after_ticks(None),
            ],
        ),
        "awaitableThenNull": GraphQLField(
            GraphQLList(GraphQLNonNull(GraphQLInt)),
            resolve=lambda *_: [_after_ticks(1), None],
        ),
        "exceptionItems": GraphQLField(
            GraphQLList(GraphQLInt), resolve=lambda *_: [1, ValueError("item"), 3]
        ),
        "exception": GraphQLField(
            GraphQLString, resolve=lambda *_: ValueError("returned")
        ),
        "requiredException": GraphQLField(
            GraphQLNonNull(GraphQLString), resolve=lambda *_: ValueError("returned")
        ),
        "failingScalar": GraphQLField(FAILING_SCALAR, resolve=lambda *_: 5),
        "nullScalar": GraphQLField(NULL_SCALAR, resolve=lambda *_: 5),
        "requiredNullScalar": GraphQLField(
            GraphQLNonNull(NULL_SCALAR), resolve=lambda *_: 5
        ),
        "color": GraphQLField(COLOR, resolve=lambda *_: Color.RED),
        "colorValue": GraphQLField(COLOR, resolve=lambda *_: 1),
        "colorName": GraphQLField(COLOR, resolve=lambda *_: "RED"),
        "unknownColor": GraphQLField(COLOR, resolve=lambda *_: "BLUE"),
        "checked": GraphQLField(CHECKED, resolve=lambda *_: {"v": 1}),
        "wrongChecked": GraphQLField(CHECKED, resolve=lambda *_: {"w": 1}),
        "checkedLater": GraphQLField(
            GraphQLList(GraphQLNonNull(CHECKED_LATER)),
            resolve=lambda *_: [{"v": 1}, {"w": 2}],
        ),
        "attributeDict": GraphQLField(NODE, resolve=lambda *_: AttributeDict(id=5)),
        "arguments": GraphQLField(
            GraphQLString,
            args={
                "count": GraphQLArgument(GraphQLInt, default_value=5),
                "filter": GraphQLArgument(FILTER),
                "flag": GraphQLArgument(
                    GraphQLNonNull(GraphQLBoolean), default_value=False
                ),
            },
            resolve=_describe_arguments,
        ),
    },
)

SCHEMA = GraphQLSchema(QUERY)

MATCHING = {
    "aliases-and-typename": (
        "{ a: node { i: id t: __typename c: child { __typename id } } __typename }",
        None,
    ),
    "fragments-used-twice": (
        "{ node { ...F child { ...F } } nodes { ...F } } fragment F on Node { id }",
        None,
    ),
    "nested-non-null-chain": (
        "{ requiredNode { child { requiredChild { requiredError } } } }",
        None,
    ),
    "sync-sibling-errors": ("{ nodes { error id requiredError } }", None),
    "lists-of-lists": ("{ nestedLists }", None),
    "non-null-lists-of-non-null-lists": ("{ requiredNestedLists }", None),
    "generator": ("{ generator }", None),
    "string-for-list": ("{ string }", None),
    "mapping-for-list": ("{ mapping }", None),
    "async-generator": ("{ asyncGenerator }", None),
    "returned-exceptions": ("{ exceptionItems exception }", None),
    "returned-exception-non-null": ("{ requiredException }", None),
    "scalar-serialize-fails": ("{ failingScalar nullScalar }", None),
    "scalar-serialize-null-non-null": ("{ requiredNullScalar }", None),
    "enum-values": ("{ color colorValue colorName unknownColor }", None),
    "is-type-of": ("{ checked { v } wrongChecked { v } checkedLater { v } }", None),
    "argument-defaults": ('{ a: arguments b: arguments(filter: {name: "n"}) }', None),
    "variable-default": ("query Q($c: Int = 3) { arguments(count: $c) }", None),
    "variable-null": ("query Q($c: Int = 3) { arguments(count: $c) }", {"c": None}),
    "variable-null-for-defaulted-non-null": (
        "query Q($f: Boolean) { arguments(flag: $f) }",
        {"f": None},
    ),
    "variable-missing-required": ("query Q($f: Boolean!) { arguments(flag: $f) }", {}),
    "input-object-variable": (
        "query Q($f: Filter) { arguments(filter: $f) }",
        {"f": {"name": "n", "ids": 4}},
    ),
    "input-object-variable-invalid": (
        "query Q($f: Filter) { arguments(filter: $f) }",
        {"f": {"limit": "many", "ids": [1, None]}},
    ),
}

# Async cases in which the errors list depends on the order work ends in.
DIFFERENT_ERRORS = {
    # graphql-core awaits siblings together and lists errors as they happen.
    "async-sibling-error-order": ("{ node { slowError quickError } }", None),
    "async-item-error-order": ("{ awaitableItems }", None),
    # graphql-core cancels the pending sibling once a non-null field fails.
    "error-of-cancelled-sibling": ("{ node { slowError quickRequiredError } }", None),
    # graphql-core nulls the list for the item that fails first.
    "first-failing-item": ("{ requiredAwaitableItems }", None),
    # graphql-core completes each item as it is read, before the stream fails.
    "item-error-before-stream-error": ("{ failingAsyncGenerator }", None),
}

# graphql-core lets leftover siblings and items finish in the background, so no
# resolver coroutine is left without being awaited.
UNAWAITED = {
    "sync-error-after-async-sibling": "{ node { slow requiredError } }",
    "non-null-item-with-pending-items": "{ requiredNodes { slow quickRequiredError } }",
    "null-item-after-awaitable-item": "{ awaitableThenNull }",
}


def _run(call):
    """Run `call` in a new event loop and return the formatted result and warnings."""

    async def main():
        result = call()
        if isawaitable(result):
            result = await asyncio.wait_for(result, 1.0)
        return result.formatted

    messages: list[str] = []

    def record(message, *_args, **_kwargs):
        # Keep the text only, because a recorded warning keeps its source
        # coroutine alive past this function, and the coroutines that one holds.
        messages.append(str(message).split(" at 0x")[0])

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        formatted = asyncio.run(main())
        # A coroutine freed in one pass can free the next one it held.
        for _ in range(3):
            if not gc.collect(1):
                break
    return formatted, sorted(set(messages))


def _run_both(query: str, variables: dict | None):
    document = parse(query)
    assert validate(SCHEMA, document) == []
    plan = plan_for(SCHEMA, document)
    assert plan is not None
    expected = _run(lambda: execute(SCHEMA, document, variable_values=variables))
    actual = _run(lambda: plan.run(variables, None))
    return expected, actual


@pytest.mark.parametrize(
    ("query", "variables"),
    [pytest.param(*case, id=name) for name, case in MATCHING.items()],
)
def test_plan_matches_graphql_core(query, variables):
    (expected, expected_warnings), (actual, actual_warnings) = _run_both(
        query, variables
    )

    assert actual == expected
    assert actual_warnings == expected_warnings


@pytest.mark.parametrize(
    ("query", "variables"),
    [pytest.param(*case, id=name) for name, case in DIFFERENT_ERRORS.items()],
)
def test_plan_errors_match_graphql_core(query, variables):
    (expected, _), (actual, _) = _run_both(query, variables)

    assert actual["data"] == expected["data"]
    assert actual["errors"] == expected["errors"]


@pytest.mark.parametrize("query", [pytest.param(q, id=n) for n, q in UNAWAITED.items()])
def test_plan_awaits_every_resolver_coroutine(query):
    (expected, expected_warnings), (actual, actual_warnings) = _run_both(query, None)

    assert actual == expected
    assert expected_warnings == []
    assert actual_warnings == []


def test_plan_awaitable_check_matches_graphql_core():
    (expected, _), (actual, _) = _run_both("{ attributeDict { id } }", None)

    # graphql-core tests `hasattr(value, "__await__")`, so it awaits the dict
    # and reports "object AttributeDict can't be used in 'await' expression".
    assert expected["data"] == {"attributeDict": None}
    assert actual == expected


def test_plan_stops_async_iterator_at_failing_item():
    query = "{ unendingAsyncGenerator }"
    expected, _ = _run(lambda: execute(SCHEMA, parse(query)))
    plan = plan_for(SCHEMA, parse(query))

    assert expected["errors"][0]["path"] == ["unendingAsyncGenerator", 0]
    # An executor reading the generator to its end never returns, and `_run`
    # raises TimeoutError after 1 s.
    actual, _ = _run(lambda: plan.run(None, None))
    assert actual == expected


def _sibling_schema() -> GraphQLSchema:
    async def wait_for_sibling(_source, info):
        await asyncio.wait_for(info.context["event"].wait(), 0.2)
        return "woken"

    async def wake_sibling(_source, info):
        info.context["event"].set()
        return "set"

    async def count_running(_source, info):
        running = info.context["running"]
        running.append(info.field_name)
        info.context["max_running"] = max(info.context["max_running"], len(running))
        await asyncio.sleep(0)
        running.remove(info.field_name)
        return "done"

    return GraphQLSchema(
        GraphQLObjectType(
            "Query",
            {
                "waiter": GraphQLField(GraphQLString, resolve=wait_for_sibling),
                "setter": GraphQLField(GraphQLString, resolve=wake_sibling),
                "first": GraphQLField(GraphQLString, resolve=count_running),
                "second": GraphQLField(GraphQLString, resolve=count_running),
            },
        )
    )


def test_plan_runs_async_siblings_concurrently():
    schema = _sibling_schema()
    document = parse("{ waiter setter }")
    plan = plan_for(schema, document)

    async def run_both():
        expected = await execute(
            schema, document, context_value={"event": asyncio.Event()}
        )
        actual = await plan.run(None, {"event": asyncio.Event()})
        return expected.formatted, actual.formatted

    expected, actual = asyncio.run(run_both())

    assert expected == {"data": {"waiter": "woken", "setter": "set"}}
    assert actual == expected


def test_plan_runs_async_resolvers_together():
    schema = _sibling_schema()
    document = parse("{ first second }")
    plan = plan_for(schema, document)

    async def max_running(call):
        context = {"running": [], "max_running": 0}
        await call(context)
        return context["max_running"]

    core_max = asyncio.run(
        max_running(lambda context: execute(schema, document, context_value=context))
    )
    plan_max = asyncio.run(max_running(lambda context: plan.run(None, context)))

    # Each resolver yields to the loop once, so both run at the same time only
    # when the executor awaits them together.
    assert core_max == 2
    assert plan_max == 2
