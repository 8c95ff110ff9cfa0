"""Depth and alias limits, checked on the schema without a server."""

import asyncio

import pytest

from graph.api import build_schema


def _codes(query: str, **limits: int) -> list[dict]:
    schema = build_schema(
        **{"max_depth": 3, "max_aliases": 2, "max_tokens": 500, **limits}
    )
    result = asyncio.run(schema.execute(query))
    return [error.extensions for error in result.errors or []]


@pytest.mark.parametrize(
    ("query", "rejected"),
    [
        pytest.param("{ me { roles { name } } }", False, id="depth-3"),
        pytest.param("{ users { items { roles { name } } } }", True, id="depth-4"),
        pytest.param(
            "fragment R on Role { name } fragment U on User { roles { ...R } } "
            "{ users { items { ...U } } }",
            True,
            id="depth-4-through-fragments",
        ),
        pytest.param(
            "{ __schema { types { fields { type { ofType { name } } } } } }",
            False,
            id="introspection-not-counted",
        ),
    ],
)
def test_depth_limit(query, rejected):
    codes = _codes(query)
    limited = {"code": "GRAPHQL_VALIDATION_FAILED", "limit": "depth"}
    assert (limited in codes) is rejected


def test_alias_limit_counts_fragment_spreads():
    query = "fragment F on Query { a: __typename b: __typename } { ...F }"
    assert _codes(query) == []
    assert _codes("{ x: __typename ...F } " + query.replace("{ ...F }", "")) == [
        {"code": "GRAPHQL_VALIDATION_FAILED", "limit": "aliases"}
    ]


def test_cyclic_fragments_do_not_hang():
    query = "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }"
    schema = build_schema(max_depth=3, max_aliases=2, max_tokens=500)
    result = asyncio.run(schema.execute(query))
    assert result.errors
    assert any("Cannot spread fragment" in error.message for error in result.errors)


def test_long_documents_do_not_fill_the_validation_cache():
    from strawberry.extensions.validation_cache import _get_validate_cache

    schema = build_schema()
    cache = _get_validate_cache(256)
    padding = " " * 25_000
    asyncio.run(schema.execute("{ __typename }"))
    before = cache.cache_info().currsize

    for index in range(3):
        result = asyncio.run(schema.execute(f"{{ a{index}: __typename }}{padding}"))
        assert result.errors is None

    assert cache.cache_info().currsize == before
