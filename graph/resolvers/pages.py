"""Pagination arguments shared by list queries."""

import re
from typing import Annotated

import strawberry

from graph.context import Context
from schema.errors import InvalidInput

MAX_OFFSET = 100_000
_ID = re.compile(r"[0-9]{1,18}")


DEFAULT_PAGE_SIZE = 50

# The `limit` argument of every list query.
PageLimit = Annotated[
    int | None,
    strawberry.argument(description="Page size; 50 or the maximum page size if lower."),
]


def check_page(context: Context, limit: int | None, offset: int) -> int:
    """Return the page size to use, checking `limit` and `offset` first.

    An omitted limit means 50, or the maximum page size when that is lower.

    Raises:
        InvalidInput: `limit` is below 1 or above the maximum page size, or
            `offset` is negative or above `MAX_OFFSET`.
    """
    maximum = context.services.settings.max_page_size
    if limit is None:
        limit = min(DEFAULT_PAGE_SIZE, maximum)
    if not 1 <= limit <= maximum:
        raise InvalidInput("limit", f"must be between 1 and {maximum} (got {limit}).")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(
            "offset", f"must be between 0 and {MAX_OFFSET} (got {offset})."
        )
    return limit


def parse_id(value: str) -> int | None:
    """Return the integer behind an ID, or None when it cannot name a row.

    Only ASCII digits count: `str.isdigit` also accepts superscripts and other
    scripts' digits, which `int` then rejects or reads differently.
    """
    if not _ID.fullmatch(value):
        return None
    return int(value)
