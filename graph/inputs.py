"""Strawberry input types.

Self-service inputs contain only what a user may set about themselves: no
roles, no active flag, no password-reset state.
"""

from datetime import datetime

import strawberry
from strawberry import UNSET

from schema import users


def kept_if_unset(value: object) -> object:
    """Translate Strawberry's "omitted" marker into the user service's one."""
    return users.UNSET if value is UNSET else value


@strawberry.input(
    description=(
        "Measurements of one penguin. Every field is optional, but at least one "
        "must be given; a missing value is handled by the model."
    )
)
class PenguinFeatures:
    island: str | None = strawberry.field(
        default=None, description="Biscoe, Dream or Torgersen."
    )
    sex: str | None = strawberry.field(default=None, description="female or male.")
    bill_length_mm: float | None = strawberry.field(
        default=None, description="Bill length in millimetres."
    )
    bill_depth_mm: float | None = strawberry.field(
        default=None, description="Bill depth in millimetres."
    )
    flipper_length_mm: float | None = strawberry.field(
        default=None, description="Flipper length in millimetres."
    )
    body_mass_g: float | None = strawberry.field(
        default=None, description="Body mass in grams."
    )

    def as_row(self) -> dict[str, object]:
        """Return the features keyed by the model's column names."""
        return {
            "island": self.island,
            "sex": self.sex,
            "bill_length_mm": self.bill_length_mm,
            "bill_depth_mm": self.bill_depth_mm,
            "flipper_length_mm": self.flipper_length_mm,
            "body_mass_g": self.body_mass_g,
        }


@strawberry.input(description="A new user account.")
class CreateUserInput:
    username: str = strawberry.field(
        description="Unique without regard to case or Unicode form."
    )
    password: str = strawberry.field(
        description="12 to 128 characters, not easy to guess."
    )
    roles: list[str] = strawberry.field(default_factory=list)
    email: str | None = None
    display_name: str | None = None


@strawberry.input(description="Account fields an admin may change; omit to keep.")
class UpdateUserInput:
    username: str | None = UNSET
    email: str | None = strawberry.field(
        default=UNSET, description="null removes the address."
    )
    display_name: str | None = strawberry.field(
        default=UNSET, description="null removes the name."
    )
    is_active: bool | None = UNSET


@strawberry.input(description="Fields users may change about themselves; omit to keep.")
class UpdateMeInput:
    email: str | None = strawberry.field(
        default=UNSET, description="null removes the address."
    )
    display_name: str | None = strawberry.field(
        default=UNSET, description="null removes the name."
    )


@strawberry.input(description="Which users to list.")
class UserFilter:
    role: str | None = strawberry.field(default=None, description="Holds this role.")
    is_active: bool | None = None
    search: str | None = strawberry.field(
        default=None,
        description="Part of a username (any case), or a whole email address.",
    )


@strawberry.input(description="A new role.")
class CreateRoleInput:
    name: str = strawberry.field(
        description="Lowercase letters, digits, - and _, starting with a letter."
    )
    description: str = ""
    permissions: list[str] = strawberry.field(default_factory=list)


@strawberry.input(description="Role fields to change; omit to keep.")
class UpdateRoleInput:
    name: str | None = None
    description: str | None = None
    permissions: list[str] | None = strawberry.field(
        default=None, description="The whole new set, replacing the old one."
    )


@strawberry.input(description="Which audit events to list.")
class AuditEventFilter:
    actor_id: strawberry.ID | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = strawberry.field(
        default=None, description="Events at or after this time."
    )
    until: datetime | None = strawberry.field(
        default=None, description="Events before this time."
    )


@strawberry.input(description="A new API key for a service account.")
class CreateApiKeyInput:
    service_account_id: strawberry.ID
    name: str = strawberry.field(description="What the key is for, 1 to 64 characters.")
    permissions: list[str] = strawberry.field(
        description="Only predict:run and predict:proba may be given to keys."
    )
    expires_in_days: int | None = strawberry.field(
        default=90, description="1 to 366; null for a key that never expires."
    )
