"""Field rules: who may resolve each field.

Every field of the schema carries exactly one rule, which also appears in
`schema.graphql` as a directive: `@public`, `@signedIn`,
`@requires(permission: ...)` or `@ownerOr(permission: ...)`. A reader of the
SDL can tell who may read each field without opening the code.

The checks are synchronous set lookups on the principal loaded once per
request. A denial raises at once: `UNAUTHENTICATED` when nobody is signed in,
`FORBIDDEN` otherwise.

`guard_schema` puts each check straight in front of its field's resolver
once the schema is built. Strawberry's own permission extensions cost about
ten microseconds a field, which made a list of a thousand guarded objects
nearly twice as slow as the same list unguarded.
"""

from collections.abc import Callable
from typing import Any, NoReturn, Protocol

import strawberry
from graphql import GraphQLObjectType, GraphQLSchema, default_field_resolver
from strawberry.extensions import FieldExtension
from strawberry.schema_directive import Location
from strawberry.types.field import StrawberryField

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


class ResolveInfo(Protocol):
    """The part of graphql-core's resolve info that rules read."""

    context: Context
    field_name: str


def _deny(info: ResolveInfo, permission: Permission | None = None) -> NoReturn:
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


class Rule:
    """A field's access rule: `check` raises ClientError for a caller it denies."""

    directive: object

    def check(self, source: Any, info: ResolveInfo) -> None:
        raise NotImplementedError


class IsPublic(Rule):
    """Allows everyone; the rule of the short public allow-list."""

    directive = PublicDirective()

    def check(self, source: Any, info: ResolveInfo) -> None:
        return None


class IsSignedIn(Rule):
    """Allows any signed-in user.

    While an admin-issued temporary password is pending, only the fields
    built with `allow_limited` are allowed, so that the temporary
    password is good for choosing a new one and nothing else.
    """

    directive = SignedInDirective()

    def __init__(self, *, allow_limited: bool = False) -> None:
        self.allow_limited = allow_limited

    def check(self, source: Any, info: ResolveInfo) -> None:
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


class HasPermission(Rule):
    """Allows callers whose roles grant `permission`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        self.directive = RequiresDirective(permission=permission.value)

    def check(self, source: Any, info: ResolveInfo) -> None:
        principal = info.context.principal
        if principal is None or self.permission not in principal.permissions:
            _deny(info, self.permission)


class IsOwnerOr(Rule):
    """Allows the user that `source` describes, and callers holding `permission`.

    `source` must have a `user_id` attribute naming the user it describes.
    """

    def __init__(self, permission: Permission) -> None:
        self.permission = permission
        self.directive = OwnerOrDirective(permission=permission.value)

    def check(self, source: Any, info: ResolveInfo) -> None:
        principal = info.context.principal
        if principal is None:
            _deny(info)
        if principal.user_id == source.user_id:
            return
        if self.permission not in principal.permissions:
            _deny(info, self.permission)


class FieldRule(FieldExtension):
    """Attaches a rule to a field and shows it as a directive.

    It has no resolve hook, so Strawberry adds nothing to the field's
    resolution; `guard_schema` applies the check.
    """

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def apply(self, field: StrawberryField) -> None:
        # Every schema built from the same types applies this again.
        if not any(directive is self.rule.directive for directive in field.directives):
            field.directives = [*field.directives, self.rule.directive]


def field_rule(field: StrawberryField) -> Rule | None:
    """Return the rule attached to a Strawberry field, None without one."""
    for extension in field.extensions:
        if isinstance(extension, FieldRule):
            return extension.rule
    return None


def guard_schema(schema: GraphQLSchema) -> None:
    """Put each field's rule check in front of its resolver.

    A field without a rule resolves as it did: the test that walks the SDL
    makes sure there is none. A plain attribute with no resolver, argument
    or other extension is read directly, skipping Strawberry's argument and
    extension handling, which has nothing to do for it.
    """
    for named_type in schema.type_map.values():
        if not isinstance(named_type, GraphQLObjectType):
            continue
        if named_type.name.startswith("__"):
            continue
        for graphql_field in named_type.fields.values():
            definition = graphql_field.extensions.get("strawberry-definition")
            if not isinstance(definition, StrawberryField):
                continue
            rule = field_rule(definition)
            if rule is None:
                continue
            resolve = graphql_field.resolve or default_field_resolver
            if _is_plain_attribute(definition):
                resolve = _attribute_reader(definition.python_name)
            graphql_field.resolve = _guarded(rule.check, resolve)


def _is_plain_attribute(field: StrawberryField) -> bool:
    return (
        field.base_resolver is None
        and not field.arguments
        and all(isinstance(extension, FieldRule) for extension in field.extensions)
    )


def _attribute_reader(name: str) -> Callable[..., Any]:
    def read(source: Any, _info: Any) -> Any:
        return getattr(source, name)

    return read


def _guarded(
    check: Callable[[Any, ResolveInfo], None], resolve: Callable[..., Any]
) -> Callable[..., Any]:
    def guarded(source: Any, info: Any, **arguments: Any) -> Any:
        check(source, info)
        return resolve(source, info, **arguments)

    return guarded


def rule(permission: Rule) -> list[FieldExtension]:
    """Return the field extensions that attach `permission` and show its directive."""
    return [FieldRule(permission)]


def public() -> list[FieldExtension]:
    return rule(IsPublic())


def signed_in(*, allow_limited: bool = False) -> list[FieldExtension]:
    return rule(IsSignedIn(allow_limited=allow_limited))


def requires(permission: Permission) -> list[FieldExtension]:
    return rule(HasPermission(permission))


def owner_or(permission: Permission) -> list[FieldExtension]:
    return rule(IsOwnerOr(permission))
