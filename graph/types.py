"""Strawberry object and input types.

Every field carries a rule from `graph.permissions`; input types need none,
because an input is only reachable through a guarded field.
"""

from typing import Self

import strawberry

from graph.permissions import owner_or, public, requires, signed_in
from ml.predict import Prediction as PredictionResult
from ml.registry import LoadedModel
from schema.catalogue import Permission
from schema.tables import Role as RoleRow
from schema.tables import User as UserRow


@strawberry.type(description="A named set of permissions.")
class Role:
    name: str = strawberry.field(extensions=signed_in())
    description: str = strawberry.field(extensions=signed_in())
    permissions: list[str] = strawberry.field(
        extensions=signed_in(), description="Permissions the role grants, sorted."
    )

    @classmethod
    def from_row(cls, row: RoleRow) -> Self:
        return cls(
            name=row.name,
            description=row.description,
            permissions=sorted(row.permission_names),
        )


@strawberry.type(description="A person or program that signs in.")
class User:
    user_id: strawberry.Private[int]

    id: strawberry.ID = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    username: str = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    is_active: bool = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    roles: list[Role] = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    permissions: list[str] = strawberry.field(
        extensions=owner_or(Permission.USERS_READ),
        description="Every permission the user's roles grant, sorted.",
    )

    @classmethod
    def from_row(cls, row: UserRow) -> Self:
        return cls(
            user_id=row.id,
            id=strawberry.ID(str(row.id)),
            username=row.username,
            is_active=row.is_active,
            roles=[Role.from_row(role) for role in sorted(row.roles, key=_role_name)],
            permissions=sorted(row.permission_names),
        )


def _role_name(role: RoleRow) -> str:
    return role.name


@strawberry.type(description="An access token and how to use it.")
class LoginPayload:
    access_token: str = strawberry.field(
        extensions=public(),
        description="JWT to send as `Authorization: Bearer <token>`.",
    )
    token_type: str = strawberry.field(
        extensions=public(), description="Always `Bearer`."
    )
    expires_in: int = strawberry.field(
        extensions=public(), description="Seconds until the access token expires."
    )


@strawberry.type(description="The probability the model gives one class.")
class ClassProbability:
    label: str = strawberry.field(extensions=requires(Permission.PREDICT_PROBA))
    probability: float = strawberry.field(
        extensions=requires(Permission.PREDICT_PROBA),
        description="Between 0 and 1; the probabilities of a prediction sum to 1.",
    )


@strawberry.type(description="A model's prediction for one row of features.")
class Prediction:
    label: str | None = strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="The most probable class.",
    )
    probabilities: list[ClassProbability] | None = strawberry.field(
        extensions=requires(Permission.PREDICT_PROBA),
        description="Probability of every class, in the model's class order.",
    )
    model_name: str = strawberry.field(extensions=requires(Permission.PREDICT_RUN))
    model_version: str = strawberry.field(extensions=requires(Permission.PREDICT_RUN))

    @classmethod
    def from_result(cls, result: PredictionResult, model: LoadedModel) -> Self:
        return cls(
            label=result.label,
            probabilities=[
                ClassProbability(label=label, probability=probability)
                for label, probability in result.probabilities.items()
            ],
            model_name=model.metadata.name,
            model_version=model.metadata.version,
        )


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
