"""Error codes and the mapping of domain errors to GraphQL errors.

Every error a client sees carries `extensions.code` from `ErrorCode`. Services
raise domain errors; `to_client_error` turns each into a GraphQL error at the
edge. Anything else is unexpected and reaches the client masked.
"""

import re
from enum import StrEnum

from graphql import GraphQLError
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from strawberry.utils.str_converters import to_camel_case

from ml.errors import InvalidFeatures, ModelUnavailable
from ml.metadata import graphql_field_name
from schema.errors import (
    Conflict,
    DomainError,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from schema.throttle import QuotaExceeded, ThrottleUnavailable


class ErrorCode(StrEnum):
    """Stable values of `extensions.code`."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    BAD_REQUEST = "BAD_REQUEST"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    TIMEOUT = "TIMEOUT"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


INVALID_CREDENTIALS_MESSAGE = "Invalid username or password."
MASKED_MESSAGE = "Unexpected error. Quote the request id when reporting it."


class ClientError(GraphQLError):
    """A GraphQL error meant for the client, with a stable code."""

    def __init__(self, code: ErrorCode, message: str, **extensions: object) -> None:
        super().__init__(message, extensions={"code": code.value, **extensions})


def error_code(error: GraphQLError) -> str | None:
    extensions = error.extensions or {}
    code = extensions.get("code")
    return code if isinstance(code, str) else None


def bad_input(field: str, reason: str) -> ClientError:
    return ClientError(
        ErrorCode.BAD_USER_INPUT,
        f"Invalid value for {field}: {reason}",
        field=field,
        reason=reason,
    )


def to_client_error(error: Exception) -> ClientError | None:
    """Map a domain error to the error sent to the client, or None if unexpected."""
    match error:
        case InvalidCredentials():
            return ClientError(ErrorCode.UNAUTHENTICATED, INVALID_CREDENTIALS_MESSAGE)
        case InvalidInput(field=field, reason=reason):
            return bad_input(to_camel_case(field), reason)
        case InvalidFeatures(feature=None, reason=reason, row=row):
            prefix = f"Row {row}: " if row is not None else ""
            return ClientError(
                ErrorCode.BAD_USER_INPUT,
                f"{prefix}Invalid input: {reason}",
                reason=reason,
                **({"row": row} if row is not None else {}),
            )
        case InvalidFeatures(feature=str() as feature, reason=reason, row=row):
            error_for_client = bad_input(graphql_field_name(feature), reason)
            if row is not None:
                error_for_client.message = f"Row {row}: {error_for_client.message}"
                error_for_client.extensions["row"] = row
            return error_for_client
        case PermissionDenied():
            return ClientError(ErrorCode.FORBIDDEN, str(error))
        case NotFound():
            return ClientError(ErrorCode.NOT_FOUND, str(error))
        case Conflict():
            return ClientError(ErrorCode.CONFLICT, str(error))
        case IntegrityError():
            # A concurrent change took the same name or key between the check
            # and the write.
            return ClientError(
                ErrorCode.CONFLICT,
                "The change conflicts with another change made at the same time; "
                "read the current state and try again.",
            )
        case OperationalError() | InterfaceError() | PoolTimeoutError():
            # The database is down, restarting or out of connections.
            return ClientError(
                ErrorCode.SERVICE_UNAVAILABLE,
                "The database is not available right now; try again.",
            )
        case QuotaExceeded(limit=limit, retry_after=retry_after):
            return ClientError(
                ErrorCode.QUOTA_EXCEEDED,
                f"Prediction quota of {limit} rows a minute exceeded; retry in "
                f"{retry_after:.0f} s.",
                retryAfterSeconds=round(retry_after, 1),
            )
        case ThrottleUnavailable():
            return ClientError(
                ErrorCode.SERVICE_UNAVAILABLE,
                "The usage counters are unavailable right now; try again.",
            )
        case ModelUnavailable():
            return ClientError(
                ErrorCode.SERVICE_UNAVAILABLE, "The model is not available right now."
            )
        case DomainError():
            return None
    return None


# graphql-core appends these to unknown field, argument and type names.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def to_client_errors(
    errors: list[GraphQLError], request_id: str | None, *, hide_suggestions: bool
) -> list[GraphQLError]:
    """Give every error a stable code and mask the unexpected ones.

    Domain errors become their client error. GraphQL errors from parsing,
    validation and variable coercion keep their message and get a code.
    Any other error is replaced by a masked one that carries the request id;
    the schema logs the real error with the same id. With `hide_suggestions`,
    "Did you mean" hints, which reveal names of the schema, are removed.
    """
    converted = [_to_client_error(error, request_id) for error in errors]
    if hide_suggestions:
        for error in converted:
            error.message = _SUGGESTION.sub("", error.message)
            if error.extensions:
                error.extensions = {
                    key: _SUGGESTION.sub("", value) if isinstance(value, str) else value
                    for key, value in error.extensions.items()
                }
    return converted


def client_code(error: GraphQLError) -> str:
    """Return the code the client will see for an error, without changing it."""
    code = error_code(error)
    if code is not None:
        return code
    original = error.original_error
    if original is None or (error.path is None and _is_variable_error(error)):
        return _classify_request_error(error).value
    mapped = to_client_error(original)
    if mapped is None:
        return ErrorCode.INTERNAL_SERVER_ERROR.value
    return error_code(mapped) or ErrorCode.INTERNAL_SERVER_ERROR.value


def is_unexpected(error: GraphQLError) -> bool:
    """Tell whether an error is a fault of the service rather than of the request."""
    if error_code(error) is not None:
        return False
    original = error.original_error
    if original is None or (error.path is None and _is_variable_error(error)):
        return False
    return to_client_error(original) is None


def _to_client_error(error: GraphQLError, request_id: str | None) -> GraphQLError:
    if error_code(error) is not None:
        return error
    original = error.original_error
    if original is None or (error.path is None and _is_variable_error(error)):
        error.extensions = {
            **(error.extensions or {}),
            "code": _classify_request_error(error),
            **_variable_details(error.message),
        }
        if "tokens. Parsing aborted" in error.message:
            error.extensions["limit"] = "tokens"
        return error
    mapped = to_client_error(original)
    if mapped is None:
        mapped = ClientError(
            ErrorCode.INTERNAL_SERVER_ERROR, MASKED_MESSAGE, requestId=request_id
        )
    return GraphQLError(
        mapped.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=mapped.extensions,
    )


# graphql-core's wording, e.g. "Variable '$input' has invalid value at
# .bodyMassG: Float cannot represent ...".
_VARIABLE_ERROR = re.compile(
    r"Variable '\$(?P<variable>\w+)' has invalid value(?: at (?P<path>[^:]+))?: "
    r"(?P<reason>.*)",
    re.DOTALL,
)


def _variable_details(message: str) -> dict[str, str]:
    """Return `field` and `reason` extensions for a variable coercion error."""
    match = _VARIABLE_ERROR.match(message)
    if match is None:
        return {}
    path = match["path"]
    field = path.rsplit(".", 1)[-1].strip("[]0123456789") if path else ""
    return {"field": field or match["variable"], "reason": match["reason"]}


def _is_variable_error(error: GraphQLError) -> bool:
    # graphql-core's wording for variables that fail coercion, and for oneOf
    # inputs (such as the model choice of predict) that set no member or
    # more than one, in variables and literals alike.
    return error.message.startswith(
        ("Variable '$", "OneOf Input Object", "Value for member field")
    )


def _classify_request_error(error: GraphQLError) -> ErrorCode:
    if error.message.startswith("Syntax Error"):
        return ErrorCode.GRAPHQL_PARSE_FAILED
    if _is_variable_error(error):
        return ErrorCode.BAD_USER_INPUT
    return ErrorCode.GRAPHQL_VALIDATION_FAILED
