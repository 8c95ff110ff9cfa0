"""Execution plans: each document gives what graphql-core's `execute` gives.

The schema here is built with graphql-core alone, so that every way a value
can be completed or fail is reachable: sync and async resolvers, errors in
nullable and non-null positions, lists, arguments and variables.
"""

import asyncio
from inspect import isawaitable

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    execute,
    parse,
    validate,
)

from graph.plans import plan_for


class Item:
    def __init__(self, name: str, size: float | None) -> None:
        self.name = name
        self.size = size


def _fail(*_args, **_kwargs):
    raise ValueError("resolver failed")


async def _fail_later(*_args, **_kwargs):
    await asyncio.sleep(0)
    raise ValueError("async resolver failed")


async def _later(value):
    await asyncio.sleep(0)
    return value


def _items(_source, _info, count: int = 3):
    return [Item(f"item{i}", i * 1.5 if i % 2 == 0 else None) for i in range(count)]


NAMED = GraphQLInterfaceType("Named", {"name": GraphQLField(GraphQLString)})

ITEM = GraphQLObjectType(
    "Item",
    lambda: {
        "name": GraphQLField(GraphQLNonNull(GraphQLString)),
        "size": GraphQLField(GraphQLFloat),
        "requiredSize": GraphQLField(
            GraphQLNonNull(GraphQLFloat), resolve=lambda item, _info: item.size
        ),
        "broken": GraphQLField(GraphQLString, resolve=_fail),
        "brokenRequired": GraphQLField(GraphQLNonNull(GraphQLString), resolve=_fail),
        "slowName": GraphQLField(
            GraphQLString, resolve=lambda item, _info: _later(item.name)
        ),
        "slowBroken": GraphQLField(GraphQLString, resolve=_fail_later),
        "slowBrokenRequired": GraphQLField(
            GraphQLNonNull(GraphQLString), resolve=_fail_later
        ),
        "notANumber": GraphQLField(GraphQLInt, resolve=lambda *_: "many"),
        "child": GraphQLField(
            ITEM, resolve=lambda item, _info: Item(item.name + "/c", 1.0)
        ),
    },
    is_type_of=lambda value, _info: isinstance(value, Item),
)

NAMED_ITEM = GraphQLObjectType(
    "NamedItem", {"name": GraphQLField(GraphQLString)}, interfaces=[NAMED]
)

QUERY = GraphQLObjectType(
    "Query",
    {
        "items": GraphQLField(
            GraphQLList(ITEM),
            args={"count": GraphQLArgument(GraphQLInt, default_value=3)},
            resolve=_items,
        ),
        "requiredItems": GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(ITEM))), resolve=_items
        ),
        "slowItems": GraphQLField(
            GraphQLList(ITEM),
            resolve=lambda *args: _later(_items(*args)),
        ),
        "itemsOfAwaitables": GraphQLField(
            GraphQLList(ITEM),
            resolve=lambda *args: [_later(item) for item in _items(*args)],
        ),
        "wrongList": GraphQLField(GraphQLList(ITEM), resolve=lambda *_: "not a list"),
        "wrongObject": GraphQLField(ITEM, resolve=lambda *_: {"name": "dict"}),
        "echo": GraphQLField(
            GraphQLString,
            args={"text": GraphQLArgument(GraphQLNonNull(GraphQLString))},
            resolve=lambda _source, _info, text: text,
        ),
        "required": GraphQLField(GraphQLNonNull(GraphQLString), resolve=_fail),
        "named": GraphQLField(NAMED, resolve=lambda *_: None),
        "context": GraphQLField(
            GraphQLString, resolve=lambda _source, info: info.context["who"]
        ),
    },
)

SCHEMA = GraphQLSchema(QUERY, types=[NAMED_ITEM])

SUPPORTED = {
    "fields": "{ items { name size } }",
    "alias-and-typename": "{ a: items(count: 2) { __typename n: name } }",
    "named-fragment": "query Q { items { ...F } } fragment F on Item { name size }",
    "inline-fragment": "{ items { ... on Item { name } ... { size } } }",
    "nullable-error": "{ items { name broken } }",
    "non-null-error-nulls-the-item": "{ items { name brokenRequired } }",
    "non-null-item-nulls-the-list": "{ requiredItems { name requiredSize } }",
    "null-in-non-null-field": "{ items { name requiredSize } }",
    "non-null-root-nulls-data": "{ context required }",
    "async-values": "{ slowItems { slowName child { slowName } } }",
    "async-errors": "{ items { slowBroken slowName } }",
    "async-non-null-error": "{ items { name slowBrokenRequired } }",
    "awaitable-items": "{ itemsOfAwaitables { name } }",
    "not-a-list": "{ wrongList { name } }",
    "wrong-object": "{ wrongObject { name } }",
    "leaf-coercion": "{ items { notANumber } }",
    "variables": (
        "query Q($n: Int, $t: String!) { items(count: $n) { name } echo(text: $t) }"
    ),
    "nested": "{ items(count: 2) { child { child { name brokenRequired } } } }",
    "context": "{ context }",
}

VARIABLES = {
    "variables": [
        {"n": 2, "t": "hello"},
        {"n": "two", "t": "hello"},
        {"n": 1},
        {"n": None, "t": "x"},
    ],
}


def _run_both(query: str, variables: dict | None) -> tuple[dict, dict]:
    document = parse(query)
    assert validate(SCHEMA, document) == []
    plan = plan_for(SCHEMA, document)
    assert plan is not None

    async def run() -> tuple[object, object]:
        context = {"who": "tester"}
        expected = execute(
            SCHEMA, document, variable_values=variables, context_value=context
        )
        if isawaitable(expected):
            expected = await expected
        actual = plan.run(variables, context)
        if isawaitable(actual):
            actual = await actual
        return expected, actual

    expected, actual = asyncio.run(run())
    return expected.formatted, actual.formatted


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        pytest.param(query, variables, id=f"{name}-{index}")
        for name, query in SUPPORTED.items()
        for index, variables in enumerate(VARIABLES.get(name, [None]))
    ],
)
def test_plan_gives_what_graphql_core_gives(query, variables):
    expected, actual = _run_both(query, variables)

    assert actual == expected


def test_comparison_sees_errors_and_nulls():
    expected, _ = _run_both(SUPPORTED["non-null-item-nulls-the-list"], None)

    assert expected["data"] is None
    assert expected["errors"][0]["path"] == ["requiredItems", 1, "requiredSize"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("{ items { name @skip(if: true) } }", id="field-directive"),
        pytest.param(
            "{ items { ... @include(if: true) { name } } }", id="fragment-directive"
        ),
        pytest.param("{ items { name } items { size } }", id="key-twice"),
        pytest.param("{ named { name } }", id="interface"),
        pytest.param("{ named { ... on NamedItem { name } } }", id="other-type"),
        pytest.param("mutation { x }", id="mutation"),
        pytest.param("query A { context } query B { context }", id="two-operations"),
    ],
)
def test_documents_a_plan_leaves_out_get_none(query):
    assert plan_for(SCHEMA, parse(query)) is None


def test_document_with_too_many_fields_gets_no_plan():
    aliases = " ".join(f"a{index}: __typename" for index in range(2_001))

    assert plan_for(SCHEMA, parse(f"{{ {aliases} }}")) is None
    assert plan_for(SCHEMA, parse("{ a0: __typename }")) is not None
