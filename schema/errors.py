"""Domain errors raised by the services.

Each class names a fact. The GraphQL layer maps each one to a message and a
stable error code, so nothing here depends on GraphQL.
"""


class DomainError(Exception):
    """Base class of the errors that services raise on purpose."""


class InvalidCredentials(DomainError):
    """The username and password do not identify an active user.

    Attributes:
        reason: `unknown_user`, `wrong_password` or `inactive`, for logs only;
            clients see one message for all three.
        user_id: The user the username names, when there is one.
    """

    def __init__(self, reason: str, user_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user_id = user_id


class NotFound(DomainError):
    """The requested object does not exist."""


class PermissionDenied(DomainError):
    """The actor may not make this change. The message names the rule."""


class Conflict(DomainError):
    """The change would break a uniqueness or integrity rule."""


class InvalidInput(DomainError):
    """A value failed validation.

    Attributes:
        field: Name of the offending input field, as the client spelled it.
        reason: What is wrong with the value, as a sentence.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
