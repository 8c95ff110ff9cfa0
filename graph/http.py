"""An ASGI guard in front of the GraphQL app: size limits and error shapes.

Every response with an error status is sent as a GraphQL-style JSON body with
`extensions.code`. That covers Strawberry's transport checks, FastAPI's
routing and exceptions that escaped the app. Request bodies are bounded and
checked for well-formed JSON before they reach Strawberry, because some
malformed bodies make Strawberry raise instead of returning 400.
"""

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    visit,
)
from graphql.language import Visitor
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from strawberry.http.parse_content_type import parse_content_type

from graph.errors import MASKED_MESSAGE, ErrorCode
from graph.limits import unstorable_reason

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("fieldguard.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STATUS_CODES = {
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    500: ErrorCode.INTERNAL_SERVER_ERROR,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}
_JSON_PARAMETERS = ("variables", "extensions")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
JWKS_PATH = "/.well-known/jwks.json"
# Endpoints whose error responses already have a documented JSON shape.
OWN_SHAPE_PATHS = frozenset({"/readyz", "/metrics"})
# Fields whose every call must be counted on its own, so never batched.
UNBATCHABLE_FIELDS = frozenset({"login", "refreshToken"})
SECURITY_HEADERS = (
    # Responses carry tokens and personal data: no cache may keep them.
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


class RequestTooLarge(Exception):
    pass


def error_body(
    status: int,
    message: str,
    request_id: str,
    *,
    code: ErrorCode | None = None,
    **extensions: object,
) -> bytes:
    code = code or _STATUS_CODES.get(status, ErrorCode.BAD_REQUEST)
    payload = {
        "data": None,
        "errors": [
            {
                "message": message,
                "extensions": {
                    "code": code.value,
                    "requestId": request_id,
                    **extensions,
                },
            }
        ],
    }
    return json.dumps(payload).encode()


def _headers(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope.get("headers", ()) if key.lower() == name]


def strawberry_reads_json(content_type: bytes) -> bool:
    """Return whether Strawberry's view parses a body of this type as JSON.

    Its rule: the media type, before any parameter and case kept, contains
    `application/json`.
    """
    if content_type == b"application/json":
        return True
    media_type, _ = parse_content_type(content_type.decode("latin-1"))
    return "application/json" in media_type


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def _unstorable_string(value: object) -> str | None:
    """Return why some string inside a JSON value cannot be stored, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            reason = unstorable_reason(item)
            if reason is not None:
                return reason
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _parsed_operation(operation: object) -> DocumentNode | None:
    """Parse one batched operation's query; None when it has none or it does
    not parse, as Strawberry then reports the error for that operation."""
    query = operation.get("query") if isinstance(operation, dict) else None
    if not isinstance(query, str):
        return None
    try:
        return parse(query, max_tokens=10_000)
    except GraphQLError:
        return None


def _uses_unbatchable_field(document: DocumentNode) -> bool:
    finder = _FieldFinder(UNBATCHABLE_FIELDS)
    visit(document, finder)
    return finder.found


def _has_mutation(document: DocumentNode) -> bool:
    return any(
        isinstance(definition, OperationDefinitionNode)
        and definition.operation == OperationType.MUTATION
        for definition in document.definitions
    )


class _FieldFinder(Visitor):
    def __init__(self, names: frozenset[str]) -> None:
        super().__init__()
        self.names = names
        self.found = False

    def enter_field(self, node: FieldNode, *_args: object) -> object:
        if node.name.value in self.names:
            self.found = True
            return Visitor.BREAK
        return None


def _check_batch(value: list[object], max_operations: int) -> str | None:
    if max_operations == 0:
        return "Batched requests are not accepted; send one operation per request."
    if not 0 < len(value) <= max_operations:
        return f"A batch must hold 1 to {max_operations} operations."
    documents = [_parsed_operation(operation) for operation in value]
    if any(doc is not None and _uses_unbatchable_field(doc) for doc in documents):
        return "login and refreshToken cannot be batched; send them on their own."
    # Every operation of a batch runs as the caller was when the request came
    # in, so an operation after a mutation could use rights the mutation ended.
    if any(doc is not None and _has_mutation(doc) for doc in documents[:-1]):
        return (
            "Only the last operation of a batch may be a mutation; send the "
            "others in a later request."
        )
    return None


# Key, in the ASGI scope's state, of the checked JSON value of the body.
PARSED_BODY = "fieldguard.parsed_body"
# Key, in the ASGI scope's state, set once the operation's log line is written.
OPERATION_LOGGED = "fieldguard.operation_logged"


def load_json(body: bytes | str) -> Any:
    """Parse JSON with orjson, falling back to the standard parser.

    orjson is several times faster on large batches. It rejects the NaN and
    Infinity tokens that Python clients send, which the standard parser
    accepts, so that validation can name the row and field holding them.

    Raises:
        ValueError: The body is not JSON, not even by the standard parser.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text)


def _check_json(body: bytes, max_batch: int) -> tuple[ErrorCode, str] | object:
    """Return why `body` is not a usable GraphQL JSON request, or its value.

    A problem is an (ErrorCode, message) tuple; a JSON value never is one.
    """
    try:
        value = load_json(body)
    except UnicodeDecodeError:
        return ErrorCode.BAD_REQUEST, "The request body is not valid UTF-8."
    except (ValueError, RecursionError):
        return ErrorCode.BAD_REQUEST, "The request body is not valid JSON."
    if isinstance(value, list):
        problem = _check_batch(value, max_batch)
        if problem is not None:
            return ErrorCode.BAD_REQUEST, problem
    elif not isinstance(value, dict):
        return ErrorCode.BAD_REQUEST, "The request body must be a JSON object."
    # In valid JSON, NUL and surrogates can only arrive as \u escapes; a body
    # without such an escape needs no walk through its strings.
    if _SUSPECT_ESCAPE.search(body):
        reason = _unstorable_string(value)
        if reason is not None:
            return ErrorCode.BAD_USER_INPUT, reason
    return value


def _check_query_string(scope: Scope) -> tuple[ErrorCode, str] | None:
    if not scope.get("query_string"):
        return None
    try:
        parameters = parse_qs(
            scope.get("query_string", b"").decode("utf-8"), errors="strict"
        )
    except UnicodeDecodeError:
        return ErrorCode.BAD_REQUEST, "The query string is not valid UTF-8."
    reason = _unstorable_string(parameters)
    for name in _JSON_PARAMETERS:
        for value in parameters.get(name, ()):
            try:
                reason = reason or _unstorable_string(json.loads(value))
            except (ValueError, RecursionError):
                return ErrorCode.BAD_REQUEST, f"The {name} parameter is not valid JSON."
    if reason is not None:
        return ErrorCode.BAD_USER_INPUT, reason
    return None


class RequestGuard:
    """Bounds request bodies and gives every error response a JSON body."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_batch_operations: int = 0,
        timeout_seconds: float = 30.0,
        trusted_proxies: frozenset[str] = frozenset(),
        owner: object = None,
        routes: dict[str, ASGIApp] | None = None,
    ) -> None:
        self.app = app
        # Paths served by their own ASGI app rather than through `app`, with
        # `owner` (the FastAPI app, whose state contains the services) in scope.
        self.owner = owner
        self.routes = routes or {}
        self.trusted_proxies = trusted_proxies
        self.max_body_bytes = max_body_bytes
        self.max_batch_operations = max_batch_operations
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # No WebSocket transport is served. Closing before accepting makes
            # the server reject the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def reply(
            status: int,
            message: str,
            code: ErrorCode | None = None,
            **extensions: object,
        ) -> None:
            body = error_body(status, message, request_id, code=code, **extensions)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", request_id.encode()),
                        *SECURITY_HEADERS,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        problem = _check_query_string(scope)
        if problem is not None:
            await reply(400, problem[1], problem[0])
            return
        try:
            body = await self._read_body(scope, receive)
        except RequestTooLarge:
            await reply(
                413,
                f"The request body exceeds {self.max_body_bytes} bytes.",
                maxBytes=self.max_body_bytes,
            )
            return
        content_types = _headers(scope, b"content-type")
        if len(content_types) > 1:
            # Readers that take the first or the last would disagree.
            await reply(400, "Send one Content-Type header.", ErrorCode.BAD_REQUEST)
            return
        content_type = content_types[0] if content_types else b""
        # Any body whose type mentions application/json is checked, a wider
        # set than Strawberry parses as JSON.
        if body and b"application/json" in content_type.lower():
            checked = _check_json(body, self.max_batch_operations)
            if isinstance(checked, tuple):
                await reply(400, checked[1], checked[0])
                return
            if strawberry_reads_json(content_type):
                # The known-operation runner takes only this checked value.
                scope["state"][PARSED_BODY] = checked

        await self._forward(scope, body, receive, send, request_id, reply)

    def _request_id(self, scope: Scope) -> str:
        """Take X-Request-ID from a trusted proxy, or make a new id."""
        client = scope.get("client")
        if client and client[0] in self.trusted_proxies:
            given = (_header(scope, b"x-request-id") or b"").decode("latin-1")
            if _REQUEST_ID.fullmatch(given):
                return given
        # 128 random bits as 32 hex digits, the format of a uuid4's hex,
        # without building the UUID object.
        return os.urandom(16).hex()

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_body_bytes:
                raise RequestTooLarge
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestTooLarge
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _forward(
        self,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
        request_id: str,
        reply: Callable[..., Awaitable[None]],
    ) -> None:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                # After the body, only a real disconnect may arrive; streaming
                # responses wait on this to notice a client going away.
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        started = False
        held_start: Message | None = None
        held_body: list[bytes] = []
        status = 0
        began = time.perf_counter()

        async def guarded_send(message: Message) -> None:
            nonlocal started, held_start, status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if (
                    message["status"] >= 400
                    and scope.get("path") not in OWN_SHAPE_PATHS
                ):
                    # Hold the error response to give it the JSON error shape.
                    held_start = message
                    return
                message.setdefault("headers", [])
                headers = [*message["headers"], (b"x-request-id", request_id.encode())]
                if scope.get("path") == JWKS_PATH:
                    # Public keys: verifiers may cache them for a while.
                    headers.append((b"cache-control", b"public, max-age=300"))
                    headers += [h for h in SECURITY_HEADERS if h[0] != b"cache-control"]
                else:
                    headers += SECURITY_HEADERS
                message["headers"] = headers
                started = True
                await send(message)
                return
            if held_start is not None:
                held_body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    started = True
                    await self._send_error(held_start, b"".join(held_body), reply)
                return
            await send(message)

        target = self.routes.get(scope.get("path", ""))
        if target is None:
            target = self.app
        elif self.owner is not None:
            scope["app"] = self.owner
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await target(scope, replay, guarded_send)
        except TimeoutError:
            logger.warning(
                "Request timed out after %s s (request_id=%s)",
                self.timeout_seconds,
                request_id,
            )
            if not started:
                await reply(
                    503,
                    f"The request took longer than {self.timeout_seconds:g} seconds.",
                    ErrorCode.TIMEOUT,
                )
        except (OperationalError, PoolTimeoutError, DBAPIError) as error:
            logger.error(
                "Database unavailable (request_id=%s): %s",
                request_id,
                type(error).__name__,
                exc_info=error,
            )
            if not started:
                await reply(503, "The database is not available right now; try again.")
        except Exception as error:
            logger.error(
                "Unexpected error outside GraphQL (request_id=%s)",
                request_id,
                exc_info=error,
            )
            if not started:
                await reply(500, MASKED_MESSAGE)
        finally:
            # Path only: query strings can carry variables, passwords included.
            # A known operation's own line already gives its request id, time
            # and outcome, so it gets no second line.
            if status != 200 or not scope["state"].get(OPERATION_LOGGED):
                access_logger.info(
                    "%s %s %s %.1f ms request_id=%s",
                    scope.get("method"),
                    scope.get("path"),
                    status or "-",
                    (time.perf_counter() - began) * 1000,
                    request_id,
                )

    @staticmethod
    async def _send_error(
        start: Message, body: bytes, reply: Callable[..., Awaitable[None]]
    ) -> None:
        status = int(start["status"])
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
            message = str(parsed["errors"][0].get("message", "Request failed."))
        elif isinstance(parsed, dict) and "detail" in parsed:
            message = str(parsed["detail"])
        else:
            message = body.decode("utf-8", "replace").strip() or "Request failed."
        await reply(status, message)
