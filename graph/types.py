"""Strawberry object types.

Every field carries a rule from `graph.permissions`. Input types need none,
because an input is only reachable through a guarded field.
"""

import asyncio
from datetime import datetime
from typing import Any, NewType, Self

import strawberry
from strawberry.scalars import JSON

from graph.permissions import owner_or, public, requires, signed_in
from ml.metadata import graphql_field_name
from ml.predict import BatchPrediction as BatchResult
from ml.predict import Explanation as ExplanationResult
from ml.predict import Prediction as PredictionResult
from ml.predict import explain, explain_columns
from ml.registry import LoadedModel
from schema.audit import AuditRecord
from schema.catalogue import Permission
from schema.clock import as_utc
from schema.crypto import DataCipher
from schema.tables import ApiKey as ApiKeyRow
from schema.tables import PermissionRow
from schema.tables import Role as RoleRow
from schema.tables import User as UserRow
from schema.users import read_display_name, read_email


@strawberry.type(description="A named set of permissions.")
class Role:
    name: str = strawberry.field(extensions=signed_in(allow_limited=True))
    description: str = strawberry.field(extensions=signed_in(allow_limited=True))
    builtin: bool = strawberry.field(
        extensions=signed_in(allow_limited=True),
        description="Built-in roles cannot be renamed or deleted.",
    )
    permissions: list[str] = strawberry.field(
        extensions=signed_in(allow_limited=True),
        description="Permissions the role grants, sorted.",
    )

    @classmethod
    def from_row(cls, row: RoleRow) -> Self:
        return cls(
            name=row.name,
            description=row.description,
            builtin=row.builtin,
            permissions=sorted(row.permission_names),
        )


@strawberry.type(name="Permission", description="A permission of the catalogue.")
class PermissionInfo:
    name: str = strawberry.field(
        extensions=signed_in(allow_limited=True), description="`area:action`."
    )
    description: str = strawberry.field(extensions=signed_in(allow_limited=True))

    @classmethod
    def from_row(cls, row: PermissionRow) -> Self:
        return cls(name=row.name, description=row.description)


@strawberry.type(description="A person or program that signs in.")
class User:
    user_id: strawberry.Private[int]

    id: strawberry.ID = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    username: str = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    email: str | None = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    display_name: str | None = strawberry.field(
        extensions=owner_or(Permission.USERS_READ)
    )
    is_active: bool = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    must_change_password: bool = strawberry.field(
        extensions=owner_or(Permission.USERS_READ),
        description="True after an admin reset, until the user sets a password.",
    )
    created_at: datetime = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    roles: list[Role] = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    permissions: list[str] = strawberry.field(
        extensions=owner_or(Permission.USERS_READ),
        description=(
            "Every permission the user's roles grant, sorted; empty while "
            "mustChangePassword is true."
        ),
    )

    @classmethod
    def from_row(cls, row: UserRow, cipher: DataCipher) -> Self:
        return cls(
            user_id=row.id,
            id=strawberry.ID(str(row.id)),
            username=row.username,
            email=read_email(cipher, row),
            display_name=read_display_name(cipher, row),
            is_active=row.is_active,
            must_change_password=row.must_change_password,
            created_at=row.created_at,
            roles=[Role.from_row(role) for role in sorted(row.roles, key=_role_name)],
            permissions=(
                [] if row.must_change_password else sorted(row.permission_names)
            ),
        )


def _role_name(role: RoleRow) -> str:
    return role.name


@strawberry.type(description="One page of users.")
class UserPage:
    items: list[User] = strawberry.field(extensions=requires(Permission.USERS_READ))
    total_count: int = strawberry.field(
        extensions=requires(Permission.USERS_READ),
        description="Users matching the filter, on all pages.",
    )


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
    refresh_token: str = strawberry.field(
        extensions=public(),
        description=(
            "Opaque token for refreshToken. Each use returns a new one; using one "
            "twice ends the session."
        ),
    )
    password_change_required: bool = strawberry.field(
        extensions=public(),
        description=(
            "True after an admin reset: the token is good only for changePassword "
            "and me until a new password is set."
        ),
    )


@strawberry.type(description="A temporary password set by an admin.")
class PasswordResetPayload:
    temporary_password: str = strawberry.field(
        extensions=requires(Permission.USERS_WRITE),
        description=(
            "Give it to the user once. It grants nothing but changePassword, "
            "which the user must call at sign-in."
        ),
    )
    user: User = strawberry.field(extensions=requires(Permission.USERS_WRITE))


@strawberry.type(description="A security-relevant action and how it ended.")
class AuditEvent:
    id: strawberry.ID = strawberry.field(extensions=requires(Permission.AUDIT_READ))
    occurred_at: datetime = strawberry.field(extensions=requires(Permission.AUDIT_READ))
    actor_id: strawberry.ID | None = strawberry.field(
        extensions=requires(Permission.AUDIT_READ)
    )
    actor_username: str | None = strawberry.field(
        extensions=requires(Permission.AUDIT_READ),
        description="The actor's username when the event happened.",
    )
    action: str = strawberry.field(
        extensions=requires(Permission.AUDIT_READ),
        description="What was done, such as `login` or `user.create`.",
    )
    target_type: str | None = strawberry.field(
        extensions=requires(Permission.AUDIT_READ)
    )
    target_id: str | None = strawberry.field(extensions=requires(Permission.AUDIT_READ))
    outcome: str = strawberry.field(
        extensions=requires(Permission.AUDIT_READ),
        description=(
            "`success`, `failure` (bad credentials or input), `denied` (not "
            "allowed) or `locked` (sign-in refused by the throttle). "
            "Predictions record `success`, `invalid_input`, `cancelled` (the "
            "request ended, as by its time limit, before the model answered) "
            "or `error` (the model call failed)."
        ),
    )
    client_ip: str | None = strawberry.field(extensions=requires(Permission.AUDIT_READ))
    user_agent: str | None = strawberry.field(
        extensions=requires(Permission.AUDIT_READ)
    )
    request_id: str | None = strawberry.field(
        extensions=requires(Permission.AUDIT_READ)
    )
    details: JSON = strawberry.field(
        extensions=requires(Permission.AUDIT_READ),
        description="Facts about the event; never a password, token or email.",
    )

    @classmethod
    def from_record(cls, record: AuditRecord) -> Self:
        return cls(
            id=strawberry.ID(str(record.id)),
            occurred_at=as_utc(record.occurred_at),
            actor_id=(
                strawberry.ID(str(record.actor_id))
                if record.actor_id is not None
                else None
            ),
            actor_username=record.actor_username,
            action=record.action,
            target_type=record.target_type,
            target_id=record.target_id,
            outcome=record.outcome,
            client_ip=record.client_ip,
            user_agent=record.user_agent,
            request_id=record.request_id,
            details=record.details,
        )


@strawberry.type(description="One page of audit events, newest first.")
class AuditEventPage:
    items: list[AuditEvent] = strawberry.field(
        extensions=requires(Permission.AUDIT_READ)
    )
    total_count: int = strawberry.field(extensions=requires(Permission.AUDIT_READ))


# Lists of values checked as a whole, so that a batch of many rows costs one
# conversion rather than one per value. Their definitions go into the schema
# through `COLUMN_SCALARS`.
FloatColumn = NewType("FloatColumn", list)
StringColumn = NewType("StringColumn", list)


def _column(value: object, name: str) -> list[object]:
    """Accept a list; the model's own checks then look at every value."""
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list, one value per row.")
    return value


COLUMN_SCALARS = {
    FloatColumn: strawberry.scalar(
        name="FloatColumn",
        description=(
            "A list of numbers, one per row, with null for a missing value. "
            "Checked as a whole rather than value by value."
        ),
        serialize=lambda value: value,
        parse_value=lambda value: _column(value, "FloatColumn"),
    ),
    StringColumn: strawberry.scalar(
        name="StringColumn",
        description="A list of strings, one per row, with null for a missing value.",
        serialize=lambda value: value,
        parse_value=lambda value: _column(value, "StringColumn"),
    ),
}


@strawberry.type(description="The probability the model gives one class.")
class ClassProbability:
    label: str = strawberry.field(extensions=requires(Permission.PREDICT_PROBA))
    probability: float = strawberry.field(
        extensions=requires(Permission.PREDICT_PROBA),
        description="Between 0 and 1; the probabilities of a prediction sum to 1.",
    )


@strawberry.type(description="The probabilities of one class, one per row.")
class ClassProbabilities:
    label: str = strawberry.field(extensions=requires(Permission.PREDICT_PROBA))
    values: FloatColumn = strawberry.field(
        extensions=requires(Permission.PREDICT_PROBA),
        description="Between 0 and 1, in row order.",
    )


@strawberry.type(description="Why a model predicted what it did, for one feature.")
class FeatureContribution:
    feature: str = strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description="The feature's field name in the model's input type.",
    )
    contribution: float = strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description="SHAP value, in the unit the explanation states.",
    )


EXPLANATION_UNITS = (
    "The unit of the base value and the contributions: `log-odds` of the "
    "explained label for a model of two classes, `logit` (the label's score "
    "before softmax) for more classes, `target` (the unit of the predicted "
    "value) for a regression model."
)


@strawberry.type(
    description=(
        "SHAP explanation of one prediction: baseValue plus the contributions "
        "equals the model's raw score for the explained label, or its value for "
        "a regression model."
    )
)
class Explanation:
    label: str | None = strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description="The label explained, the predicted one; null for regression.",
    )
    base_value: float = strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description="The model's average raw score, in `unit`.",
    )
    unit: str = strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description=EXPLANATION_UNITS,
    )
    contributions: list[FeatureContribution] = strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description="One entry per feature, in the model's feature order.",
    )

    @classmethod
    def from_result(cls, explained: ExplanationResult) -> Self:
        return cls(
            label=explained.label,
            base_value=explained.base_value,
            unit=explained.unit,
            contributions=[
                FeatureContribution(
                    feature=graphql_field_name(name), contribution=value
                )
                for name, value in explained.contributions.items()
            ],
        )


@strawberry.type(description="A model's prediction for one row of features.")
class Prediction:
    result: strawberry.Private[PredictionResult]
    model: strawberry.Private[LoadedModel]

    label: str | None = strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="The most probable class; null for a regression model.",
    )
    probabilities: list[ClassProbability] | None = strawberry.field(
        extensions=requires(Permission.PREDICT_PROBA),
        description=(
            "Probability of every class, in the model's class order; null for a "
            "regression model."
        ),
    )
    value: float | None = strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="The predicted value of a regression model; null otherwise.",
    )
    model_name: str = strawberry.field(extensions=requires(Permission.PREDICT_RUN))
    model_version: str = strawberry.field(extensions=requires(Permission.PREDICT_RUN))
    explained: strawberry.Private[Explanation | None] = None

    @strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description="Why the model predicted this; computed only when asked for.",
    )
    def explanation(self) -> Explanation | None:
        # Kept, as aliases of this field would each compute it again.
        if self.explained is None:
            self.explained = Explanation.from_result(explain(self.model, self.result))
        return self.explained

    @classmethod
    def from_result(cls, result: PredictionResult, model: LoadedModel) -> Self:
        probabilities = result.probabilities
        return cls(
            result=result,
            model=model,
            label=result.label,
            probabilities=None
            if probabilities is None
            else [
                ClassProbability(label=label, probability=probability)
                for label, probability in probabilities.items()
            ],
            value=result.value,
            model_name=model.metadata.name,
            model_version=model.metadata.version,
        )


@strawberry.type(
    description=(
        "A model's predictions for a batch of rows, one list per output, in row order."
    )
)
class PredictionBatch:
    result: strawberry.Private[BatchResult]
    model: strawberry.Private[LoadedModel]

    rows: int = strawberry.field(extensions=requires(Permission.PREDICT_RUN))
    labels: StringColumn | None = strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="The most probable class of each row; null for regression.",
    )
    probabilities: list[ClassProbabilities] | None = strawberry.field(
        extensions=requires(Permission.PREDICT_PROBA),
        description=(
            "For every class, in the model's class order, its probability in "
            "each row; null for a regression model."
        ),
    )
    values: FloatColumn | None = strawberry.field(
        extensions=requires(Permission.PREDICT_RUN),
        description="The predicted value of each row (regression); null otherwise.",
    )
    model_name: str = strawberry.field(extensions=requires(Permission.PREDICT_RUN))
    model_version: str = strawberry.field(extensions=requires(Permission.PREDICT_RUN))
    explaining: strawberry.Private[asyncio.Future[list[Explanation]] | None] = None

    @strawberry.field(
        extensions=requires(Permission.PREDICT_EXPLAIN),
        description=(
            "Why the model predicted what it did, one per row; computed only "
            "when asked for."
        ),
    )
    async def explanations(self) -> list[Explanation] | None:
        # SHAP values of a large batch take tens of milliseconds, so they are
        # computed in a thread, where CatBoost releases the GIL, and only
        # once: aliases of this field share the same computation.
        if self.explaining is None:
            labels = self.result.labels or [None] * self.result.rows
            self.explaining = asyncio.ensure_future(
                asyncio.to_thread(
                    _explain_batch, self.model, self.result.columns, labels
                )
            )
        return await self.explaining

    @classmethod
    def from_result(cls, result: BatchResult, model: LoadedModel) -> Self:
        probabilities = result.probabilities
        return cls(
            result=result,
            model=model,
            rows=result.rows,
            labels=result.labels,
            probabilities=None
            if probabilities is None
            else [
                ClassProbabilities(label=label, values=values)
                for label, values in probabilities.items()
            ],
            values=result.values,
            model_name=model.metadata.name,
            model_version=model.metadata.version,
        )


@strawberry.type(description="A signed-in session of a user.")
class SessionInfo:
    user_id: strawberry.Private[int]

    id: strawberry.ID = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    created_at: datetime = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    last_used_at: datetime = strawberry.field(
        extensions=owner_or(Permission.USERS_READ),
        description="Last sign of activity, recorded at most once a minute.",
    )
    expires_at: datetime = strawberry.field(
        extensions=owner_or(Permission.USERS_READ),
        description="When the session ends at the latest, active or not.",
    )
    client_ip: str | None = strawberry.field(extensions=owner_or(Permission.USERS_READ))
    user_agent: str | None = strawberry.field(
        extensions=owner_or(Permission.USERS_READ)
    )
    current: bool = strawberry.field(
        extensions=owner_or(Permission.USERS_READ),
        description="True for the session of the token that asked.",
    )


@strawberry.type(
    description="An API key of a service account; the secret is never shown again."
)
class ApiKey:
    id: strawberry.ID = strawberry.field(extensions=requires(Permission.USERS_READ))
    name: str = strawberry.field(extensions=requires(Permission.USERS_READ))
    prefix: str = strawberry.field(
        extensions=requires(Permission.USERS_READ),
        description="Public part of the key, fgk_<prefix>_..., to tell keys apart.",
    )
    permissions: list[str] = strawberry.field(
        extensions=requires(Permission.USERS_READ)
    )
    created_at: datetime = strawberry.field(extensions=requires(Permission.USERS_READ))
    expires_at: datetime | None = strawberry.field(
        extensions=requires(Permission.USERS_READ)
    )
    last_used_at: datetime | None = strawberry.field(
        extensions=requires(Permission.USERS_READ),
        description="Recorded at most once a minute.",
    )
    revoked_at: datetime | None = strawberry.field(
        extensions=requires(Permission.USERS_READ)
    )

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> Self:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            prefix=row.prefix,
            permissions=sorted(row.permission_names),
            created_at=as_utc(row.created_at),
            expires_at=as_utc(row.expires_at) if row.expires_at else None,
            last_used_at=as_utc(row.last_used_at) if row.last_used_at else None,
            revoked_at=as_utc(row.revoked_at) if row.revoked_at else None,
        )


@strawberry.type(description="A new API key, shown once.")
class ApiKeyCreated:
    key: str = strawberry.field(
        extensions=requires(Permission.USERS_WRITE),
        description=(
            "Send as `Authorization: Bearer <key>`. It is stored only as a hash "
            "and cannot be shown again."
        ),
    )
    api_key: ApiKey = strawberry.field(extensions=requires(Permission.USERS_WRITE))


def _explain_batch(
    model: LoadedModel, columns: Any, labels: list[str | None]
) -> list[Explanation]:
    return [
        Explanation.from_result(explained)
        for explained in explain_columns(model, columns, labels)
    ]
