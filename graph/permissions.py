"""Field rules: who may resolve each field.

Every field of the schema carries exactly one rule, applied with
`PermissionExtension` so that it also appears in `schema.graphql` as a
directive: `@public`, `@signedIn`, `@requires(permission: ...)` or
`@ownerOr(permission: ...)`. A reader of the SDL can tell who may read each field
without opening the code.

The checks are synchronous set lookups on the principal loaded once per
request. A denial raises at once: `UNAUTHENTICATED` when nobody is signed in,
`FORBIDDEN` otherwise.
"""

from typing import Any, NoReturn

import strawberry
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema_directive import Location
from strawberry.types import Info

from graph.context import Context
from graph.errors import ClientError, ErrorCode
from schema.catalogue import Permission


@strawberry.schema_directive(
    name="public",
    locations=[Location.FIELD_DEFINITION],
    description="Anyone may resolve this field, signed in or not.",
)
class PublicDirective:
    pass


@strawberry.schema_directive(
    name="signedIn",
    locations=[Location.FIELD_DEFINITION],
    description="Any signed-in user may resolve this field.",
)
class SignedInDirective:
    pass


@strawberry.schema_directive(
    name="requires",
    locations=[Location.FIELD_DEFINITION],
    description="Only callers holding `permission` may resolve this field.",
)
class RequiresDirective:
    permission: str


@strawberry.schema_directive(
    name="ownerOr",
    locations=[Location.FIELD_DEFINITION],
    description=(
        "The user the object describes may resolve this field, and so may "
        "callers holding `permission`."
    ),
)
class OwnerOrDirective:
    permission: str


def _deny(info: Info[Context, Any], permission: Permission | None = None) -> NoReturn:
    context = info.context
    if context.principal is None:
        reason = context.auth_failure or "this field requires a signed-in user"
        raise ClientError(ErrorCode.UNAUTHENTICATED, f"Not authenticated: {reason}.")
    if permission is None:
        raise ClientError(
            ErrorCode.FORBIDDEN, f"Not allowed to read {info.field_name}."
        )
    raise ClientError(
        ErrorCode.FORBIDDEN,
        f"Not allowed to read {info.field_name}: it requires {permission.value}.",
        requiredPermission=permission.value,
    )


class IsPublic(BasePermission):
    """Allows everyone; the rule of the short public allow-list."""

    _schema_directive = PublicDirective()

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return True


class IsSignedIn(BasePermission):
    """Allows any signed-in user.

    While an admin-issued temporary password is pending, only the fields
    built with `allow_limited` are allowed, so that the temporary
    password is good for choosing a new one and nothing else.
    """

    _schema_directive = SignedInDirective()

    def __init__(self, *, allow_limited: bool = False) -> None:
        self.allow_limited = allow_limited

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = info.context.principal
        if principal is None:
            _deny(info)
        if principal.api_key_id is not None and not self.allow_limited:
            # API keys run predictions; they never change their account.
            raise ClientError(
                ErrorCode.FORBIDDEN, "API keys cannot use this field; sign in instead."
            )
        if principal.password_change_required and not self.allow_limited:
            raise ClientError(
                ErrorCode.FORBIDDEN,
                "Choose a new password with changePassword first.",
            )
        return True


class HasPermission(BasePermission):
    """Allows callers whose roles grant `permission`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        self._schema_directive = RequiresDirective(permission=permission.value)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = info.context.principal
        if principal is None or self.permission not in principal.permissions:
            _deny(info, self.permission)
        return True


class IsOwnerOr(BasePermission):
    """Allows the user that `source` describes, and callers holding `permission`.

    `source` must have a `user_id` attribute naming the user it describes.
    """

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        self._schema_directive = OwnerOrDirective(permission=permission.value)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = info.context.principal
        if principal is None:
            _deny(info)
        if principal.user_id == source.user_id:
            return True
        if self.permission not in principal.permissions:
            _deny(info, self.permission)
        return True


def rule(permission: BasePermission) -> list[PermissionExtension]:
    """Return the field extensions that apply `permission` and show its directive."""
    return [PermissionExtension(permissions=[permission], use_directives=True)]


def public() -> list[PermissionExtension]:
    return rule(IsPublic())


def signed_in(*, allow_limited: bool = False) -> list[PermissionExtension]:
    return rule(IsSignedIn(allow_limited=allow_limited))


def requires(permission: Permission) -> list[PermissionExtension]:
    return rule(HasPermission(permission))


def owner_or(permission: Permission) -> list[PermissionExtension]:
    return rule(IsOwnerOr(permission))
